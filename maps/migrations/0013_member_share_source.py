from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0012_signinlink_by_command"),
    ]

    operations = [
        migrations.AddField(
            model_name="member",
            name="share_source",
            field=models.CharField(blank=True, default="", max_length=80),
        ),
        migrations.AddField(
            model_name="member",
            name="share_source_name",
            field=models.CharField(blank=True, default="", max_length=40),
        ),
    ]
