from django.db import migrations


def backfill(apps, schema_editor):
    """Roll up the usage rows written before the roll-up table existed."""
    from chat.usage import rollup_rebuild

    rollup_rebuild(schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0007_usage_rollup_prices_budgets"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
