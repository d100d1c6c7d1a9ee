"""Place events obey the history's visibility and retention (issue 25, item 2).

Over HTTP (``GET /api/rooms/<room>/events``, :mod:`maps.web.place_views`), on the live
``place_event`` frames (:mod:`maps.realtime.hub`), and where they are stored
(:func:`maps.storage.history.evaluate_places`): whoever may not see Ana's history does
not learn when she arrived at or left a place either.
"""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from maps.access.identity import member_ref
from maps.domain.choices import HistoryVisibility
from maps.domain.fixes import now_ms
from maps.domain.room_state import RoomState, tick_for
from maps.models import PlaceEvent, PlaceState
from maps.protocol import events
from maps.services import (
    place_create,
    place_transition_record,
    room_set_history_visibility,
    room_set_retention,
    watch_link_create,
)
from maps.storage.history import history_writer, write_batch
from tests.conftest import Client as SocketClient
from tests.conftest import position_of
from tests.test_api_views import as_session, bearer
from tests.test_place_views import LAT, LON, SCHOOL, walk

EVERYONE, MEMBERS, OWN = (HistoryVisibility.EVERYONE, HistoryVisibility.MEMBERS,
                          HistoryVisibility.OWN)


@pytest.fixture
def school(member):
    return place_create(member=member, values={**SCHOOL, "radius": 100.0})


def recent():
    """A device time an hour ago: inside the room's retention."""
    return now_ms() - 3_600_000


@pytest.fixture
def crossings(room, member, other, school):
    """Ana and Bo each arrive at and leave School, an hour ago."""
    start = recent()
    write_batch(walk(member, [500, 0, 600], start=start)
                + walk(other, [500, 0, 600], start=start + 1_000))
    assert PlaceEvent.objects.count() == 4
    return start


def events_of(room, client_kwargs):
    client, extra = client_kwargs
    return client.get(f"/api/rooms/{room.public_id}/events", **extra)


def history_of(room, client_kwargs):
    client, extra = client_kwargs
    return client.get(f"/api/rooms/{room.public_id}/history", **extra)


@pytest.fixture
def callers(owner, member_key, other_key, viewer_key):
    """Each persona's way in: the owner's browser session, the others' device keys."""
    return {"owner": (as_session(owner), {}),
            "member": (Client(), bearer(member_key)),
            "other": (Client(), bearer(other_key)),
            "viewer": (Client(), bearer(viewer_key))}


# -- the API ----------------------------------------------------------------------------

# visibility -> caller -> whose events they are given ("ana", "bo"), or 403.
EXPECTED = {
    EVERYONE: {"owner": {"ana", "bo"}, "member": {"ana", "bo"},
               "other": {"ana", "bo"}, "viewer": {"ana", "bo"}},
    MEMBERS: {"owner": {"ana", "bo"}, "member": {"ana", "bo"},
              "other": {"ana", "bo"}, "viewer": 403},
    OWN: {"owner": set(), "member": {"ana"}, "other": {"bo"}, "viewer": set()},
}


@pytest.mark.parametrize("visibility", [EVERYONE, MEMBERS, OWN])
@pytest.mark.parametrize("caller", ["owner", "member", "other", "viewer"])
def test_events_api_follows_the_history_visibility(room, member, other, callers,
                                                    crossings, visibility, caller):
    room_set_history_visibility(room=room, visibility=visibility)
    response = events_of(room, callers[caller])
    expected = EXPECTED[visibility][caller]
    # The same answer as the history API gives the same caller.
    assert response.status_code == history_of(room, callers[caller]).status_code
    if expected == 403:
        assert response.status_code == 403
        assert "error" in response.json()
        return
    assert response.status_code == 200
    names = {member.pk: "ana", other.pk: "bo"}
    found = response.json()["events"]
    assert {names[e["member"]] for e in found} == expected
    assert len(found) == 2 * len(expected)  # an enter and a leave each


def test_the_visibility_is_read_at_request_time(room, member, member_key, other,
                                                crossings):
    assert {e["member"] for e in events_of(room, (Client(), bearer(member_key)))
            .json()["events"]} == {member.pk, other.pk}
    room_set_history_visibility(room=room, visibility=OWN)
    assert {e["member"] for e in events_of(room, (Client(), bearer(member_key)))
            .json()["events"]} == {member.pk}


def test_events_past_the_retention_floor_are_not_listed_before_the_prune(
        room, member, member_key, school):
    now = now_ms()
    days = room.retention_days
    # One crossing by device time before the floor, one stored before it (a phone's
    # late upload of an old day is stored now: the device time decides), one within.
    write_batch(walk(member, [500, 0, 600], start=now - (days + 1) * 86_400_000))
    write_batch(walk(member, [500, 0, 600], start=now - 3_600_000))
    recent_enter = PlaceEvent.objects.filter(kind="enter").order_by("-device_time")[0]
    PlaceEvent.objects.filter(pk=recent_enter.pk).update(
        created=timezone.now() - timedelta(days=days, hours=1))
    assert PlaceEvent.objects.count() == 4  # nothing pruned yet
    found = events_of(room, (Client(), bearer(member_key))).json()["events"]
    assert [(e["kind"], e["ts"]) for e in found] == [("leave", now - 3_600_000 + 20_000)]


# -- a live-only room -------------------------------------------------------------------


def test_a_live_only_room_stores_no_events_and_lists_none(room, member, member_key,
                                                          school):
    room_set_retention(room=room, days=0)
    found = []
    start = recent()
    write_batch(walk(member, [500, 0, 10], start=start), place_events=found)
    # Announced live (the frames), never stored.
    assert [f[3] for f in found] == ["enter"]
    assert PlaceEvent.objects.count() == 0
    # Where Ana is now is kept, so the same arrival is not reported again...
    assert PlaceState.objects.get(member=member, place=school).inside
    again = []
    write_batch(walk(member, [0, 5], start=start + 100_000), place_events=again)
    assert again == []
    # ... and her departure is.
    write_batch(walk(member, [600], start=start + 200_000), place_events=again)
    assert [f[3] for f in again] == ["leave"]
    assert PlaceEvent.objects.count() == 0
    response = events_of(room, (Client(), bearer(member_key)))
    assert response.status_code == 200 and response.json()["events"] == []


def test_a_live_only_room_stores_no_phone_reported_transition(room, member, school):
    room_set_retention(room=room, days=0)
    created = place_transition_record(ref=member_ref(member), rid="", desc="School", kind="enter",
                                      ts=recent())
    assert [c[3] for c in created] == ["enter"]
    assert PlaceEvent.objects.count() == 0
    assert PlaceState.objects.get(member=member, place=school).inside


# -- the live frames ---------------------------------------------------------------------


def test_each_socket_gets_the_events_its_reach_allows():
    """The pure part: which frames of a tick a socket of each reach is given."""
    state = RoomState({"public_id": "r", "name": "R", "tick_ms": 100,
                       "stale_after_ms": 1, "trail_ms": 1})
    state.load({"members": [
        {"id": i, "info": {"id": i, "name": n, "color": "#000", "role": role},
         "last_seen": None, "stopped_at": None, "share": "off", "sharing_until": None}
        for i, n, role in [(1, "Ana", "member"), (2, "Bo", "member"),
                           (3, "Vi", "viewer")]], "positions": [], "places": [],
        "visibility": "own"})
    state.apply_place_event(1, 9, "enter", 5)
    state.apply_stop(2, 6)
    frames = state.flush()
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "place_event"
    assert [state.event_reach(m) for m in (1, 2, 3, 4)] == ["own", "own", "own", "none"]
    assert [kinds[i] for i in tick_for(frames, "own", 1)] == kinds
    assert "place_event" not in [kinds[i] for i in tick_for(frames, "own", 2)]
    state.apply_visibility("members")
    assert [state.event_reach(m) for m in (1, 2, 3)] == ["everyone", "everyone", "none"]
    assert "place_event" not in [kinds[i] for i in tick_for(frames, "none", 3)]


async def enter(socket, lat=LAT, lon=LON):
    """Send a position from ``socket`` and commit it: its crossings are announced."""
    await socket.send({"type": "position", "lat": lat, "lon": lon, "accuracy": 5})
    await socket.handled()
    await history_writer().flush()


def place_events_in(frames):
    return [(f["member"], f["kind"]) for f in frames if f["type"] == "place_event"]


async def open_watch(token):
    client = SocketClient(f"/ws/watch/{token}/")
    connected, _ = await client.connect()
    assert connected
    await client.receive_type("snapshot")
    return client


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("visibility", [MEMBERS, OWN])
async def test_place_event_frames_follow_the_visibility(room, member, member_key,
                                                        other, other_key, viewer_key,
                                                        connect, visibility):
    await database_sync_to_async(place_create)(member=member,
                                               values={**SCHOOL, "radius": 100.0})
    await database_sync_to_async(room_set_history_visibility)(room=room,
                                                              visibility=visibility)
    ana = await connect(room, key=member_key)
    bo = await connect(room, key=other_key)
    vi = await connect(room, key=viewer_key)
    await ana.send({"type": "share", "until": None})
    await ana.handled()
    _link, token = await database_sync_to_async(watch_link_create)(member=member,
                                                                   minutes=60)
    watch = await open_watch(token)
    await enter(ana)
    # Bo's position afterwards is the later message every socket gets: whatever
    # place_event a socket was going to get came before it.
    await bo.send({"type": "position", "lat": LAT + 1, "lon": LON, "accuracy": 5})
    seen = {name: await socket.frames_until(position_of(other.pk), timeout=5)
            for name, socket in (("ana", ana), ("bo", bo), ("vi", vi))}
    for frames in seen.values():
        for frame in frames:
            events.check_frame(frame)
    ana_event = [(member.pk, "enter")]
    assert place_events_in(seen["ana"]) == ana_event
    assert place_events_in(seen["bo"]) == (ana_event if visibility == MEMBERS else [])
    assert place_events_in(seen["vi"]) == []
    # The watch link sees Ana's position after her arrival, and no place_event.
    await enter(ana, lat=LAT + 0.0001)
    watched = await watch.frames_until(
        lambda f: f["type"] == "positions"
        and any(abs(p["lat"] - (LAT + 0.0001)) < 1e-9 for p in f["positions"]),
        timeout=5)
    assert place_events_in(watched) == []
    await watch.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_change_of_visibility_reaches_the_live_frames_at_once(
        room, member, member_key, other, other_key, connect, hubs):
    await database_sync_to_async(place_create)(member=member,
                                               values={**SCHOOL, "radius": 100.0})
    ana = await connect(room, key=member_key)
    bo = await connect(room, key=other_key)
    await enter(ana)
    await bo.send({"type": "position", "lat": LAT + 1, "lon": LON, "accuracy": 5})
    assert place_events_in(await bo.frames_until(position_of(other.pk), timeout=5)) == [
        (member.pk, "enter")]
    await database_sync_to_async(room_set_history_visibility)(room=room,
                                                              visibility=OWN)
    assert hubs.get(room.pk).state.visibility == OWN  # told before the service returned
    await enter(ana, lat=LAT + 0.01)  # about 1.1 km north: she left
    await bo.send({"type": "position", "lat": LAT + 1.1, "lon": LON, "accuracy": 5})
    assert place_events_in(await bo.frames_until(position_of(other.pk), timeout=5)) == []
    assert place_events_in(await ana.frames_until(position_of(other.pk), timeout=5)) == [
        (member.pk, "leave")]
