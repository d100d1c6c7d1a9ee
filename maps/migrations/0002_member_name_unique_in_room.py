"""Member names become unique in their room, whatever their case.

Rows that already share a name (compared with ``str.casefold``, which groups at least
what the database's ``LOWER`` does) are renamed first: the oldest keeps the name, the
others get " 2", " 3"... appended, cut to fit the 40 characters of the field.
"""

from collections import defaultdict

from django.db import migrations, models
from django.db.models.functions import Lower

NAME_LENGTH = 40


def rename_duplicates(apps, schema_editor):
    Member = apps.get_model("maps", "Member")
    rooms = defaultdict(list)
    for pk, room_id, name in Member.objects.order_by("pk").values_list("pk", "room_id", "name"):
        rooms[room_id].append((pk, name))
    for members in rooms.values():
        # Every name of the room, so that a new name never takes one a later row has.
        taken = {name.casefold() for _, name in members}
        kept = set()
        for pk, name in members:
            if name.casefold() not in kept:
                kept.add(name.casefold())
                continue
            number = 2
            while True:
                suffix = f" {number}"
                candidate = name[: NAME_LENGTH - len(suffix)].rstrip() + suffix
                if candidate.casefold() not in taken:
                    break
                number += 1
            taken.add(candidate.casefold())
            kept.add(candidate.casefold())
            Member.objects.filter(pk=pk).update(name=candidate)


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="member",
            constraint=models.UniqueConstraint(
                Lower("name"),
                models.F("room"),
                name="maps_member_name_unique_in_room",
                violation_error_message="Someone in this room already has this name.",
            ),
        ),
    ]
