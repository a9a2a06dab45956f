import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0004_message_reasoning"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                help_text="The turn this one answers or follows; siblings are versions (edits, regenerations).",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="selected_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now, help_text="When this version was last chosen; the newest is shown."
            ),
        ),
    ]
