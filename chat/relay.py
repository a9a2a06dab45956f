"""Replies that outlive the request: each one runs as a task of the web process, and any request can follow it.

A running reply keeps its text in this process (`Reply`). With REDIS_URL it is also copied to a Redis stream
`chat:reply:<message id>` (bounded length, expiring; every 0.1 s while someone on another process follows it,
every second otherwise: chat.feed), so a request on another web process can follow it, and Stop reaches the
process that runs it by pub/sub (channel `chat:stop`, plus a key read when leases are renewed). Without Redis
everything stays in the one process of the embedded default.

A reply runs on a loop that outlives requests: the ASGI server's loop (project.asgi marks it with
`serve_replies_here`), or else one background loop of the process (`_reply_loop`). A view running under a sync
server or Django's test client gets a loop of its own from async_to_sync, closed when the view returns; a reply left
on it would be cancelled at once, and the loop's shutdown would wait for the reply's work in executor threads (a
database save, a DNS lookup), which can wait on the request thread blocked in that shutdown. Followers on another
loop read the reply through `_follow_across`. A loop that closes under its replies (a server stopping) saves them
as incomplete, with their text so far.

While replies run, one task per process renews all their conversation leases in one UPDATE every
CHAT_LEASE_SECONDS / 3 and checkpoints their text, so a process that dies leaves leases that lapse, and
`chat.tasks.close_abandoned_replies` marks those replies incomplete with the text saved so far.

Wire format (server-sent events, CONTRACTS.md section 2): `event: start` (ids), text as `id: <offset>` +
`data: "<json string>"`, reasoning the same with `event: reasoning`, `: keep-alive` comments, `event: done`.
The offset counts characters of reasoning and content in arrival order; a follower passes it back to resume.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, suppress
from itertools import accumulate, groupby
from operator import itemgetter

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from chat import feed, services
from chat.models import Message, State
from chat.sse import KEEPALIVE, frame, pending, sse_event, start_payload
from project.threads import in_thread
from tokens import provider
from tokens.provider import Completion, Delta, ProviderError

logger = logging.getLogger(__name__)

COMPACT_EVERY = 32  # deltas kept apart before they are merged into runs

# Replies running in this process.


class Reply:
    """One reply being generated in this process: its text so far and the requests waiting for more.

    The text is kept as runs of (kind, text), merged every COMPACT_EVERY deltas, so a long reply holds a few
    strings rather than an object per chunk; followers and the Redis copy track character offsets.
    """

    def __init__(self) -> None:
        self.start: dict | None = None
        self.runs: list[tuple[str, str]] = []
        self.ends: list[int] = []  # the offset after each run
        self.size = 0
        self.done: dict | None = None
        self.message_id: int | None = None
        self.conversation_id: int | None = None
        self.lease = ""
        self.stopping = False
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the reply runs on; its state lives there
        self.mirrored = feed.enabled()
        self.flushed = 0  # offset already copied to Redis
        self.copied_at = float("-inf")  # time.monotonic() of the last copy to Redis
        self.watched_until = 0.0  # time.monotonic() until which a follower elsewhere wants prompt copies (chat.feed)
        self.checkpointed = 0  # offset already saved as a checkpoint
        self._waiters: list[asyncio.Future] = []
        self._news_at = 0.0  # loop time of the last push or finish
        self._ticker: asyncio.TimerHandle | None = None
        self._told_at = float("-inf")  # loop time followers were last woken for new text
        self._flush: asyncio.TimerHandle | None = None

    def push(self, kind: str, text: str) -> None:
        self.runs.append((kind, text))
        self.size += len(text)
        self.ends.append(self.size)
        if len(self.runs) >= COMPACT_EVERY:
            self.runs = [(k, "".join(text for _k, text in run)) for k, run in groupby(self.runs, key=itemgetter(0))]
            self.ends = list(accumulate(len(text) for _k, text in self.runs))
        if self.mirrored:
            feed.mark(self)
        self._tell()

    def _tell(self) -> None:
        """Wake the followers for new text now, or CHAT_STREAM_FLUSH_SECONDS after they were last woken.

        Each wake is a write to each browser (a system call, and a task's round through the response): a model
        that sends a token every 20 ms made 50 of each a second per reply. Woken at most every 40 ms, a follower
        sends the tokens that came meanwhile in one event, which the page shows at 25 frames a second. The first
        text after a quiet spell goes at once, so the time to the first token is not delayed.
        """
        if self._flush is not None or not self._waiters:
            return  # a wake is due already, or the followers are busy and will find the text when they look
        loop = self._waiters[0].get_loop()
        due = self._told_at + settings.CHAT_STREAM_FLUSH_SECONDS
        if loop.time() >= due:
            self._flushed()
        else:
            self._flush = loop.call_at(due, self._flushed)

    def flush(self) -> None:
        """Wake the followers now if text is waiting for its turn (the upstream has ended: no more is coming)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flushed()

    def _flushed(self) -> None:
        self._flush = None
        if self._waiters:
            self._told_at = self._waiters[0].get_loop().time()
        self._wake()

    def pending(self, offset: int) -> list[tuple[str, str]]:
        """The (kind, text) runs after `offset`."""
        return pending(self.runs, self.ends, offset)

    def finish(self, done: dict) -> None:
        self.done = done
        self.flush()
        self._wake()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def text(self, kind: str) -> str:
        return "".join(text for k, text in self.runs if k == kind)

    def _wake(self, news: bool = True) -> None:
        if news and self._waiters:
            self._news_at = self._waiters[0].get_loop().time()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(news)

    def _tick(self) -> None:
        """Answer waiters with False (a keep-alive is due) after CHAT_KEEPALIVE_SECONDS without news.

        One timer per reply, re-armed when it fires, instead of one per wait: a wait per chunk is the common case.
        """
        loop, quiet = asyncio.get_running_loop(), settings.CHAT_KEEPALIVE_SECONDS
        due = self._news_at + quiet
        if loop.time() >= due:
            self._wake(news=False)
            self._news_at = due = loop.time()
            due += quiet
        self._ticker = None if self.done is not None else loop.call_at(due, self._tick)

    async def _wait(self) -> bool:
        """Wait for news; False when CHAT_KEEPALIVE_SECONDS pass without any."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if not self._waiters:
            self._news_at = loop.time()  # nobody was waiting: the quiet period starts now
        self._waiters.append(waiter)
        if self._ticker is None:
            self._ticker = loop.call_at(self._news_at + settings.CHAT_KEEPALIVE_SECONDS, self._tick)
        return await waiter

    def follow(self, offset: int = 0) -> AsyncIterator[bytes]:
        """This reply's events from `offset` on, live, with keep-alives, until `done`, on the caller's loop."""
        if self.loop is None or self.loop is asyncio.get_running_loop():
            return self._follow(offset)
        return _follow_across(self, offset)

    async def _follow(self, offset: int) -> AsyncIterator[bytes]:
        while self.start is None and self.done is None:
            if not await self._wait():
                yield KEEPALIVE
        if self.start is not None:
            yield sse_event("start", self.start)
        while True:
            if offset < self.size:
                events, offset = frame(self.pending(offset), offset), self.size
                yield events
            elif self.done is not None:
                yield sse_event("done", self.done)
                return
            elif not await self._wait():
                yield KEEPALIVE

    def stop(self) -> None:
        if self.loop is not None and self.loop is not _loop_or_none():
            self.loop.call_soon_threadsafe(self.stop)
            return
        if self.task is not None and not self.task.done() and not self.stopping:
            self.stopping = True
            self.task.cancel()


_running: dict[int, Reply] = {}  # by assistant message id
_tasks: set[asyncio.Task] = set()  # strong references, so a running reply is never collected
_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[asyncio.Task]] = weakref.WeakKeyDictionary()


_server_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_background: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
_background_lock = threading.Lock()


def running(message_id: int) -> Reply | None:
    return _running.get(message_id)


def serve_replies_here() -> None:
    """Mark the running loop as one that lives as long as the process (an ASGI server's), to run replies on."""
    _server_loops.add(asyncio.get_running_loop())


def _loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _reply_loop() -> asyncio.AbstractEventLoop:
    """The loop to run a reply on: this one if an ASGI server runs it, else the process's background loop."""
    global _background
    loop = asyncio.get_running_loop()
    if loop in _server_loops:
        return loop
    with _background_lock:
        if _background is None or not _background[1].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="chat-replies", daemon=True)
            thread.start()
            _background = (loop, thread)
        return _background[0]


def replies_run_here() -> bool:
    """True when a reply started now runs on the running loop (an ASGI server's), not on the background loop."""
    return asyncio.get_running_loop() in _server_loops


def reply_start(plan: services.ReplyPlan, recording: asyncio.Future | None = None) -> Reply:
    """Start generating the reply planned in `plan` as a task of this process, and return it to follow.

    `recording`: the caller's future of `services.reply_record(plan)` when it saves the turn itself (on this loop,
    see `replies_run_here`); by default the reply saves it in a worker thread while the upstream call starts.
    """
    reply = Reply()
    reply.lease = plan.lease
    reply.loop = _reply_loop()
    language = translation.get_language()
    if reply.loop is asyncio.get_running_loop():
        _spawn(reply, plan, language, recording)
    else:
        assert recording is None, "a recording future belongs to the caller's loop"
        reply.loop.call_soon_threadsafe(_spawn, reply, plan, language, context=contextvars.Context())
    return reply


def _spawn(reply: Reply, plan: services.ReplyPlan, language: str, recording: asyncio.Future | None = None) -> None:
    # A fresh context: the request's asgiref executors end with the request, and the reply must not call into them.
    assert reply.loop is not None  # set by reply_start, which runs us on it
    task = reply.loop.create_task(_generate(reply, plan, language, recording), context=contextvars.Context())
    reply.task = task
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    _ensure_keepers()


async def _follow_across(reply: Reply, offset: int) -> AsyncIterator[bytes]:
    """Follow a reply that runs on another loop of this process: its events are read there and handed over."""
    here = asyncio.get_running_loop()
    handed: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for events in reply._follow(offset):
                here.call_soon_threadsafe(handed.put_nowait, events)
        finally:
            with suppress(RuntimeError):  # the follower's loop is already closed
                here.call_soon_threadsafe(handed.put_nowait, None)

    assert reply.loop is not None  # a reply being followed has been started
    reading = asyncio.run_coroutine_threadsafe(read(), reply.loop)
    try:
        while (events := await handed.get()) is not None:
            yield events
    finally:
        reading.cancel()


@atexit.register
def _stop_background_replies() -> None:
    """At exit, close the background loop's replies as the server's loop closes its own: saved, incomplete."""
    if _background is None or not _background[1].is_alive():
        return

    async def cancel_all() -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=10) if tasks else None

    try:
        asyncio.run_coroutine_threadsafe(cancel_all(), _background[0]).result(15)
    except Exception:
        logger.warning("replies still saving at exit", exc_info=True)


async def _generate(
    reply: Reply, plan: services.ReplyPlan, language: str, recording: asyncio.Future | None = None
) -> None:
    """Stream upstream into `reply`, then save it once: the upstream call starts before the user's turn is saved,
    and nothing reaches a follower until it is (`recording`, or a save started here)."""
    translation.activate(language)  # messages in the reader's language, as the request had it
    completion = Completion(model=plan.model)
    stream = provider.stream_chat(
        plan.bearer, model=plan.model, messages=plan.history, completion=completion, trim_on_overflow=True
    )
    first = asyncio.ensure_future(anext(stream, None))
    if recording is None:
        recording = asyncio.ensure_future(in_thread(services.reply_record)(plan))
    try:
        try:
            prepared = await asyncio.shield(recording)
        except asyncio.CancelledError:
            first.cancel()  # the loop is closing: let the turn be saved, then close the reply as incomplete
            prepared = await recording
    except Exception:
        logger.exception("could not save a chat turn")
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await stream.aclose()
        await in_thread(services.lease_release)(plan.conversation and plan.conversation.pk, plan.lease)
        message = _("We could not save your message, so nothing was sent. It is still in the box; try again.")
        reply.finish({"state": State.ERROR, "finish": None, "error": message, "redirect": ""})
        return
    reply.message_id, reply.conversation_id = prepared.assistant_message.pk, prepared.conversation.pk
    try:
        for kind, text in prepared.prefix:  # an answer being continued: the new text is appended to it
            reply.push(kind, text)
        reply.start = start_payload(prepared.assistant_message, user_message_id=prepared.user_message.pk)
        _running[reply.message_id] = reply
        reply._wake()
        await _relay(reply, prepared, stream, first, completion)
    except Exception:
        logger.exception("reply %s failed after its turn was saved", reply.message_id)
    finally:
        _running.pop(reply.message_id, None)
        if reply.done is None:  # never leave a follower waiting; the lease lapses and the reaper closes the row
            message = _("Something went wrong on our side. Your message is saved; retry.")
            reply.finish({"state": State.ERROR, "finish": None, "error": message, "redirect": ""})


async def _relay(
    reply: Reply,
    prepared: services.PreparedReply,
    stream: AsyncGenerator[Delta, None],
    first: asyncio.Future,
    completion: Completion,
) -> None:
    state, error = State.STREAMING, None
    try:
        async with aclosing(stream):
            delta = await first
            if delta is not None:
                reply.push(delta.kind, delta.text)
                # A read that finds data already buffered does not yield to the loop: without this, a reply
                # that arrives in one burst was relayed whole before its first word reached the browser.
                await asyncio.sleep(0)
                # The rest straight from the connection's callback: no wake of this task per token.
                completion.sink = lambda delta: reply.push(*delta)
                delta = await anext(stream, None)
            while delta is not None:
                reply.push(delta.kind, delta.text)
                delta = await anext(stream, None)
        state = State.COMPLETE
    except asyncio.CancelledError:
        # Stop cancels the task; so does the event loop closing down, which leaves the reply incomplete.
        state = State.STOPPED if reply.stopping else State.INCOMPLETE
        if not reply.stopping:
            error = ProviderError("internal", _("The server restarted while this reply was being written."))
    except ProviderError as exc:
        error = exc
        state = State.INCOMPLETE if reply.size else State.ERROR
    except Exception:
        logger.exception("reply %s failed", reply.message_id)
        error = ProviderError("internal", _("Something went wrong on our side. Your message is saved; retry."))
        state = State.INCOMPLETE if reply.size else State.ERROR
    reply.flush()  # the last words go out while the reply is saved
    saved = asyncio.ensure_future(
        _save(
            prepared,
            content=reply.text("content"),
            reasoning=reply.text("reasoning"),
            state=state,
            completion=completion,
            error=error,
        )
    )
    usage = await asyncio.shield(saved)
    done = {
        "state": state,
        "finish": prepared.assistant_message.finish_reason or None,
        "error": error.message if error else "",
        "notes": completion.notes,
        "trimmed": prepared.assistant_message.trimmed_turns,
        "redirect": reverse("tokens:credential-list") if error and error.kind == "auth" else "",
        "usage": usage,  # this version's tokens and cost, shown beside its model
    }
    reply.finish(done)
    if feed.enabled():
        await feed.publish_done(reply)


async def _save(prepared: services.PreparedReply, **fields) -> dict | None:
    """Save the reply once; while the database has no connection to give (a pool momentarily exhausted, a restart),
    try again with backoff for up to CHAT_LEASE_SECONDS, while the lease, still renewed, keeps the conversation ours."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + settings.CHAT_LEASE_SECONDS, 0.1
    while True:
        try:
            return await in_thread(services.reply_finish)(prepared, **fields)
        except (OperationalError, InterfaceError):
            if loop.time() + pause > deadline:
                logger.exception(
                    "could not save reply %s: the database gave no connection", prepared.assistant_message.pk
                )
                return None
            logger.warning("database busy; saving reply %s again in %.1f s", prepared.assistant_message.pk, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


# Background work of the process while replies run: Redis copies, lease renewal, stop requests.


def _ensure_keepers() -> None:
    loop = asyncio.get_running_loop()
    tasks = _keepers.get(loop)
    if tasks and not any(task.done() for task in tasks):
        return
    jobs = [_renew_leases()]
    if feed.enabled():
        jobs += [feed.flush_forever(), feed.listen(reply_stop_local, reply_watch_local)]
    tasks = [loop.create_task(job, context=contextvars.Context()) for job in jobs]
    _keepers[loop] = tasks


async def _renew_leases() -> None:
    """Every CHAT_LEASE_SECONDS / 3: renew the leases of this process's replies and checkpoint their text."""
    interval = settings.CHAT_LEASE_SECONDS / 3
    while True:
        await asyncio.sleep(interval)
        loop = asyncio.get_running_loop()
        running = {pk: reply for pk, reply in list(_running.items()) if reply.done is None and reply.loop is loop}
        replies = list(running.values())
        if not replies:
            continue
        checkpoints = {
            pk: (reply.text("content"), reply.text("reasoning"))
            for pk, reply in running.items()
            if reply.size > reply.checkpointed
        }
        try:
            await in_thread(services.leases_renew)({r.conversation_id: r.lease for r in replies}, checkpoints)
            for reply in replies:
                reply.checkpointed = reply.size
            if feed.enabled():
                for message_id in await feed.stops_requested(list(running)):
                    reply_stop_local(message_id)
        except Exception:
            logger.warning("could not renew reply leases", exc_info=True)


async def _stop_and_wait(reply: Reply) -> None:
    reply.stop()
    assert reply.task is not None  # only replies in _running are stopped here, and _spawn gave each its task
    await asyncio.wait({reply.task}, timeout=10)  # saved as stopped, so a reload shows it at once


def reply_stop_local(message_id: int) -> bool:
    reply = _running.get(message_id)
    if reply is None:
        return False
    reply.stop()
    return True


def reply_watch_local(message_id: int) -> None:
    """A follower on another process announced itself (chat.feed.follow): copy this reply to Redis promptly."""
    reply = _running.get(message_id)
    if reply is None or reply.loop is None:
        return
    if reply.loop is _loop_or_none():
        feed.watched(reply)
    else:
        reply.loop.call_soon_threadsafe(feed.watched, reply)


# Following a reply that is not running in this process.


async def follow_saved(message: Message, offset: int) -> AsyncIterator[bytes]:
    """A finished reply, from the database: what `offset` has not seen, then `done`."""
    yield sse_event("start", start_payload(message))
    runs = [(kind, text) for kind, text in (("reasoning", message.reasoning), ("content", message.content)) if text]
    events = frame(pending(runs, list(accumulate(len(text) for _kind, text in runs)), offset), offset)
    if events:
        yield events
    yield sse_event("done", await in_thread(services.done_payload)(message))


async def follow_elsewhere(message: Message, offset: int) -> AsyncIterator[bytes]:
    """A reply running on another process (through Redis), or on none: wait, with keep-alives, until it ends."""
    if feed.enabled():
        async for event in feed.follow(message, offset):
            yield event
        return
    # Without Redis there is one process: a streaming reply that is not ours belongs to a process that died.
    while True:
        message = await in_thread(services.reply_reap_if_abandoned)(message.pk)
        if message.state != State.STREAMING:
            async for event in follow_saved(message, offset):
                yield event
            return
        yield KEEPALIVE
        await asyncio.sleep(settings.CHAT_KEEPALIVE_SECONDS)


async def reply_stop(message: Message) -> str:
    """Stop `message`'s reply wherever it runs; return its state as far as this process can tell."""
    reply = _running.get(message.pk)
    if reply is not None:
        assert reply.loop is not None  # in _running: started on its loop
        stopping = asyncio.run_coroutine_threadsafe(_stop_and_wait(reply), reply.loop)
        await asyncio.wrap_future(stopping)
        return reply.done["state"] if reply.done else State.STOPPED
    if message.state != State.STREAMING:
        return message.state
    if feed.enabled():
        await feed.request_stop(message.pk)
        done = await feed.wait_done(message.pk, timeout=10)  # saved as stopped by its process, as above
        if done is not None:
            return done["state"]
    message = await in_thread(services.reply_reap_if_abandoned)(message.pk)
    return message.state
