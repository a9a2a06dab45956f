from django.db import migrations


def rebuild(apps, schema_editor):
    """Fill the roll-ups (now split by status, plus the per-model, quarter-hour and per-person tables) from the usage rows."""
    from chat.usage import rollup_rebuild

    rollup_rebuild(schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0011_usage_rollups_by_status_model_quarter_person"),
    ]

    operations = [
        migrations.RunPython(rebuild, migrations.RunPython.noop),
    ]
