"""The sliding window behind every throttle: at most `limit` hits in any `window` seconds. A fixed window let the
chat's third message through when the minute turned between the second and the third (a CI failure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts import ratelimit

pytestmark = pytest.mark.django_db(transaction=True)

MINUTE_START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def hits_at(offsets: list[float], *, limit: int = 2, window: int = 60, key: str = "test:1") -> list[ratelimit.Verdict]:
    verdicts = []
    with time_machine.travel(MINUTE_START, tick=False) as clock:
        for offset in offsets:
            clock.move_to(MINUTE_START + timedelta(seconds=offset))
            verdicts.append(ratelimit.hit(key, limit=limit, window=window))
    return verdicts


def test_it_refuses_a_burst_across_the_edge_of_a_minute():
    verdicts = hits_at([-0.5, -0.2, 0.1, 0.3])
    assert [v.allowed for v in verdicts] == [True, True, False, False]
    assert verdicts[2].retry_after == 60  # 59.5 s after 0.1 s the first hit leaves the window: 59.4, rounded up


def test_refused_hits_use_none_of_the_allowance():
    verdicts = hits_at([1, 2] + [3] * 10 + [61.5, 61.6, 62.5])
    assert [v.allowed for v in verdicts] == [True, True] + [False] * 10 + [True, False, True]
    assert verdicts[2].retry_after == 58
    assert verdicts[13].retry_after == 1  # the hit at 2 s leaves at 62 s


def test_a_hit_leaves_the_window_exactly_one_window_later():
    verdicts = hits_at([10, 69.9, 70.1], limit=1)
    assert [v.allowed for v in verdicts] == [True, False, True]
    assert verdicts[1].retry_after == 1


@pytest.mark.parametrize("limit", [0, 1, 5])
def test_exactly_limit_hits_fit_in_a_quiet_window(limit):
    verdicts = hits_at([10 + n for n in range(limit + 1)], limit=limit)
    assert [v.allowed for v in verdicts] == [True] * limit + [False]
    assert verdicts[-1].retry_after == (60 if limit == 0 else 60 - limit)


def test_keys_are_counted_apart():
    assert [v.allowed for v in hits_at([1, 2, 3], key="test:a")] == [True, True, False]
    assert hits_at([4], key="test:b")[0].allowed


@pytest.mark.redis
def test_a_key_holds_at_most_limit_hits_on_redis():
    from django.core.cache import cache

    hits_at([1, 2, 3] + [4] * 50, limit=3)
    redis = cache.client.get_client(write=True)
    assert redis.zcard(cache.make_and_validate_key("rl:test:1")) == 3
