"""Pruning inside the service (maps.ops.maintenance): the database and the live state."""

import sqlite3
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from maps.access.identity import member_ref
from maps.domain.fixes import Fix, now_ms
from maps.models import Position
from maps.ops.maintenance import prune_once
from maps.services import position_publish
from maps.storage.history import history_writer
from tests.servers import Project, Uvicorn, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DAY_MS = 86_400_000


async def test_positions_past_retention_leave_the_map_and_never_reach_late_joiners(
    room, member, member_key, other_key, viewer_key, connect
):
    watcher = await connect(room, key=other_key)
    ref = await database_sync_to_async(member_ref)(member)
    eight_days_ago = now_ms() - 8 * DAY_MS
    fix = Fix(lat=46.0, lon=14.0, ts=eight_days_ago)
    await position_publish(ref=ref, fix=fix, received_ms=eight_days_ago)
    await watcher.receive_type("positions")
    await history_writer().flush()
    assert await prune_once() == 1
    assert (await watcher.receive_type("stopped"))["member"] == member.pk
    late = await connect(room, key=viewer_key)
    assert late.snapshot["positions"] == []
    assert not await database_sync_to_async(Position.objects.exists)()


async def test_a_hub_starting_cold_skips_stored_positions_past_retention(
    room, member, other_key, connect
):
    old = timezone.now() - timedelta(days=8)
    await database_sync_to_async(Position.objects.create)(
        member=member, lat=1.0, lon=2.0, device_time=old, received=old)
    late = await connect(room, key=other_key)
    assert late.snapshot["positions"] == []


@pytest.mark.slow
def test_the_running_service_prunes_by_itself(tmp_path):
    project = Project(tmp_path, GEOSHARE_PRUNE_EVERY_S="1").migrate()
    room, keys = project.make_room(members=("Ana",))
    project.manage("shell", "-c", (
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from maps.models import Position\n"
        "old = timezone.now() - timedelta(days=30)\n"
        f"Position.objects.create(member_id={keys['Ana']['member']}, lat=1, lon=2, "
        "device_time=old, received=old)\n"
    ))
    count = ("from maps.models import Position\n"
             "print(Position.objects.count())\n")
    assert project.manage("shell", "-c", count).split()[-1] == "1"
    with Uvicorn(project):

        def pruned():
            with sqlite3.connect(project.db) as db:
                return db.execute("select count(*) from maps_position").fetchone() == (0,)

        wait_for(pruned, timeout=20, interval=0.05)
    assert pruned(), "the service did not prune"
