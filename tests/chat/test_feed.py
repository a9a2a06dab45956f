"""chat.feed: a reply is copied to Redis promptly only while someone on another process follows it."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as redis
from django.conf import settings

from chat import feed
from chat.models import Conversation, Message
from chat.relay import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _reply(message_id: int | None, *, copied_at: float, watched_until: float = 0.0) -> Reply:
    reply = Reply()
    reply.message_id, reply.copied_at, reply.watched_until = message_id, copied_at, watched_until
    return reply


def test_a_reply_nobody_follows_elsewhere_is_copied_every_idle_period():
    reply = _reply(7, copied_at=0.0)

    assert not feed._due(reply, feed.FLUSH_SECONDS)
    assert not feed._due(reply, feed.IDLE_FLUSH_SECONDS * 0.99)
    assert feed._due(reply, feed.IDLE_FLUSH_SECONDS)


def test_a_followed_reply_is_copied_every_flush_until_its_watch_lapses():
    reply = _reply(7, copied_at=0.0, watched_until=feed.WATCH_SECONDS)

    assert feed._due(reply, feed.FLUSH_SECONDS)
    assert not feed._due(reply, feed.FLUSH_SECONDS / 2)
    reply.copied_at = feed.WATCH_SECONDS  # the watch lapses: back to the idle period
    assert not feed._due(reply, feed.WATCH_SECONDS + feed.FLUSH_SECONDS * 2)
    assert feed._due(reply, feed.WATCH_SECONDS + feed.IDLE_FLUSH_SECONDS)


def test_a_reply_not_saved_yet_is_never_copied():
    assert not feed._due(_reply(None, copied_at=float("-inf")), 100.0)


async def _subscribed(client: redis.Redis) -> None:
    while not (await client.pubsub_numsub(feed.WATCH_CHANNEL))[0][1]:
        await asyncio.sleep(0)  # one round trip per look, no timed wait


def test_a_follower_announces_itself_and_the_listener_hears_it(alice):
    """feed.follow publishes the message id on the watch channel; feed.listen hands it to on_watch, not on_stop."""
    conversation = Conversation.objects.create(user=alice, title="Watched")
    message = Message.objects.create(conversation=conversation, role="assistant", state="streaming")
    done = {"state": "complete", "finish": "stop", "error": "", "redirect": ""}

    async def scenario() -> tuple[list[int], list[int], list[bytes]]:
        watched, stopped, heard = [], [], asyncio.Event()

        def on_watch(message_id: int) -> None:
            watched.append(message_id)
            heard.set()

        listener = asyncio.create_task(feed.listen(stopped.append, on_watch))
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            await asyncio.wait_for(_subscribed(client), 10)  # then nothing published is missed
            key = f"chat:reply:{message.pk}"
            await client.xadd(key, {"o": 0, "d": json.dumps([["content", "Hi"]])})
            await client.xadd(key, {"done": json.dumps(done)})
            events = [event async for event in feed.follow(message, 0)]
            await asyncio.wait_for(heard.wait(), 10)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await client.delete(f"chat:reply:{message.pk}")
            await client.aclose()
        return watched, stopped, events

    watched, stopped, events = asyncio.run(scenario())

    assert watched == [message.pk] and stopped == []
    assert b"Hi" in b"".join(events) and b"event: done" in b"".join(events)
