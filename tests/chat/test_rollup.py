"""The roll-up equals a direct computation on the raw rows, for any rows and any date range (property-based)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import RequestFactory, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from chat.dashboard import usage_report
from chat.models import UsageRecord
from chat.tasks import prune_usage
from chat.usage import ROLLUPS, rollup_rebuild, usage_write
from tests.conftest import user_create

pytestmark = pytest.mark.django_db

START = datetime(2026, 10, 1, tzinfo=UTC)
USAGE = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6)},
        optional={"completion_tokens_details": st.fixed_dictionaries({"reasoning_tokens": st.integers(0, 10**6)})},
    ),
)
MODELS = ["gpt-4o-mini", "gpt-4o", "house-model-without-price"]
ROW = st.tuples(
    st.integers(0, 2),  # person
    st.sampled_from(MODELS),
    st.integers(0, 60 * 24 * 45),  # minutes after START
    USAGE,
    st.sampled_from([("", "complete"), ("", "stopped"), ("rate_limit", "error"), ("cut", "incomplete")]),
)
# UTC, whole-hour zones both sides of it, and the half- and three-quarter-hour ones.
ZONES = ["UTC", "Asia/Shanghai", "America/Los_Angeles", "America/St_Johns", "Asia/Kathmandu"]
SUMMED = ("requests", "errors", "estimated", "unpriced", "prompt_tokens", "completion_tokens", "reasoning_tokens")


def _by_hand(records: list[UsageRecord], key) -> dict:
    """Sums computed in Python straight from the rows, grouped by key(row)."""
    groups: dict = {}
    for record in records:
        sums = groups.setdefault(key(record), dict.fromkeys(SUMMED, 0) | {"total_tokens": 0, "cost_usd": Decimal(0)})
        sums["requests"] += 1
        sums["errors"] += bool(record.error_type)
        sums["estimated"] += record.is_estimated
        sums["unpriced"] += record.cost_usd is None
        for column in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens"):
            sums[column] += getattr(record, column)
        sums["cost_usd"] += record.cost_usd or 0
    return groups


def _from_report(rows: list[dict], key: str) -> dict:
    return {row[key]: {c: row[c] for c in (*SUMMED, "total_tokens", "cost_usd")} for row in rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(ROW, max_size=30),
    since=st.integers(0, 45),
    length=st.integers(0, 45),
    zone=st.sampled_from(ZONES),
    reader=st.sampled_from(ZONES),
    query=st.fixed_dictionaries(
        {},
        optional={
            "user": st.sampled_from(["p0", "P1", "nobody"]),
            "model": st.sampled_from(MODELS),
            "status": st.sampled_from(["ok", "error", "stopped"]),
        },
    ),
)
def test_rollup_totals_equal_raw_computation(rows, since, length, zone, reader, query):
    """Every sum a usage page shows (totals, per day, per model, per person) equals a computation by hand on the rows.

    Under any filter, in any site time zone (TIME_ZONE, the roll-ups' days) and any reader's zone
    (the page's days), whichever roll-up the page reads.
    """
    UsageRecord.objects.all().delete()
    for rollup, _period, _keys in ROLLUPS:
        rollup.objects.all().delete()
    people = [User.objects.filter(username=f"p{n}").first() or user_create(f"p{n}") for n in range(3)]
    with override_settings(TIME_ZONE=zone):
        for person, model, minutes, usage, (error, outcome) in rows:
            usage_write(
                user_id=people[person].pk,
                model=model,
                source="web",
                usage=usage,
                estimate=lambda: (5, 7),
                error_type=error,
                outcome=outcome,
                latency_ms=minutes % 997,
                created_at=START + timedelta(minutes=minutes),
            )
        first = date(2026, 10, 1) + timedelta(days=since)
        last = first + timedelta(days=length)
        with timezone.override(ZoneInfo(reader)):
            report = usage_report(RequestFactory().get("/usage/", {"since": first, "until": last, **query}))
            assert report.form.is_valid()
            totals, by_user = report.totals(), report.grouped("user_id")
            by_day, by_model = report.grouped("day"), report.grouped("model")
            listed = sorted(report.records.values_list("id", flat=True))

        def day(record: UsageRecord) -> date:
            return record.created_at.astimezone(ZoneInfo(reader)).date()

        def status(record: UsageRecord) -> str:
            return "error" if record.error_type else ("stopped" if record.outcome == "stopped" else "ok")

        chosen = [
            r
            for r in UsageRecord.objects.select_related("user")
            if first <= day(r) <= last
            and r.user.username.lower() == query.get("user", r.user.username).lower()
            and r.model == query.get("model", r.model)
            and status(r) == query.get("status", status(r))
        ]
        expected = _by_hand(chosen, lambda r: "all").get("all")
        assert {c: totals[c] for c in (*SUMMED, "total_tokens", "cost_usd")} == (
            expected or dict.fromkeys((*SUMMED, "total_tokens"), 0) | {"cost_usd": Decimal(0)}
        )
        assert _from_report(by_day, "day") == _by_hand(chosen, day)
        assert _from_report(by_model, "model") == _by_hand(chosen, lambda r: r.model)
        assert _from_report(by_user, "user_id") == _by_hand(chosen, lambda r: r.user_id)
        # The call list holds the same rows (it is open-ended only without a "To" date).
        assert listed == sorted(r.id for r in chosen)
        if connection.vendor == "postgresql" or zone == "UTC":
            # Rebuilding from the raw rows gives the same tables the writes maintained.
            before = _rollup_rows()
            rollup_rebuild()
            assert _rollup_rows() == before


def _rollup_rows() -> list[list[tuple]]:
    columns = ("status", "requests", "total_tokens", "cost_micro_usd", "latency_ms")
    return [sorted(rollup.objects.values_list(period, *keys, *columns)) for rollup, period, keys in ROLLUPS]


def test_retention_deletes_whole_days_in_batches_and_keeps_the_rollup_equal(settings, alice):
    settings.USAGE_RETENTION_DAYS = 10
    now = datetime.now(UTC)
    for days in (30, 20, 11, 10, 9, 0):
        for _ in range(3):
            usage_write(
                user_id=alice.pk,
                model="m",
                source="web",
                usage={"prompt_tokens": 1},
                created_at=now - timedelta(days=days),
            )
    deleted = prune_usage(batch_size=2)
    assert deleted == 9  # 30, 20 and 11 days old; the day 10 days ago is kept whole
    for rollup, _period, _keys in ROLLUPS:
        assert rollup.objects.totals()["requests"] == UsageRecord.objects.count() == 9
        assert rollup.objects.totals()["prompt_tokens"] == 9
