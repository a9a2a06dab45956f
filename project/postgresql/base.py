"""Django's PostgreSQL backend with a pool health check that costs no round trip (project.dbpool)."""

from __future__ import annotations

from django.db.backends.postgresql import base

from project.dbpool import check_if_spoken_to


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool  # type: ignore[misc]  # Django's, left out of django-stubs
        # Django passes the pool either psycopg_pool's round-trip check (CONN_HEALTH_CHECKS) or none, and refuses
        # a `check` in OPTIONS (it would be passed twice); psycopg_pool keeps the callback in `_check`.
        if pool is not None and pool._check is None:
            pool._check = check_if_spoken_to
        return pool
