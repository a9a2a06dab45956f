"""Writing usage rows: one per model call, whatever the provider reported, with its daily roll-up."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import psycopg
from django.db import connection, connections, transaction
from django.utils import timezone

from chat.catalog import cost_usd
from chat.models import (
    UsageDaily,
    UsageDailyModel,
    UsageDailyUser,
    UsageQuarterHour,
    UsageRecord,
    UsageStatus,
    site_day,
)
from project.sql import row_insert
from tokens.provider.usage import MAX_REPORTED
from tokens.provider.usage import token_count as _count

logger = logging.getLogger(__name__)

MAX_COUNT = 2**31 - 1  # PositiveIntegerField's ceiling on every database


def _details(usage: Mapping, key: str, field: str) -> int | None:
    details = usage.get(key)
    return _count(details.get(field)) if isinstance(details, Mapping) else None


def usage_counts(raw: object, estimate: Callable[[], tuple[int, int]] | None) -> dict:
    """Normalise a provider's `usage` object into integer counts.

    Reads OpenAI's chat-completions shape (prompt_tokens, completion_tokens,
    completion_tokens_details.reasoning_tokens, prompt_tokens_details.cached_tokens) and the
    Responses/Anthropic-style input_tokens/output_tokens. Whatever is missing, negative,
    fractional, boolean, absurdly large or not a number is replaced by the local estimate (prompt, completion)
    and the row is flagged estimated. total_tokens is always prompt + completion, so sums agree.
    """
    usage = raw if isinstance(raw, Mapping) else {}
    prompt = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _count(usage.get("completion_tokens", usage.get("output_tokens")))
    estimated = False
    if (prompt is None or completion is None) and estimate is not None:
        guess_prompt, guess_completion = estimate()
        estimated = True
        prompt = guess_prompt if prompt is None else prompt
        completion = guess_completion if completion is None else completion
    prompt, completion = min(prompt or 0, MAX_REPORTED), min(completion or 0, MAX_REPORTED)
    reasoning = _details(usage, "completion_tokens_details", "reasoning_tokens") or _count(
        usage.get("reasoning_tokens")
    )
    cached = _details(usage, "prompt_tokens_details", "cached_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reasoning_tokens": min(reasoning or 0, completion),
        "cached_tokens": min(cached, prompt),
        "total_tokens": min(prompt + completion, MAX_COUNT),
        "is_estimated": estimated,
    }


def _text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def usage_write(
    *,
    user_id: int,
    model: str,
    source: str,
    usage: object = None,
    estimate: Callable[[], tuple[int, int]] | None = None,
    credential_id: UUID | str | None = None,
    api_key_id: int | None = None,
    conversation_id: int | None = None,
    message_id: int | None = None,
    status_code: int | None = None,
    request_id: object = "",
    response_id: object = None,
    latency_ms: int = 0,
    first_token_ms: int | None = None,
    error_type: str = "",
    outcome: str = "complete",
    created_at: datetime | None = None,
    has_budget: bool = True,
    along: Sequence[tuple[str, Sequence]] = (),
) -> UsageRecord:
    """Record one model call: exactly one UsageRecord, its cost snapshot and its daily roll-up.

    Called once per call by the web relay (source "web") and the API (source "api"), after the
    call ends however it ended. `usage` is the provider's usage object as sent (any shape, or
    None); `estimate` returns local (prompt, completion) token counts, and is called only when
    the provider's numbers are missing or unusable; pass None when nothing was billed (the call
    failed before generating), which records zero tokens. Response ids are kept but never
    deduplicated on: a provider repeating ids cannot keep a call off the log. Triggers the
    budget e-mails after commit, unless `has_budget` is False (the caller read the person's limits for this
    call and there is no budget). `along`: (SQL, parameters) of other writes that belong with the row (the web
    chat's reply), run after it in the same transaction and, on PostgreSQL, the same round trip. Raises only if
    the database itself fails.
    """
    created_at = created_at or timezone.now()
    counts = usage_counts(usage, estimate)
    cost = cost_usd(model, counts, created_at)
    record = UsageRecord(
        user_id=user_id,
        credential_id=credential_id,
        api_key_id=api_key_id,
        conversation_id=conversation_id,
        message_id=message_id,
        source=source,
        model=_text(model, 100),
        status_code=status_code if isinstance(status_code, int) and 0 < status_code < 1000 else None,
        prompt_tokens=counts["prompt_tokens"],
        completion_tokens=counts["completion_tokens"],
        reasoning_tokens=counts["reasoning_tokens"],
        total_tokens=counts["total_tokens"],
        cost_usd=cost,
        is_estimated=counts["is_estimated"],
        latency_ms=min(max(int(latency_ms), 0), MAX_COUNT),
        first_token_ms=min(max(int(first_token_ms), 0), MAX_COUNT) if first_token_ms is not None else None,
        request_id=_text(request_id, 100),
        response_id=_text(response_id, 100) or None,
        error_type=_text(error_type, 40),
        outcome=outcome,
        created_at=created_at,
    )
    _record_insert(record, along)
    from chat.budgets import budget_alerts_check  # budgets reads the roll-up this module writes

    if has_budget:
        transaction.on_commit(lambda: budget_alerts_check(user_id=user_id))
    return record


ROLLUP_COLUMNS = (
    "requests",
    "errors",
    "estimated",
    "unpriced",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_micro_usd",
    "latency_ms",
)


def _micro(cost: Decimal | None) -> int:
    return int((cost or 0) * 1_000_000)


# Each roll-up table, its time column and its other key columns; written in this order by every writer, so two
# writers lock the rows they share in the same order and cannot deadlock.
ROLLUPS = (
    (UsageDaily, "day", ("user_id", "model")),
    (UsageDailyModel, "day", ("model",)),
    (UsageQuarterHour, "bucket", ("model",)),
    (UsageDailyUser, "day", ("user_id",)),
)
QUARTER = timedelta(minutes=15)


def quarter_of(moment: datetime) -> datetime:
    """The start (UTC) of the quarter hour holding moment."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


@functools.cache
def _rollup_statements() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(SQL, period column, key columns) of each roll-up's upsert, in ROLLUPS order; built once per process, so each
    is prepared once per connection (`_record_insert`). `requests` adds the literal 1: every row is one request."""
    columns = ", ".join(ROLLUP_COLUMNS)
    statements = []
    for model, period, keys in ROLLUPS:
        table = model._meta.db_table
        updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in ROLLUP_COLUMNS)
        placeholders = ", ".join(["%s"] * (2 + len(keys)) + ["1"] + ["%s"] * (len(ROLLUP_COLUMNS) - 1))
        key = ", ".join(keys)
        sql = (
            f"INSERT INTO {table} ({period}, status, {key}, {columns}) VALUES ({placeholders}) "  # noqa: S608
            f"ON CONFLICT ({period}, {key}, status) DO UPDATE SET {updates}"
        )
        statements.append((sql, period, keys))
    return tuple(statements)


def _record_insert(record: UsageRecord, along: Sequence[tuple[str, Sequence]] = ()) -> None:
    """Insert the row, add it to its roll-ups and run `along`; on PostgreSQL in one round trip, sets record.pk.

    On PostgreSQL the statements go as one pipeline of prepared statements (psycopg pipeline mode): statements
    before a Sync form one implicit transaction when none is open (protocol docs, "Pipelining" and "Extended
    Query"), so the row and its roll-ups are written together or not at all without a BEGIN and a COMMIT round
    trip; inside a caller's transaction they are part of it. Each statement is parsed and planned once per
    connection. The earlier single text query of all of them was over psycopg's cache limits (4,096 characters,
    50 parameters), so psycopg split and quoted it anew on every row: a tenth of an API call's CPU (py-spy).
    save() and its compiler were a third of the usage write's Python before that.
    """
    if connection.vendor != "postgresql":
        with transaction.atomic(savepoint=False):  # inside a caller's transaction, a savepoint is 2 round trips
            record.save(force_insert=True)
            rollup_add(record)
            with connection.cursor() as cursor:
                for sql, params in along:
                    cursor.execute(sql, params)
        return
    table, columns, values = row_insert(record)
    with connection.cursor() as cursor:
        raw = cursor.cursor.connection
        first, rest = psycopg.Cursor(raw), psycopg.Cursor(raw)
        try:
            with connection.wrap_database_errors:
                with raw.pipeline():
                    first.execute(_insert_sql(table, tuple(columns)), values, prepare=True)
                    for sql, params in (*_rollup_params(record), *along):
                        rest.execute(sql, params, prepare=True)
                (record.pk,) = first.fetchone() or (None,)  # after the Sync: fetching inside would end the transaction
        finally:
            first.close()
            rest.close()
    record._state.adding, record._state.db = False, connection.alias


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    # Names come from the model, values are parameters.
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id"  # noqa: S608


def _rollup_params(record: UsageRecord) -> list[tuple[str, list]]:
    """(SQL, parameters) of each roll-up's upsert for one row, in ROLLUPS order."""
    status = UsageStatus.of(error_type=record.error_type, outcome=record.outcome)
    values = (  # ROLLUP_COLUMNS after requests, which is 1
        1 if record.error_type else 0,
        1 if record.is_estimated else 0,
        1 if record.cost_usd is None else 0,
        record.prompt_tokens,
        record.completion_tokens,
        record.reasoning_tokens,
        record.total_tokens,
        _micro(record.cost_usd),
        record.latency_ms,
    )
    when = {
        "day": site_day(record.created_at),
        "bucket": connection.ops.adapt_datetimefield_value(quarter_of(record.created_at)),
    }
    return [
        (sql, [when[period], status, *(getattr(record, k) for k in keys), *values])
        for sql, period, keys in _rollup_statements()
    ]


def rollup_add(record: UsageRecord) -> None:
    """Add one row to its roll-ups with upserts (INSERT ... ON CONFLICT DO UPDATE), in the caller's transaction.

    PostgreSQL and SQLite (3.24+) share this syntax; concurrent writers for the same
    period and key serialise on that one roll-up row.
    """
    with connection.cursor() as cursor:
        for sql, params in _rollup_params(record):
            cursor.execute(sql, params)


ROLLUP_REBUILD_SQL = """
INSERT INTO {table} ({period}, status, {keys}, {columns})
SELECT {period_expr}, CASE WHEN error_type <> '' THEN 'error' WHEN outcome = 'stopped' THEN 'stopped' ELSE 'ok' END,
       {keys}, COUNT(*),
       SUM(CASE WHEN error_type <> '' THEN 1 ELSE 0 END),
       SUM(CASE WHEN is_estimated THEN 1 ELSE 0 END),
       SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END),
       SUM(prompt_tokens), SUM(completion_tokens), SUM(reasoning_tokens), SUM(total_tokens),
       COALESCE(SUM(ROUND(cost_usd * 1000000)), 0), SUM(latency_ms)
FROM chat_usagerecord
GROUP BY 1, 2, {keys}
"""
# Daily per model and daily per person are sums of daily per person and model.
ROLLUP_FROM_DAILY_SQL = """
INSERT INTO {table} (day, status, {key}, {columns})
SELECT day, status, {key}, {sums} FROM chat_usagedaily GROUP BY day, status, {key}
"""


def rollup_rebuild(using: str = "default") -> int:
    """Recompute every roll-up from the raw rows (after a bulk load, a restore, a TIME_ZONE change, the migration).

    Uses table and column names only, so a migration can call it. Returns the number of
    UsageDaily rows. Takes a few minutes per ten million rows on PostgreSQL.
    """
    conn = connections[using]
    zone = timezone.get_default_timezone_name()
    if conn.vendor == "postgresql":
        day_expr, params = "(created_at AT TIME ZONE %s)::date", [zone]
        quarter_expr = "date_bin('15 minutes', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    elif zone == "UTC":
        day_expr, params = "date(created_at)", []  # SQLite keeps UTC text
        quarter_expr = "datetime(CAST(strftime('%s', created_at) AS INTEGER) / 900 * 900, 'unixepoch')"
    else:
        raise NotImplementedError("Rebuilding the roll-up on SQLite needs TIME_ZONE=UTC.")
    columns = ", ".join(ROLLUP_COLUMNS)
    with transaction.atomic(using=using), conn.cursor() as cursor:
        for model, _period, _keys in ROLLUPS:
            cursor.execute(f"DELETE FROM {model._meta.db_table}")  # noqa: S608 (fixed names)
        daily = ROLLUP_REBUILD_SQL.format(
            table="chat_usagedaily", period="day", period_expr=day_expr, keys="user_id, model", columns=columns
        )
        cursor.execute(daily, params)
        quarters = ROLLUP_REBUILD_SQL.format(
            table="chat_usagequarterhour", period="bucket", period_expr=quarter_expr, keys="model", columns=columns
        )
        cursor.execute(quarters)
        sums = ", ".join(f"SUM({c})" for c in ROLLUP_COLUMNS)
        for table, key in (("chat_usagedailymodel", "model"), ("chat_usagedailyuser", "user_id")):
            cursor.execute(ROLLUP_FROM_DAILY_SQL.format(table=table, key=key, columns=columns, sums=sums))
        cursor.execute("SELECT COUNT(*) FROM chat_usagedaily")
        return cursor.fetchone()[0]
