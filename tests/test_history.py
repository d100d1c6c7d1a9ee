"""The history writer (maps.storage.history): retention at write time, bounded memory, no lost
batches when a member is deleted mid-batch (PostgreSQL)."""

import asyncio
import subprocess
import sys
import textwrap

import pytest
from channels.db import database_sync_to_async

from maps.domain import exports, tracks
from maps.domain.fixes import Fix
from maps.models import LivePosition, Member, Position
from maps.services import room_set_retention
from maps.storage import selectors
from maps.storage.history import LAST_SEEN_RESOLUTION_MS, history_writer, write_batch
from tests.servers import ROOT, Project, postgres_database

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = {"type": "position", "lat": 46.05, "lon": 14.5, "ts": 1763700000000}
NOW = 1_763_700_000_000


async def test_live_only_applies_to_sockets_already_open(room, member, member_key, connect):
    sender = await connect(room, key=member_key)
    await sender.send(SAMPLE)
    await sender.receive_type("positions")
    await history_writer().flush()
    count = database_sync_to_async(Position.objects.filter(member=member).count)
    assert await count() == 1
    # The owner sets the room to live only while the socket stays open.
    await database_sync_to_async(room_set_retention)(room=room, days=0)
    assert await count() == 0
    await sender.send({**SAMPLE, "ts": SAMPLE["ts"] + 1000})
    await sender.receive_type("positions")
    await history_writer().flush()
    assert await count() == 0


def test_persisted_last_seen_forgets_members_who_went_quiet(member, other):
    fix = Fix(lat=1.0, lon=2.0, ts=NOW)
    persisted = {10_000 + i: NOW - 10 * LAST_SEEN_RESOLUTION_MS for i in range(1000)}
    write_batch([(member.pk, fix, NOW), (other.pk, fix, NOW)], persisted)
    assert persisted == {member.pk: NOW, other.pk: NOW}


def test_the_history_connection_leaves_checkpoints_to_its_own_thread(member):
    # SQLite: the batch's connection commits without checkpointing the WAL
    # (wal_autocheckpoint 0); maps.storage.history.wal_checkpoint, on a thread of its own,
    # copies the WAL back, and answers SQLite's (busy, log, checkpointed) row.
    from django.db import connection

    from maps.storage.history import wal_checkpoint

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    write_batch([(member.pk, Fix(lat=1.0, lon=2.0, ts=NOW), NOW)])
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone() == (0,)
    busy, log_frames, done = wal_checkpoint()
    assert busy == 0 and done <= log_frames


def test_positions_of_deleted_members_are_dropped_and_the_rest_written(member, other):
    fix = Fix(lat=1.0, lon=2.0, ts=NOW)
    other_pk = other.pk
    other.delete()
    assert write_batch([(member.pk, fix, NOW), (other_pk, fix, NOW)]) == 1
    assert list(Position.objects.values_list("member_id", flat=True)) == [member.pk]


# A member deleted by another connection between the batch's existence check and its
# insert: without a lock, the insert fails its foreign key and the whole batch is lost.
RACE = textwrap.dedent("""
    import threading, django
    django.setup()
    from django.db import connection
    from maps.storage import history
    from maps.domain.fixes import Fix
    from maps.models import Member, Position
    from maps.services import member_create, member_remove, room_create

    room, _ = room_create(name="R", owner_name="O")
    doomed, _ = member_create(room=room, name="Doomed")
    kept, _ = member_create(room=room, name="Kept")
    deleted_during_batch = threading.Event()

    def delete_doomed():
        member_remove(member=Member.objects.get(pk=doomed.pk))
        connection.close()
        deleted_during_batch.set()

    checked = history._member_rooms

    def check_then_race(member_ids):
        found = checked(member_ids)
        threading.Thread(target=delete_doomed).start()
        # Give the delete every chance to go through before the insert.
        deleted_during_batch.wait(1.0)
        return found

    history._member_rooms = check_then_race
    fix = Fix(lat=1.0, lon=2.0, ts=1763700000000)
    written = history.write_batch([(doomed.pk, fix, 1763700000000),
                                   (kept.pk, fix, 1763700000000)])
    deleted_during_batch.wait(10)
    print(written, Position.objects.filter(member_id=kept.pk).count(),
          Member.objects.filter(pk=doomed.pk).exists())
""")


@pytest.mark.slow
def test_a_member_deleted_mid_batch_does_not_lose_the_batch_on_postgres(tmp_path):
    with postgres_database() as url:
        project = Project(tmp_path, database_url=url).migrate()
        result = subprocess.run([sys.executable, "-c", RACE], cwd=ROOT, env=project.env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    # Both rows written (the delete waited for the commit), the kept member's row
    # stays, and the doomed member is gone with its row.
    assert result.stdout.split()[-3:] == ["2", "1", "False"]


def test_charging_and_device_are_stored_and_read_back_everywhere(member):
    fixes = [Fix(lat=1.0, lon=2.0, ts=NOW - 2000, battery=62.0, charging=True,
                 device="Ana's Pixel"),
             Fix(lat=1.1, lon=2.1, ts=NOW - 1000, charging=False, device="Ana's Pixel"),
             Fix(lat=1.2, lon=2.2, ts=NOW)]
    write_batch([(member.pk, fix, NOW) for fix in fixes])
    # The live position: what a hub that starts loads and every snapshot shows.
    live = LivePosition.objects.get(member=member)
    assert "charging" not in selectors.position_wire(live)
    assert "device" not in selectors.position_wire(live)
    # The track API's pages, in the wire shape.
    floor = selectors.from_ms(0)
    until = selectors.from_ms(NOW + 1)
    positions, _cursor = selectors.history_page([member.pk], since=floor, until=until,
                                                floor=floor)
    assert [(p.get("charging"), p.get("device")) for p in positions] == [
        (True, "Ana's Pixel"), (False, "Ana's Pixel"), (None, None)]
    # The exports: booleans (SQLite hands its raw rows back as 0 and 1).
    (track,) = selectors.history_tracks(Member.objects.filter(pk=member.pk), since=floor,
                                        until=until, floor=floor)
    assert track.charging == [True, False, None]
    feature = tracks.track_feature(track)
    assert feature["properties"]["charging"] == [True, False, None]
    document = exports.gpx_document([track])
    assert "<geoshare:charging>true</geoshare:charging>" in document
    assert "<geoshare:charging>false</geoshare:charging>" in document
    assert document.count("<geoshare:charging>") == 2


def test_the_live_position_keeps_the_newest_fixs_charging_and_device(member):
    write_batch([(member.pk, Fix(lat=1.0, lon=2.0, ts=NOW, charging=True,
                                 device="Ana's Pixel"), NOW)])
    wire = selectors.position_wire(LivePosition.objects.get(member=member))
    assert (wire["charging"], wire["device"]) == (True, "Ana's Pixel")


def test_time_param_sends_what_the_orm_would_send():
    """The batch's own datetime adapter gives Django's parameter for every millisecond:
    the stored text is what the ORM writes and reads back."""
    from django.db import connection

    from maps.storage.history import time_param
    from maps.storage.selectors import from_ms

    stamp = time_param()
    samples = [0, 1, 999, 1_000, 86_399_999, 1_700_000_000_000, 1_795_327_466_680,
               1_795_327_466_001, 4_102_444_799_999]
    samples += [1_600_000_000_000 + step * 7_919_777 for step in range(500)]
    for ms in samples:
        assert stamp(ms) == connection.ops.adapt_datetimefield_value(from_ms(ms)), ms
        # And again from the batch's memory of that millisecond.
        assert stamp(ms) == connection.ops.adapt_datetimefield_value(from_ms(ms)), ms


async def test_phone_positions_are_announced_when_accepted_and_answered_when_stored(
        member, other):
    """The one rule for every door (docs/protocol.md): each request's newest position
    is announced as a ``room.fix`` once accepted; the durable answer waits for the
    commit, and positions committed together share one commit."""
    from channels.layers import get_channel_layer

    from maps.access.identity import member_ref
    from maps.protocol.events import room_group
    from maps.services import positions_publish

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(room_group(member.room_id), channel)
    mine, theirs = (await database_sync_to_async(
        lambda: [member_ref(m) for m in Member.objects.select_related("room")
                 .filter(pk__in=[member.pk, other.pk]).order_by("pk")])())
    first = Fix(lat=1.0, lon=2.0, ts=NOW)
    newer = Fix(lat=1.5, lon=2.5, ts=NOW + 5_000)
    await asyncio.gather(
        positions_publish(ref=mine, fixes=[first, newer], durable=True,
                          received_ms=NOW + 6_000),
        positions_publish(ref=theirs, fixes=[first], durable=True,
                          received_ms=NOW + 6_000),
    )
    # Both answered: both stored.
    stored = await database_sync_to_async(
        lambda: sorted(Position.objects.values_list("member_id", "lat")))()
    assert stored == sorted([(mine.id, 1.0), (mine.id, 1.5), (theirs.id, 1.0)])
    announced = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(2)]
    assert [m["type"] for m in announced] == ["room.fix", "room.fix"]
    assert sorted((m["p"]["member"], m["p"]["lat"], m["p"]["ts"]) for m in announced) == [
        (mine.id, 1.5, NOW + 5_000), (theirs.id, 1.0, NOW)]
    await layer.group_discard(room_group(member.room_id), channel)
