# A sign-in link made on the server by a command (manage.py demo), not by a browser.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0011_watchlink_bound_to_share"),
    ]

    operations = [
        migrations.AddField(
            model_name="signinlink",
            name="by_command",
            field=models.BooleanField(default=False),
        ),
    ]
