"""Database work from async code, in pooled worker threads that hand their connection back."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection


def in_pool(function: Callable) -> Callable:
    """`function` as a coroutine function run in a pooled worker thread, handing the thread's database connection
    back to the pool afterwards (unless a caller's transaction holds it).

    Not asgiref's default, the one thread-sensitive thread: database round trips serialised through one thread
    queue behind each other (100 API streams starting at once waited seconds in the bench kit while the process
    used 15 % of a core), and nothing hands that thread's connection back once no request's signals run there
    (project.asgi sends them on the event loop).
    """

    @wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                close_old_connections()

    return sync_to_async(run, thread_sensitive=False)
