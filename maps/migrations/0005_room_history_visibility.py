"""Rooms say whose history their people may see (maps.auth.history_members)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0004_member_share_live_watch"),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="history_visibility",
            field=models.CharField(
                choices=[
                    ("everyone", "Everyone in the room, viewers too"),
                    ("members", "Members, not viewers"),
                    ("own", "Each member only their own"),
                ],
                default="members",
                max_length=10,
            ),
        ),
    ]
