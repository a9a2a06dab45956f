"""Usage reports: the staff dashboard (/usage/), a person's own usage (/settings/usage/) and their CSV export.

Totals, charts and breakdowns read the daily roll-up (UsageDaily), so a month of ten million
rows costs a few thousand roll-up rows; only the page of calls shown and the export read raw
rows, through the (created_at), (user, created_at) and (model, created_at) indexes. The
outcome filter is the one thing the roll-up does not carry: with it, sums come from raw rows.
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import wraps

from asgiref.sync import sync_to_async
from django.core.exceptions import EmptyResultSet, PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from chat.budgets import budget_status
from chat.forms import UsageFilterForm
from chat.models import MICRO, State, UsageDaily, UsageDailyQuerySet, UsageQuerySet, UsageRecord, _with_cost
from tokens.models import CredentialEvent

PAGE_SIZE = 50
CHART_DAYS = 30
MAX_CHART_DAYS = 92
BAR_STEP, BAR_WIDTH = 24, 18
EVENTS_SHOWN = 15
EXPORT_BATCH = 5000


@dataclass
class Report:
    """The filtered usage of a page: raw rows for the call list, the roll-up (or None) for sums."""

    form: UsageFilterForm
    since: date
    until: date
    records: UsageQuerySet
    daily: UsageDailyQuerySet | None
    _sets: dict | None = None

    def _grouping_sets(self) -> dict | None:
        """Totals and sums per day, model and person from ONE scan of the roll-up (PostgreSQL GROUPING SETS)."""
        if self.daily is None or connection.vendor != "postgresql":
            return None
        if self._sets is None:
            self._sets = daily_grouping_sets(self.daily)
        return self._sets

    def totals(self) -> dict:
        if (sets := self._grouping_sets()) is not None:
            return sets["total"]
        if self.daily is not None:
            return self.daily.totals()
        totals = self.records.order_by().totals()
        totals["cost_usd"] = totals["cost_usd"].quantize(MICRO)
        return totals

    def grouped(self, field: str) -> list[dict]:
        """Sums per value of field ("day", "model" or "user_id")."""
        if (sets := self._grouping_sets()) is not None:
            return sets[field]
        if self.daily is not None:
            return self.daily.grouped(field)
        records = self.records.order_by()
        if field == "day":
            records = records.annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        return list(
            records.values(field).annotate(
                requests=Count("id"),
                errors=Count("id", filter=~Q(error_type="")),
                unpriced=Count("id", filter=Q(cost_usd__isnull=True)),
                total_tokens=Sum("total_tokens", default=0),
                cost_usd=Sum("cost_usd"),
                avg_latency_ms=Avg("latency_ms"),
            )
        )


_SUM_COLUMNS = tuple(UsageDailyQuerySet._sums(None))
# GROUPING(day, model, user_id): which of the three a result row is NOT grouped by, as bits 4, 2, 1.
_SET_OF_GROUPING = {7: "total", 3: "day", 5: "model", 6: "user_id"}


def daily_grouping_sets(daily: UsageDailyQuerySet) -> dict:
    """{"total": {...}, "day": [...], "model": [...], "user_id": [...]} for the filtered roll-up, in one query."""
    sets: dict = {"total": None, "day": [], "model": [], "user_id": []}
    try:
        inner, params = daily.order_by().values("day", "model", "user_id", *_SUM_COLUMNS).query.sql_with_params()
    except EmptyResultSet:  # a filter Django knows matches nothing (user__in=[]): no SQL to wrap
        sets["total"] = daily.none().totals()
        return sets
    sums = ", ".join(f"SUM(t.{column}) AS {column}" for column in _SUM_COLUMNS)
    sql = (
        f"SELECT GROUPING(t.day, t.model, t.user_id), t.day, t.model, t.user_id, {sums} "  # noqa: S608 (fixed names)
        f"FROM ({inner}) AS t GROUP BY GROUPING SETS ((), (t.day), (t.model), (t.user_id))"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for grouping, day, model, user_id, *values in cursor.fetchall():
            name = _SET_OF_GROUPING[grouping]
            row = _with_cost({column: int(value or 0) for column, value in zip(_SUM_COLUMNS, values, strict=True)})
            if name == "total":
                sets["total"] = row
            else:
                row[name] = {"day": day, "model": model, "user_id": user_id}[name]
                sets[name].append(row)
    if sets["total"] is None:  # no rows at all: GROUPING SETS still answers (), but be sure
        sets["total"] = daily.none().totals()
    return sets


def usage_report(request: HttpRequest, *, user: User | None = None) -> Report:
    """Read the filters from the query string; malformed ones are reported on the form and ignored, never a 500."""
    form = UsageFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    today = timezone.localdate()  # the reader's day (accounts.preferences activates their zone)
    until = data.get("until") or today
    since = data.get("since") or until - timedelta(days=CHART_DAYS - 1)
    # Without a "To" date the list and export stay open-ended: a call stamped after the reader's today still shows.
    records = UsageRecord.objects.in_range(since, data.get("until"))
    daily = UsageDaily.objects.in_range(since, until)
    if user is not None:
        records, daily = records.filter(user=user), daily.filter(user=user)
    elif data.get("user"):
        ids = list(User.objects.filter(username__iexact=data["user"].strip()).values_list("id", flat=True))
        records, daily = records.filter(user_id__in=ids), daily.filter(user_id__in=ids)
    if data.get("model"):
        model = data["model"].strip()
        records, daily = records.filter(model=model), daily.filter(model=model)
    if timezone.get_current_timezone_name() != timezone.get_default_timezone_name():
        daily = None  # the roll-up counts the site's days; a reader in another zone gets their own days, from rows
    status = data.get("status")
    if status:
        daily = None  # outcomes are not rolled up
        if status == "ok":
            records = records.filter(error_type="")
        elif status == "error":
            records = records.exclude(error_type="")
        elif status == "stopped":
            records = records.filter(outcome=State.STOPPED)
    return Report(form, since, until, records, daily)


def chart_days(report: Report) -> list[dict]:
    """One bar per day of the range (the last MAX_CHART_DAYS at most), drawn with SVG attributes (strict CSP)."""
    since = max(report.since, report.until - timedelta(days=MAX_CHART_DAYS - 1))
    totals = {row["day"]: dict(row) for row in report.grouped("day")}
    days = []
    for offset in range((report.until - since).days + 1):
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


def breakdown(report: Report, field: str, limit: int = 10) -> list[dict]:
    ranked = sorted(report.grouped(field), key=lambda r: (-r["total_tokens"], -r["requests"]))[:limit]
    rows = [dict(row) for row in ranked]  # the report's rows are shared between sections
    if field == "user_id":
        names = dict(User.objects.filter(pk__in=[r["user_id"] for r in rows]).values_list("pk", "username"))
        for row in rows:
            row["user_id"] = names.get(row["user_id"], "?")
    peak = max((row["total_tokens"] for row in rows), default=0) or 1
    for row in rows:
        row["name"] = row.pop(field)
        row["share"] = round(100 * row["total_tokens"] / peak)
    return rows


class CountedPaginator(Paginator):
    """A paginator told its count (from the roll-up) instead of running COUNT(*) over millions of rows."""

    def __init__(self, object_list, per_page: int, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @property
    def count(self) -> int:
        return self._known_count


def report_ctx(request: HttpRequest, report: Report) -> dict:
    """What every usage page shows: totals, chart, by model, the page of calls, the query for links."""
    totals = report.totals()
    page = CountedPaginator(
        report.records.select_related("user").order_by("-created_at", "-id"), PAGE_SIZE, totals["requests"]
    ).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    chart = chart_days(report)
    return {
        "form": report.form,
        "since": report.since,
        "until": report.until,
        "page": page,
        "totals": totals,
        "chart": chart,
        "chart_width": len(chart) * BAR_STEP + 8,
        "chart_peak": max(day["total_tokens"] for day in chart),
        "by_model": breakdown(report, "model"),
        "query": query.urlencode(),
    }


def _credential_events(report: Report) -> list[CredentialEvent]:
    """The latest credential events (checks, refreshes, failures), narrowed to the filtered user."""
    events = CredentialEvent.objects.select_related("user")
    data = report.form.cleaned_data if report.form.is_valid() else {}
    if data.get("user"):
        events = events.filter(user__username__iexact=data["user"].strip())
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
    report = usage_report(request)
    ctx = report_ctx(request, report)
    ctx["by_user"] = breakdown(report, "user_id")
    ctx["credential_events"] = _credential_events(report)
    ctx["models"] = sorted(row["model"] for row in report.grouped("model"))[:200]
    return render(request, "chat/usage_dashboard.html", ctx)


def my_usage(request: HttpRequest) -> HttpResponse:
    """A person's own calls, this month's spend and what is left of their budget."""
    report = usage_report(request, user=request.user)
    ctx = report_ctx(request, report)
    ctx["budget"] = budget_status(user=request.user)
    return render(request, "chat/my_usage.html", ctx)


# Cells a spreadsheet would read as a formula (OWASP "CSV Injection"), and their full-width forms.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")

CSV_COLUMNS = [
    "time",
    "local_time",  # the same moment in the reader's zone, for people reading the file
    "user",
    "source",
    "model",
    "status",
    "outcome",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "estimated",
    "cost_usd",
    "latency_ms",
    "first_token_ms",
    "request_id",
    "credential_id",
]
_EXPORT_FIELDS = (
    "created_at",
    "user__username",
    "source",
    "model",
    "status_code",
    "outcome",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "is_estimated",
    "cost_usd",
    "latency_ms",
    "first_token_ms",
    "request_id",
    "credential_id",
)
_TEXT_COLUMNS = (2, 3, 4, 6, 7, 16)


def csv_safe(value: str) -> str:
    """Neutralise a cell that would start a formula by prefixing a single quote (OWASP CSV-injection rule)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_chunks(records: UsageQuerySet, zone: str) -> Iterator[bytes]:
    """The CSV of records, newest first, header first, as chunks of about CHUNK_BYTES.

    On PostgreSQL the rows are formatted by the server (COPY ... TO STDOUT, CSV) with the
    formula cells neutralised in SQL, several times faster than formatting in Python; other
    databases go through Python's csv module with the same neutralising.
    """
    records = records.order_by("-created_at", "-id")
    if connection.vendor == "postgresql":
        yield from _copy_chunks(records, zone)
    else:
        yield from _python_chunks(records, zone)


CHUNK_BYTES = 256 * 1024


def _python_chunks(records: UsageQuerySet, zone: str) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    tz = zoneinfo.ZoneInfo(zone)
    for row in records.values_list(*_EXPORT_FIELDS).iterator(chunk_size=EXPORT_BATCH):
        row = list(row)
        row.insert(1, f"{row[0].astimezone(tz):%Y-%m-%d %H:%M:%S} {zone}")  # timetags' "log" style
        row[0] = row[0].isoformat()
        for index in _TEXT_COLUMNS:
            row[index] = csv_safe(row[index])
        if row[13] is None:
            row[13] = ""
        writer.writerow(row)
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _sql_safe(column: str) -> str:
    starts = ", ".join("'" + start.replace("'", "''") + "'" for start in FORMULA_STARTS)
    return f"CASE WHEN left({column}, 1) IN ({starts}) THEN '''' || {column} ELSE {column} END"


_COPY_COLUMNS = [
    """to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')""",
    """to_char(t.created_at AT TIME ZONE %s, 'YYYY-MM-DD HH24:MI:SS') || ' ' || %s""",
    _sql_safe("t.user__username"),
    _sql_safe("t.source"),
    _sql_safe("t.model"),
    "t.status_code",
    _sql_safe("t.outcome"),
    _sql_safe("t.error_type"),
    "t.prompt_tokens",
    "t.completion_tokens",
    "t.reasoning_tokens",
    "t.total_tokens",
    "CASE WHEN t.is_estimated THEN 'True' ELSE 'False' END",
    "t.cost_usd",
    "t.latency_ms",
    "t.first_token_ms",
    _sql_safe("t.request_id"),
    "t.credential_id",
]


def _copy_chunks(records: UsageQuerySet, zone: str) -> Iterator[bytes]:
    inner, params = records.values_list(*_EXPORT_FIELDS).query.sql_with_params()
    select = ", ".join(f'{expr} AS "{name}"' for expr, name in zip(_COPY_COLUMNS, CSV_COLUMNS, strict=True))
    sql = f"COPY (SELECT {select} FROM ({inner}) AS t) TO STDOUT WITH (FORMAT csv, HEADER)"  # noqa: S608
    with connection.cursor() as cursor, cursor.cursor.copy(sql, [zone, zone, *params]) as copy:
        pending, size = [], 0
        for block in copy:
            pending.append(bytes(block))
            size += len(block)
            if size >= CHUNK_BYTES:
                yield b"".join(pending)
                pending, size = [], 0
        yield b"".join(pending)


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Feed a synchronous (database) iterator to the ASGI server chunk by chunk, on the request's own thread."""
    step = sync_to_async(next, thread_sensitive=True)
    while (chunk := await step(chunks, None)) is not None:
        yield chunk


def csv_response(records: UsageQuerySet, filename: str) -> StreamingHttpResponse:
    # The reader's zone is read now: the rows are written after the view (and its time-zone activation) returned.
    chunks = csv_chunks(records, timezone.get_current_timezone_name())
    response = StreamingHttpResponse(_aiter(chunks), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@staff_required
def usage_export(request: HttpRequest) -> HttpResponse:
    return csv_response(usage_report(request).records, "usage.csv")


def my_usage_export(request: HttpRequest) -> HttpResponse:
    return csv_response(usage_report(request, user=request.user).records, "my-usage.csv")
