"""SQL statements built from a model's fields, for writes that go to the database together in one round trip."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models


def row_update(instance: models.Model, fields: Sequence[str]) -> tuple[str, list]:
    """(UPDATE of `fields` of `instance`'s row by primary key, its parameters), values prepared as save() would.

    For chat.usage.usage_write's `along`: save(update_fields=...) compiles the statement anew on every call, and
    sends it on its own. Raises FieldDoesNotExist for a name that is not a field of the model.
    """
    meta, qn = instance._meta, connection.ops.quote_name
    columns = [field for name in fields if isinstance(field := meta.get_field(name), models.Field)]
    assignments = ", ".join(f"{qn(field.column)} = %s" for field in columns)
    # Names come from the model, values are parameters.
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"  # noqa: S608
    params = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in columns]
    return sql, [*params, meta.pk.get_db_prep_value(instance.pk, connection)]


def row_insert(instance: models.Model) -> tuple[str, list[str], list]:
    """(quoted table, quoted columns, parameters) of an INSERT of `instance` with every column but its automatic
    primary key, values prepared as save() would (defaults, pre_save, get_db_prep_save)."""
    meta, qn = instance._meta, connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    params = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    return qn(meta.db_table), [qn(field.column) for field in fields], params
