"""Count what one request costs the web process, in every thread: SQL statements, Redis round trips, thread hops.

Wall-clock latency depends on the machine's load; these counts do not, so the tests that use this catch a
regression on a shared or slow machine too. The recorder wraps psycopg's cursor on PostgreSQL (every statement of every
connection, whichever thread runs it, Django's and the raw prepared ones alike; kind "trip" counts the round trips,
a pipeline of statements being one) or Django's cursor on other databases, redis-py's connection (one packed send =
one round trip; a pipeline is one) and asgiref's SyncToAsync (one call = one hop to a worker thread and back).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from asgiref.sync import SyncToAsync
from django.db.backends.utils import CursorWrapper

TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}


@dataclass
class Event:
    at: float  # seconds since the recorder started
    kind: str  # "sql", "tx" (BEGIN, SAVEPOINT...), "redis", "hop" or a mark's name
    detail: str
    thread: str


@dataclass
class Recorder:
    started: float = field(default_factory=time.perf_counter)
    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, detail: str) -> None:
        with self._lock:
            self.events.append(Event(time.perf_counter() - self.started, kind, detail, threading.current_thread().name))

    def mark(self, name: str) -> int:
        """Record a point in time (e.g. "upstream"); returns the number of events before it."""
        with self._lock:
            count = len(self.events)
        self.add(name, "")
        return count

    def index(self, event: str) -> int:
        """Where the first `event` is: a mark's name, or "<kind>:<text>", the first of that kind whose detail has
        text (e.g. "hop:reply_plan", 'sql:SET "reply_lease"')."""
        kind, _sep, text = event.partition(":")
        return next(i for i, e in enumerate(self.events) if e.kind == kind and text in e.detail)

    def _upto(self, before: str | None) -> list[Event]:
        return self.events if before is None else self.events[: self.index(before)]

    def count(self, kind: str, *, before: str | None = None) -> int:
        return sum(1 for e in self._upto(before) if e.kind == kind)

    def statements(self, *, before: str | None = None) -> list[str]:
        return [e.detail for e in self._upto(before) if e.kind == "sql"]

    def timeline(self) -> str:
        return "\n".join(f"{e.at * 1000:8.2f} ms  {e.thread:<24.24} {e.kind:<8} {e.detail[:110]}" for e in self.events)


@contextmanager
def request_cost() -> Iterator[Recorder]:
    """Record statements, Redis round trips and thread hops of the whole process while the block runs."""
    import redis.connection

    recorder = Recorder()
    execute, send, call = (
        CursorWrapper._execute_with_wrappers,
        redis.connection.AbstractConnection.send_packed_command,
        SyncToAsync.__call__,
    )
    psycopg_execute, pipeline = psycopg.Cursor.execute, psycopg.Connection.pipeline

    def recorded_execute(self, sql, params, many, executor):
        # Transaction control is a statement of its own on SQLite (BEGIN IMMEDIATE), part of the next one on PostgreSQL.
        if self.db.vendor != "postgresql":
            recorder.add("tx" if sql.split(" ", 1)[0] in TRANSACTION_CONTROL else "sql", sql)
            recorder.add("trip", "")
        return execute(self, sql, params, many, executor)

    def recorded_psycopg_execute(self, query, params=None, **kwargs):
        # psycopg_pool's (and Django's) connection health check, sent only when the server spoke (project.dbpool).
        check = query == "SELECT 1"
        recorder.add("check" if check else "sql", query if isinstance(query, str) else repr(query))
        if self.connection._pipeline is None and not check:
            recorder.add("trip", "")
        return psycopg_execute(self, query, params, **kwargs)

    @contextmanager
    def recorded_pipeline(self):
        recorder.add("trip", "pipeline")
        with pipeline(self) as inner:
            yield inner

    def recorded_send(self, command, check_health=True):
        first = command[0] if isinstance(command, list) and command else command
        recorder.add("redis", bytes(first)[:60].decode(errors="replace").replace("\r\n", " "))
        return send(self, command, check_health)

    async def recorded_call(self, *args, **kwargs):
        recorder.add("hop", getattr(self.func, "__qualname__", repr(self.func)))
        return await call(self, *args, **kwargs)

    CursorWrapper._execute_with_wrappers = recorded_execute
    psycopg.Cursor.execute, psycopg.Connection.pipeline = recorded_psycopg_execute, recorded_pipeline
    redis.connection.AbstractConnection.send_packed_command = recorded_send
    SyncToAsync.__call__ = recorded_call
    try:
        yield recorder
    finally:
        CursorWrapper._execute_with_wrappers = execute
        psycopg.Cursor.execute, psycopg.Connection.pipeline = psycopg_execute, pipeline
        redis.connection.AbstractConnection.send_packed_command = send
        SyncToAsync.__call__ = call
