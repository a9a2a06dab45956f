from __future__ import annotations

from django.db import migrations


def backfill(apps, schema_editor) -> None:
    """Give every existing account its key; a look-alike of an older account keeps working under "<key>~<id>"."""
    from accounts.usernames import username_key

    User = apps.get_model("accounts", "User")
    taken: set[str] = set()
    for user in User.objects.order_by("pk").only("pk", "username").iterator():
        key = username_key(user.username)
        if key in taken:
            key = f"{key}~{user.pk}"[:150]
        taken.add(key)
        User.objects.filter(pk=user.pk).update(username_key=key)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0007_username_key")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
