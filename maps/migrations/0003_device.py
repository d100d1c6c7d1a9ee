"""Devices: a member may connect several phones, each with its own key.

Each member's existing device key (``Member.key_hash``) becomes a device named "Phone",
so every phone set up before keeps working; then the member column goes.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def keys_to_devices(apps, schema_editor):
    Member = apps.get_model("maps", "Member")
    Device = apps.get_model("maps", "Device")
    keyed = Member.objects.exclude(key_hash__isnull=True).exclude(key_hash="")
    Device.objects.bulk_create(
        Device(member_id=pk, name="Phone", key_hash=key_hash, created=created,
               last_seen=last_seen)
        for pk, key_hash, created, last_seen in keyed.values_list(
            "pk", "key_hash", "created", "last_seen").iterator()
    )


def devices_to_keys(apps, schema_editor):
    # Going back keeps each member's oldest device key; the other devices are lost.
    Member = apps.get_model("maps", "Member")
    Device = apps.get_model("maps", "Device")
    for device in Device.objects.order_by("-created", "-pk"):
        Member.objects.filter(pk=device.member_id).update(key_hash=device.key_hash)


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0002_member_name_unique_in_room"),
    ]

    operations = [
        migrations.CreateModel(
            name="Device",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=40)),
                ("key_hash", models.CharField(max_length=64, unique=True)),
                ("created", models.DateTimeField(default=django.utils.timezone.now)),
                ("last_seen", models.DateTimeField(blank=True, null=True)),
                ("secret", models.CharField(blank=True, default="", max_length=32)),
                ("member", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="devices", to="maps.member")),
            ],
            options={"ordering": ["created", "pk"]},
        ),
        migrations.RunPython(keys_to_devices, devices_to_keys),
        migrations.RemoveField(model_name="member", name="key_hash"),
    ]
