"""Monthly budgets and limits: what a person may still spend, checked before any upstream call.

A month is a calendar month in the site's time zone (settings.TIME_ZONE). Spend is read
from the daily roll-up, so it counts every call of the month, estimated ones included
(rows whose tokens we counted because the provider sent none). A call with no known
price adds tokens but no cost: a token budget still catches it, a cost budget cannot.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from accounts.models import User
from chat.models import BudgetAlert, TeamLimits, UsageDailyUser
from project.emails import email_send_each

logger = logging.getLogger(__name__)

THRESHOLDS = (80, 100)


@dataclass(frozen=True)
class Limits:
    monthly_budget_usd: Decimal | None
    monthly_token_budget: int | None
    chat_rate_limit: int

    @property
    def has_budget(self) -> bool:
        return self.monthly_budget_usd is not None or self.monthly_token_budget is not None


def limits_for(user: User, team: TeamLimits | None = None) -> Limits:
    """The person's own limits where set, else the team's defaults, else the site's settings."""
    team = team or TeamLimits.cached()
    budget = user.monthly_budget_usd if user.monthly_budget_usd is not None else team.monthly_budget_usd
    tokens = user.monthly_token_budget if user.monthly_token_budget is not None else team.monthly_token_budget
    rate = user.chat_rate_limit or team.chat_rate_limit or settings.CHAT_RATE_LIMIT_PER_MINUTE
    return Limits(budget, tokens, rate)


def month_of(now: datetime | None = None) -> tuple[date, datetime]:
    """The first day of the current month (site time zone) and the instant the next one starts."""
    today = timezone.localtime(now or timezone.now(), timezone.get_default_timezone()).date()
    first = today.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, datetime.combine(following, time.min, tzinfo=timezone.get_default_timezone())


@dataclass(frozen=True)
class BudgetStatus:
    limits: Limits
    month: date
    resets_at: datetime
    spent_usd: Decimal
    spent_tokens: int
    requests: int
    estimated: int
    unpriced: int

    @property
    def remaining_usd(self) -> Decimal | None:
        if self.limits.monthly_budget_usd is None:
            return None
        return max(self.limits.monthly_budget_usd - self.spent_usd, Decimal(0))

    @property
    def remaining_tokens(self) -> int | None:
        if self.limits.monthly_token_budget is None:
            return None
        return max(self.limits.monthly_token_budget - self.spent_tokens, 0)

    @property
    def used_percent(self) -> int | None:
        """The larger share used of the two budgets, in whole percent (None without a budget)."""
        shares: list[int] = []
        usd, tokens = self.limits.monthly_budget_usd, self.limits.monthly_token_budget
        if usd is not None:
            shares.append(100 if usd <= 0 else int(self.spent_usd * 100 / usd))
        if tokens is not None:
            shares.append(100 if tokens <= 0 else self.spent_tokens * 100 // tokens)
        return max(shares) if shares else None


def budget_status(*, user: User, now: datetime | None = None, limits: Limits | None = None) -> BudgetStatus:
    """This month's spend for user against their limits (one roll-up query, and the team row unless `limits`)."""
    first, resets_at = month_of(now)
    totals = UsageDailyUser.objects.filter(user_id=user.pk, day__gte=first, day__lt=resets_at.date()).totals()
    return BudgetStatus(
        limits=limits or limits_for(user),
        month=first,
        resets_at=resets_at,
        spent_usd=totals["cost_usd"],
        spent_tokens=totals["total_tokens"],
        requests=totals["requests"],
        estimated=totals["estimated"],
        unpriced=totals["unpriced"],
    )


class BudgetExceeded(Exception):
    """A call refused because a monthly budget is used up; `message` is for the person."""

    def __init__(self, message: str, *, limit: str, resets_at: datetime) -> None:
        super().__init__(message)
        self.message, self.limit, self.resets_at = message, limit, resets_at

    def as_openai_error(self) -> dict:
        """The body for an API refusal (HTTP 429), in OpenAI's error shape."""
        return {"error": {"message": self.message, "type": "insufficient_quota", "code": "budget_exceeded"}}


def budget_check(*, user: User, now: datetime | None = None, limits: Limits | None = None) -> BudgetStatus | None:
    """Refuse (raise BudgetExceeded) when user's monthly cost or token budget is used up; call before any upstream call.

    Returns the status when the call may go ahead, or None when the person has no budget (nothing is summed then).
    `limits`: limits_for(user), when the caller has them already.
    """
    limits = limits or limits_for(user)
    if not limits.has_budget:
        return None
    status = budget_status(user=user, now=now, limits=limits)
    resets = formats.date_format(status.resets_at.date(), "DATE_FORMAT")
    budget, tokens = status.limits.monthly_budget_usd, status.limits.monthly_token_budget
    if budget is not None and status.spent_usd >= budget:
        message = _(
            "You have reached your monthly budget of $%(budget)s (spent about $%(spent)s, estimates included). "
            "It resets on %(date)s; ask an admin if you need more before then."
        ) % {"budget": budget, "spent": status.spent_usd.quantize(Decimal("0.01")), "date": resets}
        raise BudgetExceeded(message, limit="monthly_budget_usd", resets_at=status.resets_at)
    if tokens is not None and status.spent_tokens >= tokens:
        message = _(
            "You have reached your monthly token budget of %(budget)s tokens (used %(spent)s, estimates included). "
            "It resets on %(date)s; ask an admin if you need more before then."
        ) % {
            "budget": formats.number_format(tokens, force_grouping=True),
            "spent": formats.number_format(status.spent_tokens, force_grouping=True),
            "date": resets,
        }
        raise BudgetExceeded(message, limit="monthly_token_budget", resets_at=status.resets_at)
    return status


def budget_alerts_check(*, user_id: int, now: datetime | None = None) -> list[int]:
    """Record each threshold (80 %, 100 %) the person has newly crossed this month and e-mail them once per threshold.

    Returns the thresholds newly crossed. Safe when two calls race: the BudgetAlert
    unique constraint lets only one of them claim a threshold.
    """
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return []
    limits = limits_for(user)
    if not limits.has_budget:  # most people: no budget, nothing to sum after every call
        return []
    status = budget_status(user=user, now=now, limits=limits)
    used = status.used_percent
    crossed = []
    for threshold in THRESHOLDS:
        if used is None or used < threshold:
            continue
        alert, created = BudgetAlert.objects.get_or_create(user=user, month=status.month, threshold=threshold)
        if created:
            crossed.append(threshold)
            from chat.tasks import send_budget_alert

            transaction.on_commit(functools.partial(send_budget_alert.delay, alert.pk))
    return crossed


def budget_alert_send(*, alert: BudgetAlert) -> bool:
    """E-mail the person that they reached 80 % or 100 % of a monthly budget; False when they have no address."""
    user = alert.user
    if not user.email:
        return False
    status = budget_status(user=user)
    ctx = {
        "user": user,
        "alert": alert,
        "status": status,
        "usage_url": settings.SITE_URL + reverse("my_usage:dashboard"),
    }
    email_send_each("budget_alert", ctx, [user])
    return True


def budget_digest_send(*, now: datetime | None = None) -> int:
    """E-mail staff, once a day, every budget threshold people crossed since the last digest; returns alerts sent."""
    now = now or timezone.now()
    alerts = list(BudgetAlert.objects.filter(digested_at__isnull=True).select_related("user").order_by("created_at"))
    if not alerts:
        return 0
    # Claim the alerts first, so two digests running at once cannot both send them.
    claimed = BudgetAlert.objects.filter(pk__in=[a.pk for a in alerts], digested_at__isnull=True).update(
        digested_at=now
    )
    if claimed != len(alerts):
        return 0
    staff = User.objects.filter(is_staff=True, is_active=True).exclude(email="")
    ctx = {"alerts": alerts, "users_url": settings.SITE_URL + reverse("usage:user-list")}
    email_send_each("budget_digest", ctx, staff)
    return len(alerts)
