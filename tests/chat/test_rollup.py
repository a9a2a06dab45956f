"""The roll-up equals a direct computation on the raw rows, for any rows and any date range (property-based)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from chat.dashboard import usage_report
from chat.models import UsageDaily, UsageRecord
from chat.tasks import prune_usage
from chat.usage import rollup_rebuild, usage_write
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
ROW = st.tuples(
    st.integers(0, 2),  # person
    st.sampled_from(["gpt-4o-mini", "gpt-4o", "house-model-without-price"]),
    st.integers(0, 60 * 24 * 45),  # minutes after START
    USAGE,
    st.sampled_from(["", "rate_limit", "cut"]),
)


def _raw(records) -> dict:
    totals = records.order_by().totals()
    totals.pop("avg_latency_ms")
    return totals


def _rolled(daily) -> dict:
    totals = daily.totals()
    totals.pop("avg_latency_ms")
    return totals


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=30), since=st.integers(0, 45), length=st.integers(0, 45))
def test_rollup_totals_equal_raw_computation(rows, since, length):
    UsageRecord.objects.all().delete()
    UsageDaily.objects.all().delete()
    people = [User.objects.filter(username=f"p{n}").first() or user_create(f"p{n}") for n in range(3)]
    for person, model, minutes, usage, error in rows:
        usage_write(
            user_id=people[person].pk,
            model=model,
            source="web",
            usage=usage,
            estimate=lambda: (5, 7),
            error_type=error,
            latency_ms=minutes % 997,
            created_at=START + timedelta(minutes=minutes),
        )
    first = date(2026, 10, 1) + timedelta(days=since)
    last = first + timedelta(days=length)
    report = usage_report(RequestFactory().get("/usage/", {"since": first, "until": last}))
    assert _rolled(report.daily) == _raw(report.records)
    assert report.totals()["requests"] == report.records.count()
    for person in people:
        assert _rolled(report.daily.filter(user=person)) == _raw(report.records.filter(user=person))
    by_day = {row["day"]: row["total_tokens"] for row in report.daily.grouped("day")}
    raw_by_day = {}
    for record in report.records:
        day = record.created_at.astimezone(UTC).date()
        raw_by_day[day] = raw_by_day.get(day, 0) + record.total_tokens
    assert by_day == raw_by_day
    # Rebuilding from the raw rows gives the same table the writes maintained.
    before = sorted(UsageDaily.objects.values_list("day", "user_id", "model", "requests", "cost_micro_usd"))
    rollup_rebuild()
    assert sorted(UsageDaily.objects.values_list("day", "user_id", "model", "requests", "cost_micro_usd")) == before


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
    assert UsageDaily.objects.totals()["requests"] == UsageRecord.objects.count()
    assert UsageDaily.objects.totals()["prompt_tokens"] == UsageRecord.objects.count()
