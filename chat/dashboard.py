"""The staff usage dashboard: every model call, filterable, with totals, a daily chart and CSV export."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date, timedelta
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.templatetags.timetags import local_text
from chat.forms import UsageFilterForm
from chat.models import State, UsageQuerySet, UsageRecord
from tokens.models import CredentialEvent

PAGE_SIZE = 50
CHART_DAYS = 30
MAX_CHART_DAYS = 92
BAR_STEP, BAR_WIDTH = 24, 18
EVENTS_SHOWN = 15


def _filtered(request: HttpRequest) -> tuple[UsageFilterForm, UsageQuerySet, date, date]:
    form = UsageFilterForm(request.GET or None)
    records = UsageRecord.objects.select_related("user")
    today = timezone.localdate()
    if not form.is_valid():
        return form, records, today - timedelta(days=CHART_DAYS - 1), today
    data = form.cleaned_data
    if data["user"]:
        records = records.filter(user__username__iexact=data["user"].strip())
    if data["model"]:
        records = records.filter(model__iexact=data["model"].strip())
    if data["status"] == "ok":
        records = records.filter(error_type="")
    elif data["status"] == "error":
        records = records.exclude(error_type="")
    elif data["status"] == "stopped":
        records = records.filter(outcome=State.STOPPED)
    until = data["until"] or today
    since = data["since"] or until - timedelta(days=CHART_DAYS - 1)
    return form, records.in_range(data["since"], data["until"]), since, until


def _chart(records: UsageQuerySet, since: date, until: date) -> list[dict]:
    """One bar per day of the range (at most MAX_CHART_DAYS), drawn with SVG attributes so the CSP needs no styles."""
    since = max(since, until - timedelta(days=MAX_CHART_DAYS - 1))
    totals = {row["day"]: row for row in records.order_by().in_range(since, until).daily_totals()}
    days = []
    for offset in range((until - since).days + 1):
        day = since + timedelta(days=offset)
        days.append(totals.get(day, {"day": day, "requests": 0, "errors": 0, "total_tokens": 0}))
    peak = max(day["total_tokens"] for day in days) or 1
    for index, day in enumerate(days):
        day["height"] = round(100 * day["total_tokens"] / peak) if day["total_tokens"] else 0
        day["x"], day["y"] = index * BAR_STEP + 4, 110 - day["height"]
        # The failed share of the day's calls is drawn in red on top of the bar.
        day["error_height"] = round(day["height"] * day["errors"] / day["requests"]) if day["requests"] else 0
        day["label_x"] = day["x"] + BAR_WIDTH // 2
        day["show_label"] = index % max(1, len(days) // 10) == 0
    return days


def _breakdown(records: UsageQuerySet, field: str) -> list[dict]:
    rows = list(
        records.order_by()
        .values(field)
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=~Q(error_type="")),
            total_tokens=Sum("total_tokens", default=0),
            cost_usd=Sum("cost_usd"),
            avg_latency_ms=Avg("latency_ms"),
        )
        .order_by("-total_tokens", "-requests")[:10]
    )
    peak = max((row["total_tokens"] for row in rows), default=0) or 1
    for row in rows:
        row["name"] = row.pop(field)
        row["share"] = round(100 * row["total_tokens"] / peak)
    return rows


def _credential_events(form: UsageFilterForm) -> list[CredentialEvent]:
    """The latest credential events (checks, refreshes, failures), narrowed to the filtered user."""
    events = CredentialEvent.objects.select_related("user")
    if form.is_valid() and form.cleaned_data["user"]:
        events = events.filter(user__username__iexact=form.cleaned_data["user"].strip())
    return list(events[:EVENTS_SHOWN])


def staff_required(view: Callable) -> Callable:
    """Staff only; a signed-in non-staff user gets 403, not a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied(_("The usage dashboard is for staff."))
        return view(request, *args, **kwargs)

    return wrapper


@staff_required
def usage_dashboard(request: HttpRequest) -> HttpResponse:
    form, records, since, until = _filtered(request)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    chart = _chart(records, since, until)
    ctx = {
        "form": form,
        "page": page,
        "totals": records.order_by().totals(),
        "chart": chart,
        "chart_width": len(chart) * BAR_STEP + 8,
        "chart_peak": max(day["total_tokens"] for day in chart),
        "by_model": _breakdown(records, "model"),
        "by_user": _breakdown(records, "user__username"),
        "credential_events": _credential_events(form),
        "models": UsageRecord.objects.order_by("model").values_list("model", flat=True).distinct()[:200],
        "query": query.urlencode(),
    }
    return render(request, "chat/usage_dashboard.html", ctx)


CSV_COLUMNS = [
    "time",
    "local_time",  # the same moment in the reader's zone, for people reading the file
    "user",
    "model",
    "status",
    "outcome",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "estimated",
    "cost_usd",
    "latency_ms",
    "first_token_ms",
    "request_id",
    "credential_id",
]


@staff_required
def usage_export(request: HttpRequest) -> HttpResponse:
    records = _filtered(request)[1]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="usage.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    zone = timezone.get_current_timezone_name()
    for r in records.iterator(chunk_size=2000):
        writer.writerow(
            [
                r.created_at.isoformat(),
                f"{local_text(r.created_at, 'log')} {zone}",
                r.user.username,
                r.model,
                r.status_code or "",
                r.outcome,
                r.error_type,
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                r.is_estimated,
                r.cost_usd or "",
                r.latency_ms,
                r.first_token_ms or "",
                r.request_id,
                r.credential_id or "",
            ]
        )
    return response
