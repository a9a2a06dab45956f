"""The app as served by project.asgi, with one change for the benchmark only: each chat request hands its
database connection back right after reply_prepare and right after reply_finish.

Shipped as is, a streaming request keeps the connection its per-request thread opened (Django's ASGI handler
gives every request its own thread) for the whole reply, so concurrent streams are capped by PostgreSQL's
max_connections. This variant shows what the streaming path holds once that is fixed in chat/.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.db import connection

from project.asgi import application

__all__ = ["application"]


def _releasing(function: Callable) -> Callable:
    @wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return wrapper


def _patch() -> None:
    from chat import services  # only once project.asgi has set Django up

    services.reply_prepare = _releasing(services.reply_prepare)
    services.reply_finish = _releasing(services.reply_finish)


_patch()
