from __future__ import annotations

from django.db import migrations


def rekey(apps, schema_editor) -> None:
    """Key every account again now that Latin look-alikes (I, l, 1; 0, o; rn, m; vv, w) share a key. Accounts that
    already differ only by them keep working: the oldest gets the key, each later one "<key>~<id>"."""
    from accounts.usernames import username_key

    User = apps.get_model("accounts", "User")
    User.objects.update(username_key=None)  # NULLs never clash, so no row meets another's old key on the way
    taken: set[str] = set()
    for user in User.objects.order_by("pk").only("pk", "username").iterator():
        key = username_key(user.username)
        if key in taken:
            key = f"{key}~{user.pk}"[:150]
        taken.add(key)
        User.objects.filter(pk=user.pk).update(username_key=key)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0010_budget_not_negative")]

    operations = [migrations.RunPython(rekey, migrations.RunPython.noop)]
