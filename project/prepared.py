"""Querysets compiled to SQL once per process and run again with other values, for the chat's hot lookups."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import psycopg
from django.db import connections, models
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]  # ModelIterable's own

M = TypeVar("M", bound=models.Model)


class PreparedQuery(Generic[M]):
    """A queryset's SQL, compiled the first time it runs; each run sends it with that run's values.

    `build(*values)` returns the queryset; `samples` are values of the same types that appear once each among the
    compiled query's parameters (pick unlikely ones: "\\x00prefix", -7301), which is how the parameters that stand
    for the arguments are found. Each later run sends the compiled SQL with the arguments in those places, as they
    are (pass the types the ORM would send: a UUID for a UUIDField), and builds instances as Django's ModelIterable
    does: the row's own fields, select_related() objects, and each field's from_db_value converters. Not carried
    over: annotations and a related manager's known objects (`user.credentials` setting `credential.user`).

    Why: compiling a queryset is most of what a lookup costs in Python. A personal key's lookup took 1.16 ms with
    get() and 0.35 ms prepared, of which 0.32 ms is the round trip (this machine, 500 runs); a chat request makes
    two to four such lookups. Raises ValueError at the first run if a sample is not found exactly once.
    """

    def __init__(self, build: Callable[..., models.QuerySet[M]], *samples: object, using: str = "default") -> None:
        self.build, self.samples, self.using = build, samples, using
        self._lock = threading.Lock()
        self._compiled: tuple | None = None

    def _compile(self) -> tuple:
        with self._lock:
            if self._compiled is None:
                queryset = self.build(*self.samples)
                if queryset.query.annotations:
                    raise ValueError("a prepared query cannot carry annotations")
                compiler = queryset.query.get_compiler(using=self.using)
                sql, params = compiler.as_sql()
                places = []
                for sample in self.samples:
                    found = [i for i, param in enumerate(params) if type(param) is type(sample) and param == sample]
                    if len(found) != 1:
                        raise ValueError(f"sample {sample!r} is {len(found)} times among the parameters")
                    places.append(found[0])
                select, klass_info = compiler.select, compiler.klass_info
                start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
                init_list = [column[0].target.attname for column in select[start:end]]
                converters = list(compiler.get_converters([s[0] for s in select[: compiler.col_count]]).items())
                populators = get_related_populators(klass_info, select, self.using)
                model = klass_info["model"]
                self._compiled = (sql, list(params), places, model, start, end, init_list, converters, populators)
            return self._compiled

    def all(self, *values: object) -> list[M]:
        """The instances the queryset built with `values` would yield, in its order."""
        sql, params, places, model, start, end, init_list, converters, populators = self._compile()
        params = params.copy()
        for place, value in zip(places, values, strict=True):
            params[place] = value
        connection = connections[self.using]
        rows: list[Any]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # A server-side prepared statement (psycopg, per connection): Django's client-side cursor sends
                # the query as text, which PostgreSQL plans every time (0.67 ms of a 0.13 ms API key lookup).
                with connection.wrap_database_errors, psycopg.Cursor(cursor.cursor.connection) as prepared:
                    prepared.execute(sql, params, prepare=True)
                    rows = prepared.fetchall()
            else:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
        instances = []
        for row in rows:
            if converters:
                row = list(row)
                for position, (functions, expression) in converters:
                    value = row[position]
                    for function in functions:
                        value = function(value, expression, connection)
                    row[position] = value
            instance = model.from_db(self.using, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, instance)
            instances.append(instance)
        return instances

    def first(self, *values: object) -> M | None:
        """The first instance, or None; the queryset should match one row at most (a unique lookup)."""
        found = self.all(*values)
        return found[0] if found else None
