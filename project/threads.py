"""Database work from async code, in worker threads that hand their connection back."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection


def in_thread(function: Callable, *, request: bool = False) -> Callable:
    """`function` as a coroutine function run in a worker thread, handing the thread's database connection back to
    the pool afterwards (never inside a transaction a caller opened: its atomic block).

    `request=True` runs it on the request's own thread, where middleware loaded the session and user, so the
    connection handed back is the one the request holds. Otherwise a pooled thread: a reply runs on after its
    request has ended, and database round trips serialised through one thread queue behind each other (100 API
    streams starting at once waited seconds in the bench kit while the process used 15 % of a core). Never
    asgiref's default for calls off a request, its one shared thread: nothing hands that thread's connection back
    once no request's signals run there (project.asgi sends them on the event loop).
    """

    @wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            connection_hand_back()

    return sync_to_async(run, thread_sensitive=request)


def connection_hand_back() -> None:
    """Hand this thread's database connection back to the pool, unless a caller's transaction (atomic block) holds
    it; one that has died is dropped."""
    if not connection.in_atomic_block:
        close_old_connections()
