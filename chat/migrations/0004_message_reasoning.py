from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0003_usage_api_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="reasoning",
            field=models.TextField(blank=True, help_text="The model's thinking text, when the provider streams it."),
        ),
    ]
