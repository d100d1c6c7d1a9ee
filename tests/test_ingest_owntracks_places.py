"""Places at the OwnTracks door: a phone's own ``transition`` is the server's event,
never a second one; the room's places go to phones as ``setWaypoints``; a phone's
``waypoints`` become places."""

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from maps.models import Place, PlaceEvent
from maps.services import place_create, place_update
from tests import test_ingest
from tests.phone_payloads import T, owntracks_location
from tests.test_ingest import basic

# The door's fixtures: a room of keyed people, and viewer sockets.
party = test_ingest.party
watch = test_ingest.watch

db_async = pytest.mark.django_db(transaction=True)
LAT, LON = 45.2735, 13.7142


async def post(message, key):
    return await AsyncClient().post("/ingest/owntracks/", data=json.dumps(message),
                                    content_type="application/json", headers=basic(key))


def transition(event, tst, **fields):
    return {"_type": "transition", "wtst": T - 1000, "lat": LAT, "lon": LON, "tst": tst,
            "acc": 10, "tid": "an", "event": event, "desc": "Harbour", "t": "c",
            **fields}


@pytest.fixture
def harbour(party):
    return place_create(member=party.ana, values={"name": "Harbour", "lat": LAT,
                                                  "lon": LON, "radius": 100.0})


async def events():
    return [(e.kind, int(e.device_time.timestamp()))
            async for e in PlaceEvent.objects.order_by("device_time", "kind")]


async def place_event_frames(viewer, count, timeout=3):
    """The next ``count`` place_event frames; TimeoutError when they do not come.

    receive_nothing, not a receive timeout: a timeout cancels the application."""
    found = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(found) < count:
        left = deadline - loop.time()
        if left <= 0 or await viewer.communicator.receive_nothing(timeout=left):
            raise TimeoutError(f"{len(found)} of {count} place events came")
        frame = await viewer.communicator.receive_json_from()
        if frame["type"] == "place_event":
            found.append(frame)
    return found


async def place_events_before_marker(viewer, party):
    """Post a fix of Bo's, far from every place, and return the ``place_event`` frames
    the viewer gets before Bo's ``positions`` frame: the later message an absence is
    proved by (a tick lists place events before positions; a phone's own transition
    is announced before its answer)."""
    response = await post(owntracks_location(lat=45.29, tst=T + 3), party.bo_key)
    assert response.status_code == 200
    found = []
    while True:
        frame = await viewer.communicator.receive_json_from(timeout=3)
        if frame["type"] == "place_event":
            found.append(frame)
        elif frame["type"] == "positions" and any(
                p["member"] == party.bo.pk for p in frame["positions"]):
            return found


@db_async
async def test_transition_after_the_servers_own_event_is_not_a_second_one(
        party, harbour, watch):
    # Bo, a member: a viewer sees no place events where history is for members.
    viewer = await watch(party.room, party.bo_key)
    assert (await post(owntracks_location(lat=45.29, tst=T - 60), party.ana_key)
            ).status_code == 200
    await post(owntracks_location(tst=T), party.ana_key)  # inside: the server's enter
    (frame,) = await place_event_frames(viewer, 1)
    assert (frame["kind"], frame["ts"], frame["place"]) == ("enter", T * 1000, harbour.pk)
    assert (await post(transition("enter", T + 2), party.ana_key)).status_code == 200
    assert await events() == [("enter", T)]
    assert await place_events_before_marker(viewer, party) == []


@db_async
async def test_servers_fix_after_the_phones_transition_is_not_a_second_one(
        party, harbour, watch):
    # Bo, a member: a viewer sees no place events where history is for members.
    viewer = await watch(party.room, party.bo_key)
    await post(transition("enter", T), party.ana_key)
    (frame,) = await place_event_frames(viewer, 1)
    assert (frame["kind"], frame["ts"], frame["member"]) == ("enter", T * 1000,
                                                             party.ana.pk)
    await post(owntracks_location(tst=T + 5), party.ana_key)
    await post(transition("leave", T + 100, desc="harbour"), party.ana_key)
    await post(owntracks_location(lat=45.29, tst=T + 110), party.ana_key)
    (frame,) = await place_event_frames(viewer, 1)
    assert (frame["kind"], frame["ts"]) == ("leave", (T + 100) * 1000)
    assert await events() == [("enter", T), ("leave", T + 100)]
    # The same transition again (a retried upload) changes nothing.
    await post(transition("leave", T + 100), party.ana_key)
    assert await events() == [("enter", T), ("leave", T + 100)]


@db_async
async def test_transition_found_by_region_id_and_unknown_regions_ignored(party, harbour):
    await post(transition("enter", T, desc="Renamed on the phone",
                          rid=f"geoshare-{harbour.pk}"), party.ana_key)
    await post(transition("enter", T + 50, desc="Somewhere else", rid="x1"),
               party.bo_key)
    assert await events() == [("enter", T)]


@db_async
async def test_answer_carries_set_waypoints_when_places_changed(party, harbour):
    first = (await post(owntracks_location(), party.ana_key)).json()
    (command,) = [m for m in first if m["_type"] == "cmd"]
    assert command["action"] == "setWaypoints"
    assert command["waypoints"]["_type"] == "waypoints"
    (waypoint,) = command["waypoints"]["waypoints"]
    assert waypoint == {"_type": "waypoint", "desc": "Harbour", "lat": LAT, "lon": LON,
                        "rad": 100, "tst": int(harbour.created.timestamp()),
                        "rid": f"geoshare-{harbour.pk}"}
    again = (await post(owntracks_location(tst=T + 1), party.ana_key)).json()
    assert [m for m in again if m["_type"] == "cmd"] == []
    # Bo's phone has not had them yet.
    bo = (await post(owntracks_location(tst=T + 1), party.bo_key)).json()
    assert [m["action"] for m in bo if m["_type"] == "cmd"] == ["setWaypoints"]
    await database_sync_to_async(place_update)(member=party.ana, place=harbour,
                                               values={"radius": 250.0})
    changed = (await post(owntracks_location(tst=T + 2), party.ana_key)).json()
    (command,) = [m for m in changed if m["_type"] == "cmd"]
    assert command["waypoints"]["waypoints"][0]["rad"] == 250


@db_async
async def test_places_are_asked_of_the_database_only_when_they_may_have_changed(
        party, harbour, monkeypatch):
    """Posts after the phone got the places read no places (the key cache's room says
    nothing changed); a change is seen at the next post."""
    from maps.ingest import views

    asked = []
    real = views.places_for_device

    def counting(*, device):
        asked.append(device.pk)
        return real(device=device)

    monkeypatch.setattr(views, "places_for_device", counting)
    await post(owntracks_location(), party.ana_key)
    assert len(asked) == 1
    for tst in (T + 1, T + 2, T + 3):
        answer = (await post(owntracks_location(tst=tst), party.ana_key)).json()
        assert [m for m in answer if m["_type"] == "cmd"] == []
    assert len(asked) == 1
    await database_sync_to_async(place_update)(member=party.ana, place=harbour,
                                               values={"radius": 250.0})
    changed = (await post(owntracks_location(tst=T + 4), party.ana_key)).json()
    assert [m["action"] for m in changed if m["_type"] == "cmd"] == ["setWaypoints"]
    assert len(asked) == 2


@db_async
async def test_phone_waypoints_become_places_once(party):
    export = {"_type": "waypoints", "_creator": "owntracks", "waypoints": [
        {"_type": "waypoint", "desc": "Home", "lat": "45.1", "lon": "13.1", "rad": "50",
         "tst": T},
        {"_type": "waypoint", "desc": "Beacon", "uuid": "x", "tst": T},
        {"_type": "waypoint", "desc": "Tiny", "lat": 45.2, "lon": 13.2, "rad": 5,
         "tst": T},
    ]}
    assert (await post(export, party.ana_key)).status_code == 200
    await post(export, party.bo_key)
    await post({"_type": "waypoint", "desc": "home", "lat": 1, "lon": 1, "rad": 80,
                "tst": T}, party.bo_key)
    made = [(p.name, p.lat, p.radius, p.created_by_id)
            async for p in Place.objects.order_by("name")]
    assert made == [("Home", 45.1, 50.0, party.ana.pk), ("Tiny", 45.2, 25.0, party.ana.pk)]


YEAR_2100 = 4_102_444_800  # 2100-01-01T00:00:00Z, epoch seconds


@db_async
@pytest.mark.parametrize("when", ["2100", "11 minutes ahead", "1970"])
async def test_transition_from_the_future_or_the_past_is_refused_as_a_location_is(
        party, harbour, when):
    tst = {"2100": YEAR_2100, "11 minutes ahead": int(time.time()) + 11 * 60,
           "1970": 1}[when]
    location = await post(owntracks_location(tst=tst), party.ana_key)
    crossing = await post(transition("enter", tst), party.ana_key)
    assert (crossing.status_code, crossing.json()) == (location.status_code,
                                                       location.json())
    assert (crossing.status_code, crossing.json()["field"]) == (400, "tst")
    assert await events() == []


@db_async
async def test_transition_from_2100_does_not_block_a_real_crossing(party, harbour, watch):
    viewer = await watch(party.room, party.bo_key)
    assert (await post(transition("enter", YEAR_2100), party.ana_key)).status_code == 400
    assert (await post(transition("leave", YEAR_2100 + 60), party.ana_key)
            ).status_code == 400
    assert (await post(transition("enter", T), party.ana_key)).status_code == 200
    (frame,) = await place_event_frames(viewer, 1)
    assert (frame["kind"], frame["ts"]) == ("enter", T * 1000)
    assert await events() == [("enter", T)]
