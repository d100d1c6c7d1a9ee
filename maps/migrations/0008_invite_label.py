# An owner's label for an invite.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0006_position_member_time_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="invite",
            name="label",
            field=models.CharField(blank=True, default="", max_length=60),
        ),
    ]
