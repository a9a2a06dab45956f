"""The staff usage dashboard: every model call, filterable, with totals, a daily chart and CSV export."""

from __future__ import annotations

import csv
from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chat.forms import UsageFilterForm
from chat.models import State, UsageQuerySet, UsageRecord

PAGE_SIZE = 50
CHART_DAYS = 30


def _filtered(request: HttpRequest) -> tuple[UsageFilterForm, UsageQuerySet]:
    form = UsageFilterForm(request.GET or None)
    records = UsageRecord.objects.select_related("user")
    if not form.is_valid():
        return form, records
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
    return form, records.in_range(data["since"], data["until"])


def _chart(records: UsageQuerySet) -> list[dict]:
    """Bars for an SVG drawn with attributes only, so the strict CSP needs no inline styles."""
    days = list(records.order_by().daily_totals())[-CHART_DAYS:]
    peak = max((day["total_tokens"] for day in days), default=0) or 1
    for index, day in enumerate(days):
        day["height"] = max(2, round(100 * day["total_tokens"] / peak))
        day["x"], day["y"] = index * 30 + 4, 110 - day["height"]
        day["label_x"] = day["x"] + 11
    return days


def staff_required(view: Callable) -> Callable:
    """Staff only; a signed-in non-staff user gets 403, not a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("The usage dashboard is for staff.")
        return view(request, *args, **kwargs)

    return wrapper


@staff_required
def usage_dashboard(request: HttpRequest) -> HttpResponse:
    form, records = _filtered(request)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    chart = _chart(records)
    ctx = {
        "form": form,
        "page": page,
        "totals": records.order_by().totals(),
        "chart": chart,
        "chart_width": max(300, len(chart) * 30 + 8),
        "models": UsageRecord.objects.order_by("model").values_list("model", flat=True).distinct()[:200],
        "query": query.urlencode(),
    }
    return render(request, "chat/usage_dashboard.html", ctx)


CSV_COLUMNS = [
    "time",
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
    _, records = _filtered(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="usage.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for r in records.iterator(chunk_size=2000):
        writer.writerow(
            [
                r.created_at.isoformat(),
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
