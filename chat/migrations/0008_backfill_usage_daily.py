from django.db import migrations


def backfill(apps, schema_editor):
    """Nothing: 0012 rebuilds every roll-up from the usage rows.

    This step called chat.usage.rollup_rebuild, which now writes the roll-up columns 0011 adds;
    run here, on the older schema, it would fail.
    """


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0007_usage_rollup_prices_budgets"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
