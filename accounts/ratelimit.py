"""Sliding-window rate limits kept in the cache (Redis in production): at most `limit` hits in any `window` seconds.

A fixed window let twice the limit through across a window's edge (two hits at 11:59:59 and two at 12:00:00 with a
limit of two), and the sliding-window counter that estimates instead can make a person wait up to twice the window
(one hit a minute, sent at 12:00:10, would be refused until 12:02:00). So each key keeps the times of its allowed hits
(a sorted set on Redis: at most `limit` entries, gone after `window` seconds) and a refused hit is not kept. The
`limits` package has this algorithm but no storage on Django's cache, which the site uses without Redis.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int


def parse_rate(rate: str) -> tuple[int, int]:
    """Turn "10/5m" into (10 hits, 300 seconds)."""
    hits, _, period = rate.partition("/")
    return int(hits), int(period[:-1] or 1) * _UNITS[period[-1]]


def hit(key: str, *, limit: int, window: int) -> Verdict:
    """Count one hit against key; refuse it when `limit` hits were allowed in the last `window` seconds.

    `retry_after`: whole seconds until the oldest of those hits leaves the window (at least 1 when refused, 0 when
    allowed). Refused hits are not counted. A cache outage allows the hit. One Redis round trip when allowed, two
    when refused.
    """
    now = time.time()
    cache_key = f"rl:{key}"
    try:
        oldest = _record(cache_key, now, limit=limit, window=window)
    except Exception:
        # A cache outage must not lock everyone out; limits resume when it is back.
        logger.warning("rate limit cache unavailable; allowing %s", key.split(":")[0], exc_info=True)
        return Verdict(allowed=True, retry_after=0)
    if oldest is None:
        return Verdict(allowed=True, retry_after=0)
    return Verdict(allowed=False, retry_after=max(1, math.ceil(oldest + window - now)))


def _record(cache_key: str, now: float, *, limit: int, window: int) -> float | None:
    """Keep a hit at `now` if fewer than `limit` were kept in the last `window` seconds and return None; else keep
    nothing and return the time of the kept hit whose leaving the window frees a place (`now` with a limit of 0).

    On Redis a MULTI of ZREMRANGEBYSCORE, ZADD, ZCARD and EXPIRE, so concurrent hits are counted one after another
    and the cost does not grow with the count; a refused hit then takes a ZREM and a ZRANGE of one entry.
    Django's cache API elsewhere (a list of times under the key)."""
    redis = _redis()
    if redis is not None:
        redis_key = cache.make_and_validate_key(cache_key)
        member = f"{now:.6f}:{os.urandom(4).hex()}"
        pipe = redis.pipeline(transaction=True)
        pipe.zremrangebyscore(redis_key, "-inf", now - window)
        pipe.zadd(redis_key, {member: now})
        pipe.zcard(redis_key)
        pipe.expire(redis_key, window + 1)
        count = pipe.execute()[2]
        if count <= limit:
            return None
        pipe = redis.pipeline(transaction=True)
        pipe.zrem(redis_key, member)
        first = max(count - 1 - limit, 0)  # among the count - 1 others, this one must leave for a place to free
        pipe.zrange(redis_key, first, first, withscores=True)
        return next((score for _name, score in pipe.execute()[1]), now)
    earlier = [at for at in cache.get(cache_key, ()) if at > now - window]
    if len(earlier) >= limit:
        return earlier[len(earlier) - limit] if limit > 0 else now
    cache.set(cache_key, [*earlier, now], timeout=window + 1)
    return None


_clients: dict[str, Any] = {}


def _redis() -> Any:
    """django-redis's client for the default cache, or None on another cache backend.

    Kept per process: Django makes the cache object anew in each request's context, and django-redis a client with
    it (a redis.Redis, 2.6 % of an API call's CPU); the connection pool behind them is shared anyway.
    """
    get_client = getattr(getattr(cache, "client", None), "get_client", None)
    if get_client is None:
        return None
    location = str(settings.CACHES["default"].get("LOCATION"))
    if location not in _clients:
        _clients[location] = get_client(write=True)
    return _clients[location]


def client_ip(request: HttpRequest) -> str:
    """The client's address as uvicorn reports it: X-Forwarded-For is applied only for FORWARDED_ALLOW_IPS."""
    return request.META.get("REMOTE_ADDR") or "unknown"
