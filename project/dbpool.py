"""The database pool's health check (psycopg_pool's `check` callback), without a round trip per checkout."""

from __future__ import annotations

import select

import psycopg
from psycopg_pool import ConnectionPool


def check_if_spoken_to(conn: psycopg.Connection) -> None:
    """Raise if `conn`, idle in the pool, is no longer usable; a query is sent only if the server has spoken.

    An idle PostgreSQL connection receives nothing unless the server is ending it (a FATAL ErrorResponse, such as
    "terminating connection due to administrator command", then EOF) or it has something asynchronous to say
    (NoticeResponse, ParameterStatus; NotificationResponse needs a LISTEN, which we never send): PostgreSQL
    protocol docs, "Asynchronous Operations". So a connection whose socket has nothing to read is as good as when
    it went back to the pool, and only one that does is checked with psycopg_pool's own empty query, which reads
    what is waiting and raises if the server has gone. Django's CONN_HEALTH_CHECKS would send that query on every
    checkout: a round trip for each of a chat request's two or three checkouts.
    Raises psycopg.OperationalError (or what the empty query raises), as psycopg_pool expects of a check.
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)
