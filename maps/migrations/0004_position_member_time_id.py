"""Positions are indexed by (member, device time, id): the history's keyset order.

It replaces the (member, -device_time) index, which it covers: a B-tree is read in
both directions, so the newest position of a member (maps.selectors.live_positions)
is found from the same index. With ``id`` in the key, a page of history after a cursor
``(device_time, id)`` starts where the index says (maps.selectors.history_page),
without sorting rows of equal device time.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("maps", "0003_room_history_visibility"),
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
    ]
