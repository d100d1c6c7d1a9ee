"""Every frame the server sends, and every documented example, has its one shape.

Zulip's ``event_schema.py`` tests are the model: the shapes live in maps.protocol.events; this
checks docs/protocol.md against them, and every frame a real room sends.
"""

import json
import re

import pytest
from channels.layers import get_channel_layer

from maps.protocol import events
from maps.protocol.events import ShapeError, check_frame, check_room_event
from maps.services import member_remove
from tests.servers import ROOT

PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def server_section():
    start = PROTOCOL.index("## Server to client")
    end = PROTOCOL.index("\n## ", start + 1)
    return PROTOCOL[start:end]


def test_every_server_frame_is_documented_and_only_those():
    documented = set(re.findall(r"^### `(\w+)`", server_section(), re.M))
    assert documented == set(events.SERVER_FRAMES)


def test_every_example_in_the_protocol_document_has_its_shape():
    examples = re.findall(r"```json\n(.*?)```", server_section(), re.S)
    kinds = set()
    for text in examples:
        frame = json.loads(text)
        check_frame(frame)
        kinds.add(frame["type"])
    # An example for every frame but pong (shown inline in the document).
    assert kinds >= set(events.SERVER_FRAMES) - {"pong"}


def test_every_watch_frame_is_documented_with_its_shape():
    start = PROTOCOL.index("## Watch-me links")
    section = PROTOCOL[start:PROTOCOL.index("\n## ", start + 1)]
    kinds = set()
    for text in re.findall(r"```json\n(.*?)```", section, re.S):
        frame = json.loads(text)
        events.check_watch_frame(frame)
        kinds.add(frame["type"])
    assert kinds == set(events.WATCH_FRAMES) - {"error", "pong"}
    with pytest.raises(ShapeError):
        events.check_watch_frame({"type": "presence", "member": {}, "online": True})
    with pytest.raises(ShapeError):
        events.check_watch_frame({"type": "positions", "positions": [
            {"member": 1, "lat": 1, "lon": 1, "seen": 1, "battery": 40}]})


def test_the_checker_refuses_wrong_shapes():
    good = events.positions([{"member": 1, "lat": 1.0, "lon": 2, "ts": 5, "seen": 6}])
    check_frame(good)
    for bad in (
        {**good, "extra": 1},
        {"type": "positions"},
        events.positions([{"member": 1, "lat": "1", "lon": 2, "ts": 5, "seen": 6}]),
        events.positions([{"member": 1, "lat": 1, "lon": 2, "ts": 5.5, "seen": 6}]),
        events.error("nope", "x"),
        {"type": "teleport"},
    ):
        with pytest.raises(ShapeError):
            check_frame(bad)


def test_every_room_event_builder_has_its_shape():
    position = {"member": 1, "lat": 1.0, "lon": 2.0, "ts": 5, "seen": 6}
    info = {"id": 1, "name": "Ana", "color": "#000000", "role": "member"}
    built = [
        events.room_fix(position),
        events.room_stop(1, 5), events.room_member(info),
        events.room_share(1, None), events.room_share(1, 5), events.room_unwatch(3),
        events.room_kick(1), events.room_rekey(1, 2), events.room_deleted(),
        events.room_retention(5), events.room_presence("hub.a", 1, True),
        events.room_beat("hub.a", [1]), events.room_hello("hub.a"),
        events.room_sync("hub.a", [1], [position], [[1, 5]]),
        events.room_places([{"id": 3, "name": "School", "lat": 46.0, "lon": 14.5,
                             "radius": 100.0, "created_by": None}]),
        events.room_place_event(1, 3, "enter", 5), events.room_visibility("own"),
    ]
    assert {e["type"] for e in built} == set(events.ROOM_EVENTS)
    for event in built:
        check_room_event(event)


@pytest.mark.django_db(transaction=True)
async def test_every_frame_a_room_sends_has_its_shape(
    room, member, member_key, other, other_key, viewer_key, connect, monkeypatch
):
    sent_events = []
    layer = get_channel_layer()
    real_group_send = layer.group_send

    async def recording_group_send(group, message):
        sent_events.append(message)
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", recording_group_send)
    # Another process's hub in the room (as on Redis): the hubs' own events (hello,
    # presence) go out only when some other hub can hear them.
    await layer.group_add(events.room_group(room.pk), await layer.new_channel("hub."))
    watcher = await connect(room, key=viewer_key)
    sender = await connect(room, key=member_key)
    bo = await connect(room, key=other_key)
    await sender.send({"type": "position", "lat": 46.05, "lon": 14.5, "accuracy": 8,
                       "altitude": 295, "speed": 1.3, "heading": 270, "battery": 81})
    await bo.send({"type": "position", "lat": 46.0, "lon": 14.0})
    await sender.send({"type": "ping"})
    await sender.send({"type": "position", "lat": 99, "lon": 0})
    await sender.send({"type": "stop"})
    await watcher.send({"type": "position", "lat": 1, "lon": 1})
    from channels.db import database_sync_to_async

    await watcher.receive_type("stopped")
    await database_sync_to_async(member_remove)(member=other)
    await watcher.receive_type("removed")
    frames = [watcher.snapshot, sender.snapshot]
    # Everything sent before a last ping's pong, which comes after it on the socket
    # (the sender pinged once already).
    for client, pongs in ((watcher, 1), (sender, 2)):
        await client.send({"type": "ping"})
        while pongs:
            frames.append(await client.receive())
            pongs -= frames[-1]["type"] == "pong"
    for frame in frames:
        check_frame(frame)
    assert {f["type"] for f in frames} >= {"snapshot", "positions", "presence",
                                           "stopped", "removed", "error", "pong"}
    for event in sent_events:
        check_room_event(event)
    assert {e["type"] for e in sent_events} >= {"room.fix", "room.stop", "room.kick",
                                                "room.presence", "room.hello"}
