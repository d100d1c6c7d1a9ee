"""Positions are indexed by (member, device time, id): the history's keyset order.

It replaces the (member, -device_time) index and the foreign key's own index on
member, which it covers: a B-tree is read in both directions, so the newest position
of a member (maps.selectors.live_positions) is found from the same index, and so are
a member's positions for a cascade delete or a prune. With the foreign key's index
left in place, PostgreSQL read a day of one member through it and sorted 86,400 rows
(make bench, history). With ``id`` in the key, a page of history after a cursor
``(device_time, id)`` starts where the index says (maps.selectors.history_page),
without sorting rows of equal device time.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0005_room_history_visibility"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="position",
            index=models.Index(
                fields=["member", "device_time", "id"], name="maps_position_member_time_id"
            ),
        ),
        migrations.RemoveIndex(
            model_name="position",
            name="maps_positi_member__286de8_idx",
        ),
        migrations.AlterField(
            model_name="position",
            name="member",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE,
                related_name="positions", to="maps.member",
            ),
        ),
    ]
