# An owner's label for an invite.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0007_places"),
    ]

    operations = [
        migrations.AddField(
            model_name="invite",
            name="label",
            field=models.CharField(blank=True, default="", max_length=60),
        ),
    ]
