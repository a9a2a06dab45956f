"""Usage reports: the staff dashboard (/usage/), a person's own usage (/settings/usage/) and their CSV export.

Every sum comes from a roll-up (chat.models), each split by status so the outcome filter is
exact too, and days are the reader's days (their profile's time zone):

- the team (no person chosen): UsageDailyModel (day, model) for a reader in the site's zone
  (settings.TIME_ZONE), about 30 × models rows for 30 days; for a reader in another zone,
  UsageQuarterHour, everyone's calls per quarter hour and model grouped into their days in SQL;
- one person: UsageDaily (day, person, model) when the reader's zone is the site's, else that
  person's own rows of the range through the (user, created_at) index;
- by person: UsageDailyUser for the site's days wholly inside the reader's range, plus the raw
  rows of the partial days at its two ends (less than a day of calls each).

Only those edges, the page of calls shown (keyset pagination, 50 rows) and the export read raw
rows, always through the (created_at), (user, created_at) or (model, created_at) index.
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial, wraps

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Q
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import AuthenticatedHttpRequest, User
from chat.budgets import budget_status
from chat.forms import UsageFilterForm
from chat.models import (
    UsageDaily,
    UsageDailyModel,
    UsageDailyQuerySet,
    UsageDailyUser,
    UsageQuarterHour,
    UsageQuerySet,
    UsageRecord,
    UsageSums,
    day_bounds,
)
from chat.usage import ROLLUP_COLUMNS
from project.threads import connection_hand_back
from tokens.models import CredentialEvent

PAGE_SIZE = 50
CHART_DAYS = 30
MAX_CHART_DAYS = 92
BAR_STEP, BAR_WIDTH = 24, 18
EVENTS_SHOWN = 15
EXPORT_BATCH = 5000
# The roll-ups' counters, with the cost as a Decimal (rows from roll-ups and from raw rows alike).
SUMMED = tuple("cost_usd" if column == "cost_micro_usd" else column for column in ROLLUP_COLUMNS)


def merged(rows: Iterable[dict], by: tuple[str, ...]) -> list[dict]:
    """Rows of sums added up per value of the `by` columns (all of them into one row when by is empty)."""
    groups: dict = {}
    for row in rows:
        key = tuple(row[column] for column in by)
        if key not in groups:
            groups[key] = {column: row[column] for column in by} | {column: 0 for column in SUMMED}
        for column in SUMMED:
            groups[key][column] += row[column]
    for group in groups.values():
        group["avg_latency_ms"] = group["latency_ms"] / group["requests"] if group["requests"] else None
    return list(groups.values())


@dataclass
class Report:
    """The filtered usage of a page: raw rows for the call list and the export, roll-ups for every sum."""

    form: UsageFilterForm
    since: date
    until: date
    records: UsageQuerySet
    user_ids: list[int] | None = None
    model: str = ""
    status: str = ""
    _by_day_model: list[dict] | None = field(default=None, repr=False)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return timezone.get_current_timezone()

    @property
    def in_site_zone(self) -> bool:
        return timezone.get_current_timezone_name() == timezone.get_default_timezone_name()

    @property
    def bounded(self) -> UsageQuerySet:
        """The filtered rows of the reader's days since..until (the call list may run past until)."""
        return self.records.filter(created_at__lt=day_bounds(self.until, self.until, self.zone)[1])

    def _filtered(self, rollup: type[UsageSums], *, model: bool = True) -> UsageDailyQuerySet:
        rows = rollup.objects.all()
        rows = rows.filter(user_id__in=self.user_ids) if self.user_ids is not None else rows
        rows = rows.filter(model=self.model) if self.model and model else rows
        return rows.filter(status=self.status) if self.status else rows

    def by_day_model(self) -> list[dict]:
        """Sums per reader's day and model: everything but the by-person table is added up from these."""
        if self._by_day_model is None:
            if self.user_ids is None and self.in_site_zone:
                daily = self._filtered(UsageDailyModel).in_range(self.since, self.until)
                self._by_day_model = daily.grouped("day", "model")
            elif self.user_ids is None:  # the team read in another zone: quarter hours grouped into its days
                start, end = day_bounds(self.since, self.until, self.zone)
                quarters = self._filtered(UsageQuarterHour).filter(bucket__gte=start, bucket__lt=end)
                quarters = quarters.annotate(day=TruncDate("bucket", tzinfo=self.zone))
                self._by_day_model = quarters.grouped("day", "model")
            elif self.in_site_zone:
                self._by_day_model = self._filtered(UsageDaily).in_range(self.since, self.until).grouped("day", "model")
            else:  # one person, read in another zone: their own rows of the range
                self._by_day_model = self.bounded.grouped("day", "model", zone=self.zone)
        return self._by_day_model

    def totals(self) -> dict:
        return merged([dict.fromkeys(SUMMED, 0), *self.by_day_model()], ())[0]

    def grouped(self, by: str) -> list[dict]:
        """Sums per value of by ("day", "model" or "user_id")."""
        if by != "user_id":
            return merged(self.by_day_model(), (by,))
        per_model = self.model or self.user_ids is not None
        daily = self._filtered(UsageDaily if per_model else UsageDailyUser)
        if self.in_site_zone:
            return daily.in_range(self.since, self.until).grouped("user_id")
        # The site's days wholly inside the reader's range from the roll-up, the partial ones at each end from rows.
        start, end = day_bounds(self.since, self.until, self.zone)
        site = timezone.get_default_timezone()
        first = timezone.localtime(start, site).date()
        first += timedelta(days=1) if day_bounds(first, first, site)[0] < start else timedelta(0)
        last = timezone.localtime(end, site).date() - timedelta(days=1)
        if first > last:
            return self.bounded.grouped("user_id")
        inner_start, inner_end = day_bounds(first, last, site)
        # Two narrow index ranges, not one OR over the whole range.
        head = self.bounded.filter(created_at__lt=inner_start).grouped("user_id")
        tail = self.bounded.filter(created_at__gte=inner_end).grouped("user_id")
        return merged([*daily.in_range(first, last).grouped("user_id"), *head, *tail], ("user_id",))


def usage_report(request: HttpRequest, *, user: User | None = None) -> Report:
    """Read the filters from the query string; malformed ones are reported on the form and ignored, never a 500."""
    form = UsageFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    today = timezone.localdate()  # the reader's day (accounts.preferences activates their zone)
    until = data.get("until") or today
    since = data.get("since") or until - timedelta(days=CHART_DAYS - 1)
    # Without a "To" date the list and export stay open-ended: a call stamped after the reader's today still shows.
    records = UsageRecord.objects.in_range(since, data.get("until"))
    report = Report(form, since, until, records)
    if user is not None:
        report.user_ids = [user.pk]
    elif data.get("user"):
        report.user_ids = list(User.objects.filter(username__iexact=data["user"].strip()).values_list("id", flat=True))
    if report.user_ids is not None:
        records = records.filter(user_id__in=report.user_ids)
    if data.get("model"):
        report.model = data["model"].strip()
        records = records.filter(model=report.model)
    if data.get("status"):
        report.status = data["status"]
        records = records.with_status(report.status)
    report.records = records
    return report


def chart_days(report: Report) -> list[dict]:
    """One bar per day of the range (the last MAX_CHART_DAYS at most), drawn with SVG attributes (strict CSP)."""
    since = max(report.since, report.until - timedelta(days=MAX_CHART_DAYS - 1))
    totals = {row["day"]: dict(row) for row in report.grouped("day")}
    days = []
    for offset in range((report.until - since).days + 1):
        day = since + timedelta(days=offset)
        days.append(totals.get(day, {"day": day, "requests": 0, "errors": 0, "total_tokens": 0}))
    peak = max(day["total_tokens"] for day in days) or 1
    for index, bar in enumerate(days):
        bar["height"] = round(100 * bar["total_tokens"] / peak) if bar["total_tokens"] else 0
        bar["x"], bar["y"] = index * BAR_STEP + 4, 110 - bar["height"]
        # The failed share of the day's calls is drawn in red on top of the bar.
        bar["error_height"] = round(bar["height"] * bar["errors"] / bar["requests"]) if bar["requests"] else 0
        bar["label_x"] = bar["x"] + BAR_WIDTH // 2
        bar["show_label"] = index % max(1, len(days) // 10) == 0
    return days


def breakdown(report: Report, by: str, limit: int = 10) -> list[dict]:
    ranked = sorted(report.grouped(by), key=lambda r: (-r["total_tokens"], -r["requests"]))[:limit]
    rows = [dict(row) for row in ranked]  # the report's rows are shared between sections
    if by == "user_id":
        names = dict(User.objects.filter(pk__in=[r["user_id"] for r in rows]).values_list("pk", "username"))
        for row in rows:
            row["user_id"] = names.get(row["user_id"], "?")
    peak = max((row["total_tokens"] for row in rows), default=0) or 1
    for row in rows:
        row["name"] = row.pop(by)
        row["share"] = round(100 * row["total_tokens"] / peak)
    return rows


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _cursor(record: UsageRecord) -> str:
    """A position in the newest-first call list: the call's time in microseconds since 1970 and its id."""
    return f"{(record.created_at - EPOCH) // timedelta(microseconds=1)}_{record.pk}"


def _parse_cursor(value: str | None) -> tuple[datetime, int] | None:
    try:
        micros, pk = (int(part) for part in (value or "").split("_"))
        return EPOCH + timedelta(microseconds=micros), pk
    except (ValueError, OverflowError):
        return None  # malformed or out of range: the first page


@dataclass
class CallPage:
    """One page of calls, newest first, and the cursors of the pages beside it (None at either end)."""

    rows: list[UsageRecord]
    newer: str | None
    older: str | None


def calls_page(records: UsageQuerySet, *, before: str | None = None, after: str | None = None) -> CallPage:
    """PAGE_SIZE calls older than `before` (or newer than `after`, or the newest), by keyset on (created_at, id).

    Each page is one index range scan of PAGE_SIZE + 1 rows, however deep: no OFFSET, no COUNT(*).
    """
    records = records.select_related("user")
    if position := _parse_cursor(after):
        moment, pk = position
        newer_first = records.filter(created_at__gte=moment).filter(Q(created_at__gt=moment) | Q(id__gt=pk))
        rows = list(newer_first.order_by("created_at", "id")[: PAGE_SIZE + 1])
        more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE][::-1]
        return CallPage(rows, _cursor(rows[0]) if more else None, _cursor(rows[-1]) if rows else None)
    position = _parse_cursor(before)
    if position:
        moment, pk = position
        records = records.filter(created_at__lte=moment).filter(Q(created_at__lt=moment) | Q(id__lt=pk))
    rows = list(records.order_by("-created_at", "-id")[: PAGE_SIZE + 1])
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    newer = _cursor(rows[0]) if position and rows else None
    return CallPage(rows, newer, _cursor(rows[-1]) if more else None)


def report_ctx(request: HttpRequest, report: Report) -> dict:
    """What every usage page shows: totals, chart, by model, the page of calls, the query for links."""
    query = request.GET.copy()
    for key in ("page", "before", "after"):
        query.pop(key, None)
    chart = chart_days(report)
    return {
        "form": report.form,
        "since": report.since,
        "until": report.until,
        "calls": calls_page(report.records, before=request.GET.get("before"), after=request.GET.get("after")),
        "totals": report.totals(),
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


def my_usage(request: AuthenticatedHttpRequest) -> HttpResponse:
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
    # The session's zone is UTC (Django sets it), so timestamptz prints as RFC 3339 in UTC ("… 20:30:00.5+00");
    # to_char would double the server's time per row.
    "t.created_at",
    "date_trunc('second', t.created_at AT TIME ZONE %s)::text || ' ' || %s",
    _sql_safe("t.user__username"),
    "t.source",  # our own choices, never typed by anyone: nothing to neutralise
    _sql_safe("t.model"),
    "t.status_code",
    "t.outcome",
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
    """Feed a synchronous (database) iterator to the ASGI server chunk by chunk, every step on one thread (the COPY
    holds that thread's connection); at the end, or when the client leaves, the iterator is closed and the connection
    handed back there (no request's signals run on that thread to do it: project.asgi)."""
    step = sync_to_async(partial(next, chunks, None), thread_sensitive=True)
    await sync_to_async(_hand_back, thread_sensitive=True)()  # one a database restart left there, if any
    try:
        while (chunk := await step()) is not None:
            yield chunk
    finally:
        await sync_to_async(_hand_back, thread_sensitive=True)(chunks)


def _hand_back(chunks: Iterator[bytes] | None = None) -> None:
    try:
        getattr(chunks, "close", lambda: None)()
    finally:
        connection_hand_back()


def csv_response(records: UsageQuerySet, filename: str) -> StreamingHttpResponse:
    # The reader's zone is read now: the rows are written after the view (and its time-zone activation) returned.
    chunks = csv_chunks(records, timezone.get_current_timezone_name())
    response = StreamingHttpResponse(_aiter(chunks), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@staff_required
def usage_export(request: HttpRequest) -> StreamingHttpResponse:
    return csv_response(usage_report(request).records, "usage.csv")


def my_usage_export(request: AuthenticatedHttpRequest) -> StreamingHttpResponse:
    return csv_response(usage_report(request, user=request.user).records, "my-usage.csv")
