"""The pool's health check asks PostgreSQL nothing about a quiet connection and replaces one the server ended."""

from __future__ import annotations

import select

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from project.dbpool import check_if_spoken_to

pytestmark = pytest.mark.postgres


class _Counting(psycopg.Connection):
    queries = 0

    def execute(self, query, *args, **kwargs):
        type(self).queries += 1
        return super().execute(query, *args, **kwargs)


def _conninfo() -> str:
    params = {k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "password")}
    return psycopg.conninfo.make_conninfo(dbname="postgres", **{k: str(v) for k, v in params.items() if v})


def _terminate(pid: int) -> None:
    with psycopg.connect(_conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_quiet_connection_is_handed_out_without_a_query():
    with _Counting.connect(_conninfo(), autocommit=True) as conn:
        _Counting.queries = 0
        check_if_spoken_to(conn)
        check_if_spoken_to(conn)
        assert _Counting.queries == 0


def test_a_connection_the_server_ended_fails_the_check():
    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        _terminate(conn.info.backend_pid)
        select.select([conn.fileno()], [], [], 10)  # the server's goodbye has arrived
        with pytest.raises(psycopg.OperationalError):
            check_if_spoken_to(conn)


def test_the_pool_replaces_a_connection_the_server_ended():
    with ConnectionPool(
        _conninfo(), min_size=1, max_size=1, check=check_if_spoken_to, kwargs={"autocommit": True}
    ) as pool:
        with pool.connection() as conn:
            ended, socket = conn.info.backend_pid, conn.fileno()
        _terminate(ended)
        select.select([socket], [], [], 10)  # the server's goodbye has reached the idle connection
        with pool.connection() as conn:
            assert conn.info.backend_pid != ended
            assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.django_db
def test_the_site_pool_uses_it():
    connection.ensure_connection()
    assert connection.pool is not None
    assert connection.pool._check is check_if_spoken_to
