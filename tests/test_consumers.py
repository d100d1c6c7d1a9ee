"""The WebSocket door, driven with channels' WebsocketCommunicator."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from maps.models import LivePosition, Position
from maps.protocol.events import check_frame
from maps.services import device_create, member_remove
from maps.storage.history import history_writer
from tests.conftest import Client, about, position_of
from tests.servers import until

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = {"type": "position", "lat": 46.05, "lon": 14.5, "accuracy": 8, "altitude": 295,
          "speed": 1.3, "heading": 270, "battery": 81, "ts": 1763700000000}


async def test_snapshot_lists_members_and_room(room, owner, member, member_key, connect):
    client = await connect(room, key=member_key)
    snapshot = client.snapshot
    assert snapshot["you"] == member.pk
    assert snapshot["room"]["id"] == room.public_id
    assert snapshot["room"]["name"] == "Ski trip"
    assert snapshot["room"]["tick_ms"] == 100
    by_id = {m["id"]: m for m in snapshot["members"]}
    assert by_id[owner.pk]["role"] == "owner"
    assert by_id[owner.pk]["online"] is False
    assert by_id[member.pk] == {
        "id": member.pk, "name": "Ana", "color": member.color, "role": "member",
        "online": True, "sharing": False, "sharing_until": None,
        "last_seen": by_id[member.pk]["last_seen"], "source": "", "source_name": "",
    }
    assert snapshot["positions"] == []


async def test_position_reaches_other_members(room, member, member_key, other_key, connect):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send(SAMPLE)
    frame = await watcher.receive_type("positions")
    (position,) = frame["positions"]
    assert position["member"] == member.pk
    assert position["ts"] == SAMPLE["ts"]
    expected = {k: float(v) for k, v in SAMPLE.items() if k not in ("type", "ts")}
    assert {k: position[k] for k in expected} == expected
    assert isinstance(position["seen"], int)
    # The sender sees its own position too (one frame for the whole room).
    assert (await sender.receive_type("positions"))["positions"] == frame["positions"]


async def test_late_joiner_gets_latest_position_in_snapshot(
    room, member, member_key, other_key, connect
):
    sender = await connect(room, key=member_key)
    await sender.send(SAMPLE)
    await sender.send({**SAMPLE, "lat": 46.06, "ts": SAMPLE["ts"] + 1000})
    await sender.receive_type("positions")
    late = await connect(room, key=other_key)
    (position,) = late.snapshot["positions"]
    assert (position["member"], position["lat"]) == (member.pk, 46.06)
    sharing = {m["id"]: m["sharing"] for m in late.snapshot["members"]}
    assert sharing[member.pk] is True


async def test_positions_within_one_tick_are_coalesced(
    room, member, member_key, other_key, connect
):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    for i in range(4):
        await sender.send({**SAMPLE, "lat": 46.0 + i / 100, "ts": SAMPLE["ts"] + i})
    frame = await watcher.receive_type("positions")
    assert [p["lat"] for p in frame["positions"]] == [46.03]
    # No second frame of them: proved by a later position, which the hub hears after them.
    await watcher.send({**SAMPLE, "lat": 47.0})
    assert about(await watcher.frames_until(position_of(watcher.snapshot["you"])),
                 member.pk) == []
    # Every one of them is history all the same.
    await history_writer().flush()
    count = await database_sync_to_async(Position.objects.filter(member=member).count)()
    assert count == 4


async def test_out_of_order_position_never_moves_marker_back(
    room, member, member_key, other_key, connect
):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send({**SAMPLE, "lat": 46.1, "ts": SAMPLE["ts"] + 5000})
    assert (await watcher.receive_type("positions"))["positions"][0]["lat"] == 46.1
    await sender.send({**SAMPLE, "lat": 45.0, "ts": SAMPLE["ts"]})
    await sender.handled()
    # Proved by a later position, which the hub hears after the old one.
    await watcher.send({**SAMPLE, "lat": 47.0})
    assert about(await watcher.frames_until(position_of(watcher.snapshot["you"])),
                 member.pk) == []
    await history_writer().flush()
    stored = await database_sync_to_async(
        lambda: sorted(Position.objects.filter(member=member).values_list("lat", flat=True))
    )()
    assert stored == [45.0, 46.1]


async def test_viewer_cannot_publish(room, viewer_key, member_key, connect):
    viewer = await connect(room, key=viewer_key)
    watcher = await connect(room, key=member_key)
    await viewer.send(SAMPLE)
    error = await viewer.receive_type("error")
    assert error["code"] == "forbidden"
    # Proved by a later position, which the hub hears after the refused one.
    await watcher.send(SAMPLE)
    frames = await watcher.frames_until(position_of(watcher.snapshot["you"]))
    assert about(frames, viewer.snapshot["you"]) == []
    await history_writer().flush()
    stored = await database_sync_to_async(
        lambda: list(Position.objects.values_list("member_id", flat=True)))()
    assert stored == [watcher.snapshot["you"]]  # the later one only


async def test_stranger_is_refused_with_4403(room, stranger_key, connect):
    client = await connect(room, key=stranger_key, expect_snapshot=False)
    assert await client.close_code() == 4403


async def test_unknown_key_is_refused_with_4401(room, connect):
    client = await connect(room, key="not-a-key", expect_snapshot=False)
    assert await client.close_code() == 4401


async def test_no_credentials_is_refused_with_4401(room, connect):
    client = await connect(room, expect_snapshot=False)
    assert await client.close_code() == 4401


async def test_unknown_room_is_refused_with_4404(room, member_key, connect):
    room.public_id = "no-such-room"
    client = await connect(room, key=member_key, expect_snapshot=False)
    assert await client.close_code() == 4404


async def test_removed_member_is_closed_and_refused(room, member, member_key, other_key,
                                                    connect):
    client = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await client.send(SAMPLE)
    await watcher.receive_type("positions")
    member_id = member.pk
    await database_sync_to_async(member_remove)(member=member)
    assert await client.close_code() == 4403
    assert (await watcher.receive_type("stopped"))["member"] == member_id
    assert (await watcher.receive_type("removed"))["member"] == member_id
    again = await connect(room, key=member_key, expect_snapshot=False)
    assert await again.close_code() == 4401
    fresh = await connect(room, key=other_key)
    assert fresh.snapshot["positions"] == []
    assert member_id not in {m["id"] for m in fresh.snapshot["members"]}


@pytest.mark.parametrize(
    ("text", "code", "field"),
    [
        ("not json", "bad_json", None),
        ("", "bad_json", None),
        ("[]", "bad_json", None),
        ("null", "bad_json", None),
        ('{"type": "dance"}', "unknown_type", "type"),
        ('{"lat": 1, "lon": 2}', "unknown_type", "type"),
        ('{"type": "position", "lon": 2}', "invalid", "lat"),
        ('{"type": "position", "lat": 90.0000001, "lon": 2}', "invalid", "lat"),
        ('{"type": "position", "lat": 1, "lon": -180.5}', "invalid", "lon"),
        ('{"type": "position", "lat": "1", "lon": 2}', "invalid", "lat"),
        ('{"type": "position", "lat": true, "lon": 2}', "invalid", "lat"),
        # orjson refuses numbers that do not fit a double, and NaN, as malformed JSON.
        ('{"type": "position", "lat": 1e999, "lon": 2}', "bad_json", None),
        ('{"type": "position", "lat": NaN, "lon": 2}', "bad_json", None),
        ('{"type": "position", "lat": 1, "lon": 2, "accuracy": -1}', "invalid", "accuracy"),
        ('{"type": "position", "lat": 1, "lon": 2, "ts": "now"}', "invalid", "ts"),
        ('{"type": "position", "lat": 1, "lon": 2, "heading": 361}', "invalid", "heading"),
    ],
)
async def test_bad_frames_get_errors_and_change_nothing(
    room, member_key, other_key, connect, text, code, field
):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send_text(text)
    error = await sender.receive_type("error")
    assert error["code"] == code
    assert error.get("field") == field
    # The socket stays open and keeps working; the first of its positions the watcher
    # sees is that later one, none from the bad frame.
    await sender.send(SAMPLE)
    frames = await watcher.frames_until(position_of(sender.snapshot["you"]))
    (shown,) = about(frames, sender.snapshot["you"])
    assert [p["lat"] for p in shown["positions"]] == [46.05]
    await history_writer().flush()
    assert await database_sync_to_async(Position.objects.count)() == 1


async def test_binary_frame_is_refused(room, member_key, connect):
    sender = await connect(room, key=member_key)
    await sender.communicator.send_to(bytes_data=b'{"type": "position"}')
    assert (await sender.receive_type("error"))["code"] == "bad_json"


async def test_stop_removes_marker_for_others(room, member, member_key, other_key, connect):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send(SAMPLE)
    await watcher.receive_type("positions")
    await sender.send({"type": "stop"})
    assert (await watcher.receive_type("stopped"))["member"] == member.pk
    await history_writer().flush()
    late = await connect(room, key=other_key)
    assert late.snapshot["positions"] == []
    assert {m["id"]: m["sharing"] for m in late.snapshot["members"]}[member.pk] is False


async def test_stopped_share_stays_hidden_after_hub_restart(
    room, member, member_key, other_key, connect, hubs
):
    sender = await connect(room, key=member_key)
    await sender.send(SAMPLE)
    await sender.receive_type("positions")
    await sender.send({"type": "stop"})
    await sender.receive_type("stopped")
    await history_writer().flush()
    await hubs.close()  # the next connection loads the room from the database
    late = await connect(room, key=other_key)
    assert late.snapshot["positions"] == []


async def test_snapshot_after_hub_restart_comes_from_history(
    room, member, member_key, other_key, connect, hubs
):
    sender = await connect(room, key=member_key)
    await sender.send(SAMPLE)
    await sender.receive_type("positions")
    await sender.disconnect()
    await history_writer().flush()
    await hubs.close()
    late = await connect(room, key=other_key)
    (position,) = late.snapshot["positions"]
    assert (position["member"], position["ts"], position["heading"]) == (
        member.pk, SAMPLE["ts"], 270.0)


async def test_presence_follows_connections(room, member, member_key, other_key, connect):
    async def presence_of(client, member_id):
        while True:
            frame = await client.receive_type("presence")
            if frame["member"]["id"] == member_id:
                return frame["online"], frame["member"]["online"]

    watcher = await connect(room, key=other_key)
    client = await connect(room, key=member_key)
    assert await presence_of(watcher, member.pk) == (True, True)
    await client.disconnect()
    assert await presence_of(watcher, member.pk) == (False, False)


async def test_ping_is_answered(room, member_key, connect):
    client = await connect(room, key=member_key)
    await client.send({"type": "ping"})
    assert isinstance((await client.receive_type("pong"))["now"], int)


async def test_session_member_connects_without_key(room, owner, connect, client):
    # A browser session bound by the join flow authenticates the socket.
    from importlib import import_module

    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store["members"] = {room.public_id: owner.pk}
    await database_sync_to_async(store.save)()
    cookie = f"{settings.SESSION_COOKIE_NAME}={store.session_key}".encode()
    ws = await connect(room, headers=[(b"cookie", cookie),
                                      (b"origin", b"http://127.0.0.1"),
                                      (b"host", b"127.0.0.1")])
    assert ws.snapshot["you"] == owner.pk


async def test_foreign_origin_is_refused(room, member_key, hubs):
    # A page on another site cannot open a socket, even with a key in the URL: the
    # handshake itself is denied (geoshare.asgi.origin_allowed; more in test_asgi.py).
    client = Client(f"/ws/rooms/{room.public_id}/?key={member_key}",
                    headers=[(b"origin", b"https://evil.example")])
    connected, _ = await client.connect()
    assert connected is False


async def test_new_device_key_closes_sockets_of_old_key(room, member, member_key, connect):
    from maps.services import member_rotate_key

    client = await connect(room, key=member_key)
    new_key = await database_sync_to_async(member_rotate_key)(member=member)
    assert await client.close_code() == 4401
    again = await connect(room, key=new_key)
    assert again.snapshot["you"] == member.pk


async def test_a_key_socket_names_its_device_and_charging_survives_a_hub_restart(
    room, member, other_key, connect, hubs
):
    _device, key = await database_sync_to_async(device_create)(
        member=member, name="Ana's Pixel")
    watcher = await connect(room, key=other_key)
    sender = await connect(room, key=key)
    # The frame cannot name a device: the key does.
    await sender.send({**SAMPLE, "charging": True, "device": "Bo's phone"})
    frame = await watcher.receive_type("positions")
    check_frame(frame)
    (position,) = frame["positions"]
    assert (position["device"], position["charging"]) == ("Ana's Pixel", True)
    await sender.disconnect()
    await history_writer().flush()
    row = await Position.objects.aget(member=member)
    live = await LivePosition.objects.aget(member=member)
    assert (row.device, row.charging, live.device, live.charging) == (
        "Ana's Pixel", True, "Ana's Pixel", True)
    await hubs.close()  # the next connection loads the room from the database
    late = await connect(room, key=other_key)
    check_frame(late.snapshot)
    (position,) = late.snapshot["positions"]
    assert (position["device"], position["charging"]) == ("Ana's Pixel", True)


async def test_charging_that_is_not_a_boolean_is_refused_on_the_socket(
    room, member_key, connect
):
    sender = await connect(room, key=member_key)
    await sender.send({**SAMPLE, "charging": "yes"})
    error = await sender.receive_type("error")
    assert (error["code"], error["field"]) == ("invalid", "charging")


async def test_sockets_joining_in_one_tick_share_one_encoding_of_the_room(
    room, owner, member, member_key, other, other_key, viewer_key, connect, settings,
    monkeypatch, hubs,
):
    """A reconnect storm encodes the room's state once per tick, not once per socket;
    each socket still learns who it is, and nothing taken away is handed out after."""
    from maps.domain.room_state import RoomState

    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send(SAMPLE)
    await watcher.receive_type("positions")
    settings.GEOSHARE = {**settings.GEOSHARE, "TICK_MS": 60_000}  # one long tick now
    watcher = await connect(room, key=other_key)
    assert [p["member"] for p in watcher.snapshot["positions"]] == [member.pk]
    encoded = []
    original = RoomState.snapshot_parts

    def counted(state):
        encoded.append(1)
        return original(state)

    monkeypatch.setattr(RoomState, "snapshot_parts", counted)
    joiners = [await connect(room, key=key) for key in (viewer_key, other_key, other_key)]
    assert len(encoded) <= 1  # none: the watcher's, a moment ago in this tick, served
    before_stop = len(encoded)
    for joiner in joiners:
        check_frame(joiner.snapshot)
        assert joiner.snapshot["positions"] == watcher.snapshot["positions"]
        assert {m["id"] for m in joiner.snapshot["members"]} >= {owner.pk, member.pk}
    assert joiners[1].snapshot["you"] == other.pk
    assert joiners[0].snapshot["you"] not in (other.pk, member.pk)
    # The member stops sharing: the next socket's snapshot is encoded again, without it.
    removals = hubs.get(room.pk).state.removals
    await sender.send({"type": "stop"})
    # The hub hears of it (the frame itself waits for the tick).
    await until(lambda: hubs.get(room.pk).state.removals > removals)
    late = await connect(room, key=other_key)
    assert late.snapshot["positions"] == []
    assert len(encoded) == before_stop + 1


async def test_hubs_that_start_together_load_their_rooms_in_one_query(hubs):
    # A restart's reconnect storm starts many hubs at once; their rooms are read
    # together (maps.realtime.hub.live_states), each hub still gets its own room.
    from maps.realtime.hub import live_states
    from maps.services import room_create

    def rooms():
        return [room_create(name=f"Room {i}", owner_name=f"Owner {i}") for i in range(3)]

    made = await database_sync_to_async(rooms)()
    before = live_states.calls
    started = await asyncio.gather(*(
        hubs.hub_for({"pk": room.pk, "public_id": room.public_id, "name": room.name})
        for room, _owner in made))
    assert live_states.calls - before == 1
    assert [list(hub.state.members) for hub in started] == [
        [owner.pk] for _room, owner in made]


async def test_presence_goes_to_other_hubs_only_when_there_are_any(
    hubs, room, member, member_key, other, other_key, connect
):
    # On the in-memory layer the room's group holds this process's hub alone: a socket
    # opening sends no presence the hub would only read back and ignore. Once another
    # hub is in the group (a peer, as on Redis), it hears who came online.
    from channels.layers import get_channel_layer

    from maps.protocol.events import room_group

    layer = get_channel_layer()
    sent = []
    original = layer.group_send

    async def counted(group, message):
        sent.append(message["type"])
        await original(group, message)

    layer.group_send = counted
    try:
        await connect(room, key=member_key)
        hub = hubs.get(room.pk)
        assert "room.presence" not in sent
        assert layer.channels[hub.channel].qsize() == 0
        peer = await layer.new_channel("hub.")
        await layer.group_add(room_group(room.pk), peer)
        await connect(room, key=other_key)
        heard = await asyncio.wait_for(layer.receive(peer), 2)
        assert (heard["type"], heard["member"], heard["online"]) == (
            "room.presence", other.pk, True)
        assert heard["hub"] == hub.channel
    finally:
        layer.group_send = original


async def test_a_hub_left_without_sockets_retires_after_its_idle_grace(
    room, member_key, connect, hubs
):
    hubs.idle_grace_s = 0  # HubRegistry.idle_grace_s: no 30 s wait
    client = await connect(room, key=member_key)
    hub = hubs.get(room.pk)
    await client.disconnect()
    await until(lambda: hubs.get(room.pk) is None)
    await until(lambda: hub.closed)
