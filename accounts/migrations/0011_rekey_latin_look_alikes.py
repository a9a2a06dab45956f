from __future__ import annotations

import importlib

from django.db import migrations

backfill = importlib.import_module("accounts.migrations.0008_backfill_username_key").backfill


def rekey(apps, schema_editor) -> None:
    """Key every account again now that Latin look-alikes (I, l, 1; 0, o; rn, m; vv, w) share a key, as 0008 did:
    the oldest of existing look-alikes gets the key, each later one "<key>~<id>", so no one is locked out."""
    User = apps.get_model("accounts", "User")
    User.objects.update(username_key=None)  # NULLs never clash, so no row meets another's old key on the way
    backfill(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0010_budget_not_negative")]

    operations = [migrations.RunPython(rekey, migrations.RunPython.noop)]
