"""Copies of running replies in Redis, so a request on any web process can follow or stop them.

Used only with REDIS_URL. Each reply has a stream `chat:reply:<message id>` whose entries are batches of deltas
(`o`: offset before the batch, `d`: JSON list of [kind, text]) and a last entry `done` (the done payload); its
length is capped (XADD MAXLEN ~) and it expires FEED_TTL seconds after its last write. Deltas are copied for all
replies of the process in one pipeline, so Redis costs a round trip per batch, not per chunk: every FLUSH_SECONDS
for a reply someone follows from another process (the follower announces itself on channel `chat:watch` and again
every WATCH_SECONDS / 3), every IDLE_FLUSH_SECONDS otherwise (what a reaper recovers if the process dies; most
replies are followed only where they run, and copying them ten times a second was 8 % of a web process's CPU at 100
streams, py-spy). Stop is a key `chat:stop:<message id>` plus a message on channel `chat:stop`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, cast

import redis as sync_redis
import redis.asyncio as redis
from django.conf import settings

from chat.models import Message, State
from chat.services import done_payload, reply_reap_if_abandoned
from chat.sse import KEEPALIVE, sse_delta, sse_event, start_payload
from project.threads import in_thread

if TYPE_CHECKING:
    from chat.relay import Reply

logger = logging.getLogger(__name__)

FEED_MAXLEN = 20000  # entries kept per reply; each entry is a batch of deltas
FEED_TTL = 3600  # seconds a reply's stream stays readable after its last write
FLUSH_SECONDS = 0.1  # how long deltas may wait before they are copied to Redis (followers elsewhere lag this much)
IDLE_FLUSH_SECONDS = 1.0  # the same for a reply nobody follows from another process
WATCH_SECONDS = 30.0  # how long a follower's announcement keeps its reply copied every FLUSH_SECONDS
STOP_CHANNEL = "chat:stop"
WATCH_CHANNEL = "chat:watch"
STOP_TTL = 600

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.Redis] = weakref.WeakKeyDictionary()
_pending: set[Reply] = set()
_flush_lock: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_news: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def _key(message_id: int) -> str:
    return f"chat:reply:{message_id}"


# A stream's entries as our clients get them (RESP2, bytes not decoded): [(entry id, {field: value})]. redis-py
# annotates its replies for every protocol and decoding at once, so each read names the shape it gets here.
Entries = list[tuple[bytes, dict[bytes, bytes]]]


def _read(answer: object) -> Entries:
    """The entries of the one stream an XREAD asked for ([[key, entries]]), or [] when it timed out (None)."""
    streams = cast(list[tuple[bytes, Entries]], answer)
    return streams[0][1] if streams else []


def client() -> redis.Redis:
    """This event loop's Redis client (a pool; blocking reads need longer than keep-alives)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=settings.CHAT_KEEPALIVE_SECONDS + 10
        )
    return _clients[loop]


def _lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    if loop not in _flush_lock:
        _flush_lock[loop] = asyncio.Lock()
    return _flush_lock[loop]


def _news_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    if loop not in _news:
        _news[loop] = asyncio.Event()
    return _news[loop]


def mark(reply: Reply) -> None:
    """Note that `reply` has deltas Redis has not seen yet (called per chunk: the usual case is a set lookup)."""
    if reply not in _pending:
        _pending.add(reply)
        _news_event().set()


def watched(reply: Reply) -> None:
    """Someone follows `reply` from another process: copy it every FLUSH_SECONDS for WATCH_SECONDS, starting now.
    Call on the reply's loop."""
    reply.watched_until = time.monotonic() + WATCH_SECONDS
    reply.copied_at = float("-inf")
    mark(reply)


def _due(reply: Reply, now: float) -> bool:
    """Whether `reply`'s pending deltas go to Redis in the flush at `now` (time.monotonic())."""
    wait = FLUSH_SECONDS if reply.watched_until > now else IDLE_FLUSH_SECONDS
    return reply.message_id is not None and now - reply.copied_at >= wait


def _add_batch(pipe: redis.client.Pipeline, reply: Reply) -> None:
    offset, message_id = reply.flushed, reply.message_id
    if offset >= reply.size or message_id is None:  # nothing new, or not saved yet (no stream)
        return
    key = _key(message_id)
    pipe.xadd(key, {"o": offset, "d": json.dumps(reply.pending(offset))}, maxlen=FEED_MAXLEN, approximate=True)
    if offset == 0:
        pipe.expire(key, FEED_TTL)
    reply.flushed = reply.size


async def flush_forever() -> None:
    """Copy the pending deltas of this process's replies that are due (`_due`) to Redis, one pipeline per
    FLUSH_SECONDS at most."""
    news = _news_event()
    while True:
        await news.wait()
        await asyncio.sleep(FLUSH_SECONDS)
        news.clear()
        try:
            async with _lock():
                now = time.monotonic()
                replies = [reply for reply in _pending if _due(reply, now)]
                _pending.difference_update(replies)
                pipe = client().pipeline(transaction=False)
                for reply in replies:
                    _add_batch(pipe, reply)
                    reply.copied_at = now
                if len(pipe):
                    await pipe.execute()
        except Exception:
            logger.warning("could not copy replies to Redis", exc_info=True)
        if _pending:  # some are due later
            news.set()


async def publish_done(reply: Reply) -> None:
    """Copy what is left of `reply` and its done payload, at once, so followers elsewhere end promptly."""
    if reply.message_id is None:  # never saved, so no stream and no follower elsewhere
        return
    try:
        async with _lock():
            _pending.discard(reply)
            pipe = client().pipeline(transaction=False)
            _add_batch(pipe, reply)
            key = _key(reply.message_id)
            pipe.xadd(key, {"done": json.dumps(reply.done)}, maxlen=FEED_MAXLEN, approximate=True)
            pipe.expire(key, FEED_TTL)
            await pipe.execute()
    except Exception:
        logger.warning("could not copy the end of reply %s to Redis", reply.message_id, exc_info=True)


async def request_stop(message_id: int) -> None:
    """Ask whichever process runs this reply to stop it."""
    pipe = client().pipeline(transaction=False)
    pipe.set(f"chat:stop:{message_id}", 1, ex=STOP_TTL)
    pipe.publish(STOP_CHANNEL, str(message_id))
    await pipe.execute()


async def wait_done(message_id: int, timeout: float) -> dict | None:
    """The done payload of a reply running elsewhere, once its process publishes it; None after `timeout` s."""
    redis_client, key = client(), _key(message_id)
    latest = cast(Entries, await redis_client.xrevrange(key, count=1))
    if latest and b"done" in latest[0][1]:
        return json.loads(latest[0][1][b"done"])
    last: bytes | str = latest[0][0] if latest else "0-0"
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        answer = await redis_client.xread({key: last}, count=100, block=max(1, int(left * 1000)))
        for entry_id, fields in _read(answer):
            last = entry_id
            if b"done" in fields:
                return json.loads(fields[b"done"])
    return None


async def stops_requested(message_ids: list[int]) -> list[int]:
    """The replies among `message_ids` someone asked to stop (a pub/sub message can be missed)."""
    values = await client().mget([f"chat:stop:{pk}" for pk in message_ids])
    return [pk for pk, value in zip(message_ids, values, strict=True) if value]


async def listen(on_stop: Callable[[int], object], on_watch: Callable[[int], object]) -> None:
    """Call `on_stop(message id)` for every stop request and `on_watch(message id)` for every follower's
    announcement published by any process; reconnect on failure."""
    handlers = {STOP_CHANNEL.encode(): on_stop, WATCH_CHANNEL.encode(): on_watch}
    while True:
        try:
            async with client().pubsub() as pubsub:
                await pubsub.subscribe(*handlers)
                async for item in pubsub.listen():
                    if item["type"] == "message":
                        handlers[item["channel"]](int(item["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("stop listener lost Redis; reconnecting", exc_info=True)
            await asyncio.sleep(1)


def saved_text(message_id: int) -> tuple[str, str]:
    """The (content, reasoning) Redis holds for a reply, read synchronously (for the reaper); empty if none."""
    parts: dict[str, list[str]] = {"content": [], "reasoning": []}
    client = sync_redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    with client:
        for _entry_id, fields in cast(Entries, client.xrange(_key(message_id))):
            for kind, text in json.loads(fields.get(b"d", b"[]")):
                parts.setdefault(kind, []).append(text)
    return "".join(parts["content"]), "".join(parts["reasoning"])


async def follow(message: Message, offset: int) -> AsyncIterator[bytes]:
    """Follow a reply that runs on another process through its Redis stream, from `offset`, until `done`."""
    yield sse_event("start", start_payload(message))
    key, size = _key(message.pk), 0
    last: bytes | str = "0-0"
    redis_client, loop = client(), asyncio.get_running_loop()
    announced = float("-inf")
    while True:
        if loop.time() - announced >= WATCH_SECONDS / 3:  # the process running it copies it promptly meanwhile
            await redis_client.publish(WATCH_CHANNEL, str(message.pk))
            announced = loop.time()
        answer = await redis_client.xread({key: last}, count=500, block=int(settings.CHAT_KEEPALIVE_SECONDS * 1000))
        entries = _read(answer)
        if not entries:
            message = await in_thread(reply_reap_if_abandoned)(message.pk)
            if message.state != State.STREAMING:  # ended, and its stream expired or never reached Redis
                yield sse_event("done", await in_thread(done_payload)(message))
                return
            yield KEEPALIVE
            continue
        out = []
        for entry_id, fields in entries:
            last = entry_id
            if b"done" in fields:
                out.append(sse_event("done", json.loads(fields[b"done"])))
                yield b"".join(out)
                return
            size = int(fields[b"o"])
            for kind, text in json.loads(fields[b"d"]):
                size += len(text)
                if size > offset:
                    out.append(sse_delta(kind, text[max(0, len(text) - (size - offset)) :], size))
                    offset = size
        if out:
            yield b"".join(out)
