"""Watch-me links "until my share ends" say so in a field of their own (issue 25).

Before, such a link was stored with no expiry while the share had no end, and with the
share's end as a fixed expiry while it had one, so stopping a timed share did not end it.
Rows without an expiry become bound links that end seven days after they were made at
the latest; rows with one stay links for a number of minutes.
"""

from datetime import timedelta

from django.db import migrations, models


def bind_open_links(apps, schema_editor):
    WatchLink = apps.get_model("maps", "WatchLink")
    for link in WatchLink.objects.filter(expires_at=None):
        link.bound_to_share = True
        link.expires_at = link.created + timedelta(days=7)
        link.save(update_fields=["bound_to_share", "expires_at"])


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0010_reading_charging_device"),
    ]

    operations = [
        migrations.AddField(
            model_name="watchlink",
            name="bound_to_share",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(bind_open_links, migrations.RunPython.noop),
    ]
