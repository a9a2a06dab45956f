from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.validators import MinValueValidator
from django.db import connection, models, transaction
from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tokens.models import ApiKey, Credential
from tokens.provider.errors import KIND_LABELS

TEAM_LIMITS_KEY, PRICE_OVERRIDES_KEY = "chat:team-limits", "chat:price-overrides"


class ConversationQuerySet(models.QuerySet):
    def matching(self, query: str) -> ConversationQuerySet:
        """Conversations whose title or any message contains the words of query."""
        qs = self
        for word in query.split()[:8]:
            qs = qs.filter(Q(title__icontains=word) | Q(messages__content__icontains=word))
        return qs.distinct()


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    credential = models.ForeignKey(
        Credential, on_delete=models.SET_NULL, null=True, blank=True, related_name="conversations"
    )
    model = models.CharField(max_length=100, blank=True)
    system_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The generation lease: one reply at a time, held by whoever set reply_lease and renewed while it streams.
    reply_lease = models.CharField(max_length=32, blank=True)
    reply_lease_until = models.DateTimeField(null=True, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title or str(_("New chat"))

    def title_from(self, text: str, width: int = 60) -> str:
        """The message's words, cut at `width` columns; Chinese, Japanese and Korean characters take two."""
        words = " ".join(text.split())
        used = 0
        for index, char in enumerate(words):
            used += 2 if unicodedata.east_asian_width(char) in "WF" else 1
            if used > width:
                return words[:index] + "…"
        return words


class Role(models.TextChoices):
    USER = "user", _("User")
    ASSISTANT = "assistant", _("Assistant")


class State(models.TextChoices):
    STREAMING = "streaming", _("Streaming")
    COMPLETE = "complete", _("Complete")
    STOPPED = "stopped", _("Stopped")
    INCOMPLETE = "incomplete", _("Incomplete")
    ERROR = "error", _("Error")


class MessageQuerySet(models.QuerySet):
    def abandoned(self, now: datetime) -> MessageQuerySet:
        """Replies still marked streaming whose conversation's lease has lapsed: their process is gone."""
        return self.filter(state=State.STREAMING).filter(
            Q(conversation__reply_lease_until__isnull=True) | Q(conversation__reply_lease_until__lt=now)
        )

    def thread(self) -> list[Message]:
        """thread_of these messages."""
        return thread_of(self.order_by(*THREAD_ORDER))


THREAD_ORDER = ("created_at", "id")


def thread_of(messages: Iterable[Message]) -> list[Message]:
    """The versions in view, root to leaf: from each message, the most recently selected child.

    Messages form a tree (``parent``); siblings are versions of one turn (an edit or a
    regenerate adds one). `messages` are one conversation's, in THREAD_ORDER. Each message on the path gets
    ``versions`` (its siblings, oldest first) so a page can show "2 / 3".
    """
    children: dict[int | None, list[Message]] = {}
    for message in messages:
        children.setdefault(message.parent_id, []).append(message)
    path: list[Message] = []
    siblings = children.get(None, [])
    while siblings:
        chosen = max(siblings, key=lambda m: (m.selected_at, m.id))
        chosen.versions = siblings
        path.append(chosen)
        siblings = children.get(chosen.id, [])
    return path


class Message(models.Model):
    versions: list[Message]  # set by MessageQuerySet.thread(): this turn's siblings, oldest first
    usage: dict[str, Any] | None  # set by the chat page: this version's tokens and cost (services.usage_summary)
    is_root: bool  # set on a new first-turn version before save(), so save() gives it no parent
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.COMPLETE)
    finish_reason = models.CharField(max_length=40, blank=True, help_text=_("Why the provider ended the reply."))
    error = models.CharField(max_length=300, blank=True, help_text=_("What went wrong, in words for the user."))
    error_kind = models.CharField(max_length=40, blank=True, help_text=_("What went wrong, for the page (e.g. auth)."))
    model = models.CharField(max_length=100, blank=True)
    trimmed_turns = models.PositiveIntegerField(
        default=0, help_text=_("Earlier messages left out to fit the model's context window.")
    )
    reasoning = models.TextField(blank=True, help_text="The model's thinking text, when the provider streams it.")
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        help_text="The turn this one answers or follows; siblings are versions (edits, regenerations).",
    )
    selected_at = models.DateTimeField(
        default=timezone.now, help_text="When this version was last chosen; the newest is shown."
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"

    def save(self, *args, **kwargs) -> None:
        # A new message without a parent follows the thread in view, so code that only appends
        # (a send, a reply) needs no knowledge of versions; a new first-turn version says so.
        if self._state.adding and self.parent_id is None and not getattr(self, "is_root", False):
            thread = Message.objects.filter(conversation_id=self.conversation_id).thread()
            self.parent = thread[-1] if thread else None
        super().save(*args, **kwargs)

    @property
    def version(self) -> int:
        """1-based position among its versions (after ``thread()``), e.g. 2 in "2 / 3"."""
        return [m.pk for m in getattr(self, "versions", [self])].index(self.pk) + 1

    @property
    def previous_version(self) -> Message | None:
        return self.versions[self.version - 2] if self.version > 1 else None

    @property
    def next_version(self) -> Message | None:
        versions = getattr(self, "versions", [self])
        return versions[self.version] if self.version < len(versions) else None

    def select(self) -> None:
        """Show this version: it and its newest descendants become the conversation's thread."""
        self.selected_at = timezone.now()
        self.save(update_fields=["selected_at"])


def day_bounds(since: date, until: date, zone: tzinfo | None = None) -> tuple[datetime, datetime]:
    """The instants [start, end) covering the days since..until in zone (default: the site's TIME_ZONE).

    The roll-up and budgets count days in the site's zone; pages filter in the reader's zone.
    """
    zone = zone or timezone.get_default_timezone()
    start = datetime.combine(since, time.min, tzinfo=zone)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def site_day(moment: datetime) -> date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


class Source(models.TextChoices):
    WEB = "web", _("Web chat")
    API = "api", _("API")


class UsageQuerySet(models.QuerySet):
    def totals(self) -> dict:
        return self.aggregate(
            requests=Count("id"),
            errors=Count("id", filter=~Q(error_type="")),
            estimated=Count("id", filter=Q(is_estimated=True)),
            unpriced=Count("id", filter=Q(cost_usd__isnull=True)),
            prompt_tokens=Sum("prompt_tokens", default=0),
            completion_tokens=Sum("completion_tokens", default=0),
            reasoning_tokens=Sum("reasoning_tokens", default=0),
            total_tokens=Sum("total_tokens", default=0),
            cost_usd=Sum("cost_usd", default=Decimal(0)),
            avg_latency_ms=Avg("latency_ms"),
        )

    def per_message(self, message_ids: list[int]) -> dict[int, dict]:
        """Message id -> summed tokens and cost of the web replies among `message_ids` (one call per version)."""
        rows = (
            self.filter(message_id__in=message_ids)
            .order_by()
            .values("message_id")
            .annotate(
                prompt_tokens=Sum("prompt_tokens"),
                completion_tokens=Sum("completion_tokens"),
                total_tokens=Sum("total_tokens"),
                cost_usd=Sum("cost_usd"),
                estimated=Count("id", filter=Q(is_estimated=True)),
            )
        )
        return {row.pop("message_id"): row for row in rows}

    def grouped(self, *fields: str, zone: tzinfo | None = None) -> list[dict]:
        """Sums per value of fields, in the roll-ups' shape (UsageDailyQuerySet.grouped); "day" is the day in zone."""
        qs = self.order_by()
        if "day" in fields:
            qs = qs.annotate(day=TruncDate("created_at", tzinfo=zone or timezone.get_current_timezone()))
        sums = {
            "requests": Count("id"),
            "errors": Count("id", filter=~Q(error_type="")),
            "estimated": Count("id", filter=Q(is_estimated=True)),
            "unpriced": Count("id", filter=Q(cost_usd__isnull=True)),
            "prompt_tokens": Sum("prompt_tokens", default=0),
            "completion_tokens": Sum("completion_tokens", default=0),
            "reasoning_tokens": Sum("reasoning_tokens", default=0),
            "total_tokens": Sum("total_tokens", default=0),
            "cost_usd": Sum("cost_usd", default=Decimal(0)),
            "latency_ms": Sum("latency_ms", default=0),
        }
        rows = list(qs.values(*fields).annotate(**sums))
        for row in rows:
            row["cost_usd"] = Decimal(row["cost_usd"]).quantize(MICRO)
            row["avg_latency_ms"] = row["latency_ms"] / row["requests"] if row["requests"] else None
        return rows

    def in_range(self, since: date | None, until: date | None, zone: tzinfo | None = None) -> UsageQuerySet:
        """Rows of the days since..until in zone (default: the active one), as a range on created_at for the index."""
        qs, zone = self, zone or timezone.get_current_timezone()
        if since:
            qs = qs.filter(created_at__gte=day_bounds(since, since, zone)[0])
        if until:
            qs = qs.filter(created_at__lt=day_bounds(until, until, zone)[1])
        return qs

    def older_than(self, moment: datetime) -> UsageQuerySet:
        return self.filter(created_at__lt=moment)

    def with_status(self, status: str) -> UsageQuerySet:
        """Rows that ended as status (UsageStatus: ok, error, stopped), the same partition the roll-up keeps."""
        if status == "error":
            return self.exclude(error_type="")
        stopped = Q(outcome=State.STOPPED)
        return self.filter(Q(error_type="") & (stopped if status == "stopped" else ~stopped))


class UsageRecord(models.Model):
    """One model call. Holds counts and timings, never message text or a secret."""

    # No index of its own: (user, created_at) below serves every query by person.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records", db_index=False
    )
    credential_id = models.UUIDField(null=True, blank=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.SET_NULL, null=True, blank=True)
    message = models.ForeignKey(
        "Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="usage_records",
        help_text="The web chat's reply (one version of an answer) this call wrote; empty for the API.",
    )
    api_key = models.ForeignKey(
        ApiKey,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="usage_records",
        help_text="The personal API key of an API call; empty for the web chat.",
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WEB)
    model = models.CharField(max_length=100)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text=_("Upstream HTTP status."))
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0, help_text="Part of completion_tokens.")
    total_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_("Priced when written and never recomputed; empty means no price was known."),
    )
    is_estimated = models.BooleanField(default=False, help_text=_("Counted locally: upstream sent no usable usage."))
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=100, blank=True, help_text=_("Upstream x-request-id."))
    # Not unique: a user's own provider may repeat ids, and every call must still leave its row.
    response_id = models.CharField(max_length=100, null=True, blank=True)
    error_type = models.CharField(max_length=40, blank=True)
    outcome = models.CharField(max_length=12, choices=State.choices, default=State.COMPLETE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = UsageQuerySet.as_manager()

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["model", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.model} call {self.pk}"

    @property
    def is_error(self) -> bool:
        return bool(self.error_type)

    @property
    def error_label(self) -> str:
        """The error kind in words for staff (tokens.provider.errors.KIND_LABELS); unknown kinds as stored."""
        return str(KIND_LABELS.get(self.error_type, self.error_type))


MICRO = Decimal("0.000001")


class UsageDailyQuerySet(models.QuerySet):
    def in_range(self, since: date | None, until: date | None) -> UsageDailyQuerySet:
        qs = self
        if since:
            qs = qs.filter(day__gte=since)
        if until:
            qs = qs.filter(day__lte=until)
        return qs

    def _sums(self) -> dict:
        return {
            "requests": Sum("requests", default=0),
            "errors": Sum("errors", default=0),
            "estimated": Sum("estimated", default=0),
            "unpriced": Sum("unpriced", default=0),
            "prompt_tokens": Sum("prompt_tokens", default=0),
            "completion_tokens": Sum("completion_tokens", default=0),
            "reasoning_tokens": Sum("reasoning_tokens", default=0),
            "total_tokens": Sum("total_tokens", default=0),
            "cost_micro_usd": Sum("cost_micro_usd", default=0),
            "latency_ms": Sum("latency_ms", default=0),
        }

    def totals(self) -> dict:
        """Sums over the selected days: integer counts and `cost_usd` as an exact Decimal."""
        return _with_cost(self.order_by().aggregate(**self._sums()))

    def grouped(self, *fields: str) -> list[dict]:
        return [_with_cost(row) for row in self.order_by().values(*fields).annotate(**self._sums())]


def _with_cost(row: dict) -> dict:
    row["cost_usd"] = Decimal(int(row.pop("cost_micro_usd") or 0)) * MICRO
    row["avg_latency_ms"] = row["latency_ms"] / row["requests"] if row["requests"] else None
    return row


class UsageStatus(models.TextChoices):
    """How a call ended, for the usage filter and the roll-up: an exact partition of the rows."""

    OK = "ok", _("Succeeded")
    ERROR = "error", _("Failed")
    STOPPED = "stopped", _("Stopped")

    @classmethod
    def of(cls, *, error_type: str, outcome: str) -> UsageStatus:
        if error_type:
            return cls.ERROR
        return cls.STOPPED if outcome == State.STOPPED else cls.OK


class UsageSums(models.Model):
    """The counters every roll-up row keeps; costs as integer micro-dollars, so sums are exact on every database."""

    status = models.CharField(max_length=8, choices=UsageStatus.choices, default=UsageStatus.OK)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    estimated = models.PositiveIntegerField(default=0)
    unpriced = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    latency_ms = models.PositiveBigIntegerField(default=0, help_text="Sum, for the average.")

    objects = UsageDailyQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.status} × {self.requests}"


SITE_DAY_HELP = "A day in the site's time zone (settings.TIME_ZONE)."


class UsageDaily(UsageSums):
    """The roll-up of usage rows per day, person, model and status; written with each row (chat.usage.rollup_add).

    Serves everything about one person (their pages, a staff filter on a user) read in the site's zone.
    """

    day = models.DateField(help_text=SITE_DAY_HELP)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    model = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "user", "model", "status"], name="usage_daily_key")]
        # (user, day): one person's pages and budget; (model, day): the by-person table filtered on a model.
        indexes = [
            models.Index(fields=["user", "day"], name="usage_daily_user_day"),
            models.Index(fields=["model", "day"], name="usage_daily_model_day"),
        ]


class UsageDailyModel(UsageSums):
    """Everyone's usage per day, model and status: the team's totals, chart and by-model table in the site's zone."""

    day = models.DateField(help_text=SITE_DAY_HELP)
    model = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "model", "status"], name="usage_daily_model_key")]


class UsageQuarterHour(UsageSums):
    """Everyone's usage per quarter hour (UTC), model and status: the team's page for a reader in another zone.

    Every time zone's days start on a quarter hour, so any reader's days sum exactly from it
    (30 days are about 30 × 96 × models × statuses rows, however many calls there were).
    """

    bucket = models.DateTimeField(help_text="Start of the 15 minutes.")
    model = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "model", "status"], name="usage_quarter_key")]


class UsageDailyUser(UsageSums):
    """Each person's usage per day and status over all models: budgets, the people page, the team's by-user table."""

    day = models.DateField(help_text=SITE_DAY_HELP)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "user", "status"], name="usage_daily_user_key")]
        indexes = [models.Index(fields=["user", "day"], name="usage_daily_user_user_day")]


class PriceOverride(models.Model):
    """A staff-set price for one model from a date on; it wins over the catalogue for calls at or after that time."""

    model = models.CharField(_("model"), max_length=100, help_text=_("The model id exactly as it is sent upstream."))
    input_usd_per_million = models.DecimalField(
        _("input, USD per million tokens"),
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_("Empty keeps the catalogue's price (for an override of the context window only)."),
    )
    output_usd_per_million = models.DecimalField(
        _("output, USD per million tokens"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    cached_input_usd_per_million = models.DecimalField(
        _("cached input, USD per million tokens"),
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_("Empty charges cached input tokens at the input price."),
    )
    context_window = models.PositiveIntegerField(_("context window (tokens)"), null=True, blank=True)
    effective_from = models.DateTimeField(_("effective from"), default=timezone.now)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        indexes = [models.Index(fields=["model", "effective_from"], name="price_override_model_from")]
        verbose_name = _("price override")
        verbose_name_plural = _("price overrides")

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"

    @classmethod
    def cached_by_model(cls) -> dict[str, list[PriceOverride]]:
        """Every override, by model id, newest `effective_from` first, as read at most LOCAL_CACHE_SECONDS ago
        (cleared in this process when one is saved or deleted). Staff set a handful, so the whole table is kept."""

        def read() -> dict[str, list[PriceOverride]]:
            by_model: dict[str, list[PriceOverride]] = {}
            for override in cls.objects.order_by("model", "-effective_from", "-pk"):
                by_model.setdefault(override.model, []).append(override)
            return by_model

        return _read_through(PRICE_OVERRIDES_KEY, read)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if (self.input_usd_per_million is None) != (self.output_usd_per_million is None):
            raise ValidationError(_("Give both the input and the output price, or neither."))
        if self.input_usd_per_million is None and not self.context_window:
            raise ValidationError(_("Give a price, a context window, or both."))


class TeamLimits(models.Model):
    """The team's default limits (one row); a person's own limit on User wins when set."""

    monthly_budget_usd = models.DecimalField(
        _("monthly budget (USD)"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
    )
    monthly_token_budget = models.PositiveBigIntegerField(_("monthly token budget"), null=True, blank=True)
    chat_rate_limit = models.PositiveIntegerField(_("chat requests per minute"), null=True, blank=True)

    class Meta:
        verbose_name = _("team limits")
        verbose_name_plural = _("team limits")

    def __str__(self) -> str:
        return str(_("Team limits"))

    @classmethod
    def current(cls) -> TeamLimits:
        return cls.objects.get_or_create(pk=1)[0]

    @classmethod
    def cached(cls) -> TeamLimits:
        """`current()` as read at most LOCAL_CACHE_SECONDS ago (cleared in this process when limits are saved),
        for the checks every chat request makes; staff pages edit `current()`."""
        return _read_through(TEAM_LIMITS_KEY, cls.current)


class BudgetAlert(models.Model):
    """One row per person, month and threshold reached, so each email goes out once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="First day of the month.")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the budget: 80 or 100.")
    created_at = models.DateTimeField(default=timezone.now)
    digested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "month", "threshold"], name="budget_alert_once")]

    def __str__(self) -> str:
        return f"{self.threshold}% {self.month:%Y-%m}"


def _read_through(key: str, read):
    """The process-local cache's value for key, read and kept on a miss; never kept from inside a transaction, whose
    writes a rollback could take back (a write there has cleared it already, so the transaction reads its own)."""
    value = caches["local"].get(key)
    if value is None:
        value = read()
        if not connection.in_atomic_block:
            caches["local"].set(key, value)
    return value


def _local_cache_clear(sender, **kwargs) -> None:
    key = TEAM_LIMITS_KEY if sender is TeamLimits else PRICE_OVERRIDES_KEY
    caches["local"].delete(key)
    transaction.on_commit(lambda: caches["local"].delete(key))  # another thread may have kept the old row meanwhile


for _model in (TeamLimits, PriceOverride):
    post_save.connect(_local_cache_clear, sender=_model, dispatch_uid=f"local-cache-{_model.__name__}")
    post_delete.connect(_local_cache_clear, sender=_model, dispatch_uid=f"local-cache-delete-{_model.__name__}")
