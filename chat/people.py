"""Staff pages about people: /usage/users/ (every account, approvals, team limits) and /usage/users/<id>/."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import services as accounts
from accounts.models import Approval, User
from chat.budgets import Limits, budget_status, limits_for, month_of
from chat.dashboard import report_ctx, staff_required, usage_report
from chat.forms import TeamLimitsForm, UserLimitsForm
from chat.models import TeamLimits, UsageDailyUser, UsageRecord
from tokens.models import CredentialEvent, Status

EVENTS_SHOWN = 15


def _get_user(pk: int) -> User:
    user = User.objects.filter(pk=pk).first()
    if user is None:
        raise Http404(_("No such account."))
    return user


PEOPLE_PER_PAGE = 50


@dataclass
class PersonRow:
    """One line of the people list: the account (annotated with last_call_at, credentials_ok/_bad), its month."""

    person: User
    month: dict[str, Any] | None  # this month's UsageDailyUser sums (requests, total_tokens, cost_usd), None if idle
    limits: Limits


def _people_page(request: HttpRequest, team: TeamLimits) -> tuple[Sequence[User], Page[int], list[PersonRow]]:
    """Accounts waiting for approval, and one page of the others (searched by name or e-mail) with their month.

    Everything per person is read for the page only: this month from the per-person roll-up,
    the last call as one index probe on (user, created_at) each, credential health by join.
    """
    first, resets_at = month_of()
    last_call = UsageRecord.objects.filter(user=OuterRef("pk")).order_by("-created_at").values("created_at")[:1]
    people = User.objects.annotate(
        last_call_at=Subquery(last_call),
        credentials_ok=Count("credentials", filter=Q(credentials__status=Status.ACTIVE)),
        credentials_bad=Count("credentials", filter=~Q(credentials__status=Status.ACTIVE)),
    )
    pending = list(people.filter(approval=Approval.PENDING).order_by("date_joined")[:PEOPLE_PER_PAGE])
    others = User.objects.exclude(approval=Approval.PENDING)
    search = request.GET.get("q", "").strip()[:150]
    if search:
        others = others.filter(Q(username__icontains=search) | Q(email__icontains=search))
    page = Paginator(others.order_by("username").values_list("pk", flat=True), PEOPLE_PER_PAGE).get_page(
        request.GET.get("page")
    )
    shown = {person.pk: person for person in people.filter(pk__in=list(page.object_list))}
    month = {
        row["user_id"]: row
        for row in UsageDailyUser.objects.filter(
            user_id__in=list(shown), day__gte=first, day__lt=resets_at.date()
        ).grouped("user_id")
    }
    rows = [PersonRow(shown[pk], month.get(pk), limits_for(shown[pk], team)) for pk in page.object_list if pk in shown]
    return pending, page, rows


@staff_required
def user_list(request: HttpRequest) -> HttpResponse:
    team = TeamLimits.current()
    form = TeamLimitsForm(request.POST or None, instance=team)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Team limits saved."))
        return redirect("usage:user-list")
    pending, page, rows = _people_page(request, team)
    query = request.GET.copy()
    query.pop("page", None)
    ctx = {
        "pending": pending,
        "people": rows,
        "page": page,
        "query": query.urlencode(),
        "search": request.GET.get("q", "").strip()[:150],
        "form": form,
        "month": month_of()[0],
    }
    return render(request, "chat/user_list.html", ctx, status=400 if form.errors else 200)


def _check_may_change(request: HttpRequest, person: User) -> None:
    """Staff may change any account but a superuser's, which only a superuser may change (deactivate, limit):
    being given the usage pages must not let one lock out or starve the site's administrator."""
    if person.is_superuser and not request.user.is_superuser:
        raise PermissionDenied(_("Only a superuser can change a superuser's account."))


@staff_required
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    person = _get_user(pk)
    if request.method == "POST":
        _check_may_change(request, person)
    form = UserLimitsForm(request.POST or None, instance=person)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Limits saved for %(name)s.") % {"name": person.username})
        return redirect("usage:user-detail", pk=person.pk)
    report = usage_report(request, user=person)
    ctx = report_ctx(request, report)
    query = request.GET.copy()
    query.pop("page", None)
    query["user"] = person.username
    ctx.update(
        {
            "person": person,
            "export_query": query.urlencode(),
            "limits_form": form,
            "budget": budget_status(user=person),
            "credentials": list(person.credentials.all()),
            "credential_events": list(CredentialEvent.objects.filter(user=person)[:EVENTS_SHOWN]),
            "last_call": person.usage_records.order_by("-created_at").first(),
        }
    )
    return render(request, "chat/user_detail.html", ctx, status=400 if form.errors else 200)


@require_POST
@staff_required
def user_approve(request: HttpRequest, pk: int) -> HttpResponse:
    person = _get_user(pk)
    if accounts.account_approve(user=person):
        messages.success(request, _("%(name)s can now use BYOK Chat; they have been e-mailed.") % {"name": person})
    return redirect("usage:user-list")


@require_POST
@staff_required
def user_reject(request: HttpRequest, pk: int) -> HttpResponse:
    person = _get_user(pk)
    if accounts.account_reject(user=person):
        messages.success(request, _("%(name)s was turned away and e-mailed.") % {"name": person})
    return redirect("usage:user-list")


@require_POST
@staff_required
def user_set_active(request: HttpRequest, pk: int) -> HttpResponse:
    person = _get_user(pk)
    _check_may_change(request, person)
    if person == request.user:
        messages.error(request, _("You cannot deactivate your own account."))
        return redirect("usage:user-detail", pk=pk)
    active = request.POST.get("active") == "1"
    accounts.account_set_active(user=person, active=active)
    if active:
        messages.success(request, _("%(name)s is active again.") % {"name": person})
    else:
        messages.success(request, _("%(name)s is deactivated and logged out everywhere.") % {"name": person})
    return redirect("usage:user-detail", pk=pk)
