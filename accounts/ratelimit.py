"""Fixed-window rate limits kept in the cache (Redis in production)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

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
    """Count one hit against key; refuse once limit hits fall in the current window."""
    now = int(time.time())
    window_start = now - now % window
    cache_key = f"rl:{key}:{window_start}"
    try:
        count = _count(cache_key, window + 1)
        if count is None:  # the cache swallowed an outage
            raise ConnectionError("cache unavailable")
    except Exception:
        # A cache outage must not lock everyone out; limits resume when it is back.
        logger.warning("rate limit cache unavailable; allowing %s", key.split(":")[0], exc_info=True)
        return Verdict(allowed=True, retry_after=0)
    return Verdict(allowed=count <= limit, retry_after=window_start + window - now)


def _count(cache_key: str, timeout: int) -> int | None:
    """Add one hit to the window's counter and return the count; one round trip on Redis (a pipeline of SET NX EX
    and INCR, where django-redis's add and incr take two), Django's add and incr on other caches."""
    client = getattr(getattr(cache, "client", None), "get_client", None)  # django-redis
    if client is not None:
        redis_key = cache.make_and_validate_key(cache_key)
        pipe = client(write=True).pipeline(transaction=False)
        pipe.set(redis_key, 0, ex=timeout, nx=True)
        pipe.incr(redis_key)
        return pipe.execute()[1]
    cache.add(cache_key, 0, timeout=timeout)
    try:
        return cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=timeout)
        return 1


def client_ip(request: HttpRequest) -> str:
    """The client's address as uvicorn reports it: X-Forwarded-For is applied only for FORWARDED_ALLOW_IPS."""
    return request.META.get("REMOTE_ADDR") or "unknown"
