from django.db import migrations


def link_turns(apps, schema_editor):
    """Chain each conversation's existing messages in order: before versions, a conversation was one line."""
    Message = apps.get_model("chat", "Message")
    previous: dict[int, int] = {}
    batch = []
    for message in Message.objects.order_by("conversation_id", "created_at", "id").iterator(chunk_size=2000):
        message.parent_id = previous.get(message.conversation_id)
        message.selected_at = message.created_at
        previous[message.conversation_id] = message.id
        batch.append(message)
        if len(batch) == 2000:
            Message.objects.bulk_update(batch, ["parent", "selected_at"])
            batch = []
    Message.objects.bulk_update(batch, ["parent", "selected_at"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0005_message_versions"),
    ]

    operations = [
        migrations.RunPython(link_turns, migrations.RunPython.noop),
    ]
