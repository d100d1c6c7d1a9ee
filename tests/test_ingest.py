"""The phone-app doors: OwnTracks, OsmAnd / Traccar Client, GPSLogger, "Connect a phone".

Payloads are in each app's own format (docs/phones.md gives the sources). What was
stored is read after flushing the history writer of the test's event loop; what was
broadcast is read by a viewer's WebSocket on the room.
"""

import asyncio
import base64
import json
import re
import sqlite3
import time
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient, Client

from geoshare.asgi import application
from maps.access.identity import member_ref
from maps.models import Position, Role
from maps.protocol import events
from maps.realtime.hub import registry
from maps.services import (
    amember_stop_sharing,
    device_create,
    member_create,
    room_create,
)
from maps.storage.history import history_writer
from maps.storage.selectors import member_for_key
from tests.phone_payloads import (
    T,
    gpslogger_params,
    hauk_create_form,
    hauk_post_form,
    overland_feature,
    owntracks_location,
    traccar_json,
)
from tests.servers import Project, Uvicorn, gpx_file, until

db_async = pytest.mark.django_db(transaction=True)


# -- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def party(transactional_db):
    """A room with an owner, two members and a viewer with keys; a stranger elsewhere."""
    room, owner = room_create(name="Ski trip", owner_name="Olga")
    ana, ana_key = member_create(room=room, name="Ana", role=Role.MEMBER)
    bo, bo_key = member_create(room=room, name="Bo", role=Role.MEMBER)
    vera, vera_key = member_create(room=room, name="Vera", role=Role.VIEWER)
    elsewhere, _ = room_create(name="Elsewhere", owner_name="Eve")
    sam, sam_key = member_create(room=elsewhere, name="Sam")
    return SimpleNamespace(room=room, owner=owner, ana=ana, ana_key=ana_key, bo=bo,
                           bo_key=bo_key, vera=vera, vera_key=vera_key, sam=sam,
                           sam_key=sam_key)


class Watcher:
    """A viewer's WebSocket on a room: reads the frames the room broadcasts."""

    def __init__(self, room, key):
        self.communicator = WebsocketCommunicator(
            application, f"/ws/rooms/{room.public_id}/?key={key}"
        )
        self.room_pk = room.pk

    async def start(self):
        connected, _ = await self.communicator.connect()
        assert connected
        self.snapshot = await self.communicator.receive_json_from(timeout=2)
        assert self.snapshot["type"] == "snapshot"
        await self.drain()
        return self

    async def drain(self):
        """Read and drop frames up to the pong of a ping (the socket's own are sent)."""
        await self.communicator.send_json_to({"type": "ping"})
        while (await self.communicator.receive_json_from(timeout=2))["type"] != "pong":
            pass

    async def positions(self, timeout=2):
        """Return the ``positions[]`` of the next ``positions`` frame."""
        while True:
            frame = await self.communicator.receive_json_from(timeout=timeout)
            if frame["type"] == "positions":
                return frame["positions"]

    async def quiet(self, timeout=2):
        """Return whether nothing (positions, a stop, a removal) was broadcast before a
        later event, sent to the room's group after what the test did: another hub's word
        that the room's owner is online, then offline again, which the viewer sees as
        ``presence`` frames.

        Two words, the second sent once the first is seen: a tick lists ``presence``
        before ``positions`` (RoomState.flush), so the first may share a tick with what
        the test did; the second then comes in a later tick than both.
        """
        owner = next(m["id"] for m in self.snapshot["members"] if m["role"] == "owner")
        group, hub = events.room_group(self.room_pk), "hub.quiet-marker"
        layer = get_channel_layer()
        quiet = True
        for online in (True, False):
            await layer.group_send(group, events.room_presence(hub, owner, online))
            while True:
                frame = await self.communicator.receive_json_from(timeout=timeout)
                if frame["type"] in ("positions", "stopped", "removed"):
                    quiet = False
                elif (frame["type"] == "presence" and frame["member"]["id"] == owner
                        and frame["member"]["online"] is online):
                    break
        return quiet


@pytest.fixture
async def watch():
    """Open viewer sockets (``await watch(room, key)``); close them and the hubs after."""
    watchers = []

    async def open_watcher(room, key):
        watcher = await Watcher(room, key).start()
        watchers.append(watcher)
        return watcher

    yield open_watcher
    for watcher in watchers:
        await watcher.communicator.disconnect()
    await history_writer().flush()
    await registry().close()
    await get_channel_layer().flush()


async def stored(member):
    """Return the member's stored positions, oldest device time first."""
    await history_writer().flush()
    query = Position.objects.filter(member_id=member.pk).order_by("device_time", "id")
    return [p async for p in query]


def basic(key, user="ana"):
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def post_owntracks(client, message, key, **kwargs):
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    kwargs.setdefault("content_type", "application/json")
    return await client.post("/ingest/owntracks/", data=body, headers=basic(key), **kwargs)


# -- OwnTracks endpoint -------------------------------------------------------------------------


@db_async
async def test_a_watcher_is_not_quiet_when_a_position_was_broadcast(party, watch):
    viewer = await watch(party.room, party.vera_key)
    response = await AsyncClient().get("/ingest/osmand/", {
        "id": party.ana_key, "lat": "45.3", "lon": "13.8", "timestamp": str(T)})
    assert response.status_code == 200
    assert not await viewer.quiet()
    assert await viewer.quiet()  # and quiet again once that frame is read


@db_async
async def test_owntracks_location_is_stored_broadcast_and_answered(party, watch):
    viewer = await watch(party.room, party.vera_key)
    client = AsyncClient()
    response = await post_owntracks(client, owntracks_location(), party.ana_key)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == []  # nobody else shares yet

    (position,) = await viewer.positions()
    assert position["member"] == party.ana.pk
    assert position["ts"] == T * 1000
    assert position["speed"] == pytest.approx(10.0)
    assert (position["lat"], position["heading"], position["battery"]) == (45.2735, 270, 81)

    (row,) = await stored(party.ana)
    assert (row.lat, row.lon, row.accuracy, row.altitude) == (45.2735, 13.7142, 8, 211)
    assert row.speed == pytest.approx(10.0)
    assert int(row.device_time.timestamp()) == T


@db_async
async def test_owntracks_key_in_the_query_string(party, watch):
    client = AsyncClient()
    response = await client.post(f"/ingest/owntracks/?key={party.ana_key}",
                                 data=json.dumps(owntracks_location()),
                                 content_type="application/json")
    assert response.status_code == 200
    assert len(await stored(party.ana)) == 1


@db_async
async def test_owntracks_answer_shows_the_other_sharing_members_as_friends(party, watch):
    client = AsyncClient()
    bo_point = {"id": party.bo_key, "lat": "45.3", "lon": "13.8", "timestamp": str(T),
                "speed": "10", "bearing": "45.4", "accuracy": "12.6", "altitude": "99.5",
                "batt": "55.5"}
    assert (await client.get("/ingest/osmand/", bo_point)).status_code == 200
    await history_writer().flush()

    response = await post_owntracks(client, owntracks_location(tst=T + 1), party.ana_key)
    assert response.status_code == 200
    card, location = response.json()
    tid = f"BO{party.bo.pk}"
    assert card == {"_type": "card", "tid": tid, "name": "Bo"}
    assert location == {"_type": "location", "tid": tid, "lat": 45.3, "lon": 13.8,
                        "tst": T, "acc": 13, "alt": 100, "vel": 19, "cog": 45,
                        "batt": 56}  # integers, vel in km/h, as OwnTracks reads them

    # Bo's own answer shows Ana (after the writer's flush), never Bo himself.
    await history_writer().flush()
    answer = await post_owntracks(client, owntracks_location(tst=T + 2), party.bo_key)
    names = [m["name"] for m in answer.json() if m["_type"] == "card"]
    assert names == ["Ana"]


@db_async
async def test_owntracks_answer_leaves_out_members_who_stopped(party, watch):
    client = AsyncClient()
    await client.get("/ingest/osmand/", {"id": party.bo_key, "lat": "45.3", "lon": "13.8",
                                         "timestamp": str(T)})
    await history_writer().flush()
    bo = await database_sync_to_async(lambda: member_for_key(party.bo_key))()
    await amember_stop_sharing(ref=member_ref(bo))
    response = await post_owntracks(client, owntracks_location(), party.ana_key)
    assert response.json() == []


@db_async
@pytest.mark.parametrize("message", [
    {"_type": "transition", "wtst": T - 100, "lat": 45.1, "lon": 13.1, "tst": T,
     "acc": 10, "tid": "an", "event": "enter", "desc": "Home", "t": "c"},
    {"_type": "lwt", "tst": T},
    {"_type": "status", "android": {"hib": 1}},
])
async def test_owntracks_other_types_answer_200_and_move_nothing(party, watch, message):
    # A transition for a region that is no place of the room, and types geoshare does
    # not use (waypoints make places: tests/test_ingest_owntracks_places.py).
    viewer = await watch(party.room, party.vera_key)
    response = await post_owntracks(AsyncClient(), message, party.ana_key)
    assert response.status_code == 200
    assert response.json() == []
    assert await viewer.quiet()
    assert await stored(party.ana) == []


@db_async
async def test_owntracks_empty_body_answers_an_empty_array(party, watch):
    response = await post_owntracks(AsyncClient(), b"", party.ana_key)
    assert response.status_code == 200
    assert response.json() == []


@db_async
async def test_owntracks_encrypted_payload_is_refused_clearly(party, watch):
    response = await post_owntracks(AsyncClient(), {"_type": "encrypted", "data": "abc"},
                                    party.ana_key)
    assert response.status_code == 400
    assert response.json()["field"] == "_type"
    assert "encrypt" in response.json()["error"]


@db_async
async def test_owntracks_encrypted_both_ways_with_the_devices_secret(party, watch):
    import nacl.secret
    import nacl.utils

    from maps.services import device_set_secret

    def seal(secret, message):
        box = nacl.secret.SecretBox(secret.encode()[:32].ljust(32, b"\0"))
        sealed = box.encrypt(json.dumps(message).encode(), nacl.utils.random(24))
        return {"_type": "encrypted", "data": base64.b64encode(bytes(sealed)).decode()}

    def unseal(secret, message):
        box = nacl.secret.SecretBox(secret.encode()[:32].ljust(32, b"\0"))
        return json.loads(box.decrypt(base64.b64decode(message["data"])))

    for person in (party.ana, party.bo):
        device = await database_sync_to_async(lambda p=person: p.devices.get())()
        await database_sync_to_async(device_set_secret)(device=device, secret="s3cret")
    viewer = await watch(party.room, party.vera_key)
    client = AsyncClient()
    response = await post_owntracks(client, seal("s3cret", owntracks_location()),
                                    party.ana_key)
    assert response.status_code == 200
    assert unseal("s3cret", response.json()) == []
    (position,) = await viewer.positions()
    assert position["member"] == party.ana.pk and position["lat"] == 45.2735
    await history_writer().flush()

    answer = await post_owntracks(client, seal("s3cret", owntracks_location(tst=T + 1)),
                                  party.bo_key)
    card, location = unseal("s3cret", answer.json())
    assert card == {"_type": "card", "tid": f"AN{party.ana.pk}", "name": "Ana"}
    assert location["tid"] == card["tid"] and location["vel"] == 36

    wrong = await post_owntracks(client, seal("other", owntracks_location(tst=T + 2)),
                                 party.ana_key)
    assert wrong.status_code == 400 and wrong.json()["field"] == "data"
    assert len(await stored(party.ana)) == 1


@db_async
async def test_owntracks_takes_only_post(party, watch):
    response = await AsyncClient().get(f"/ingest/owntracks/?key={party.ana_key}")
    assert response.status_code == 405


@db_async
async def test_owntracks_unknown_or_revoked_key_is_401(party, watch):
    client = AsyncClient()
    for headers in (basic("not-a-key"), {}):
        response = await client.post("/ingest/owntracks/", headers=headers,
                                     data=json.dumps(owntracks_location()),
                                     content_type="application/json")
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Basic")
    old_key = party.ana_key
    await database_sync_to_async(_rotate)(party.ana)
    response = await post_owntracks(client, owntracks_location(), old_key)
    assert response.status_code == 401
    assert await stored(party.ana) == []


def _rotate(member):
    from maps.services import member_rotate_key

    return member_rotate_key(member=member)


@db_async
async def test_viewer_cannot_publish_through_owntracks(party, watch):
    viewer = await watch(party.room, party.ana_key)
    response = await post_owntracks(AsyncClient(), owntracks_location(), party.vera_key)
    assert response.status_code == 403
    assert "viewer" in response.json()["error"]
    assert await viewer.quiet()
    assert await stored(party.vera) == []


@db_async
@pytest.mark.parametrize("body, content_type, field", [
    (b"garbage", "application/json", "body"),
    (b'{"_type":"location","lat":45.2,"lon":13', "application/json", "body"),
    (b'{"_type":"location","lon":13.7,"tst":%d}' % T, "application/json", "lat"),
    (b'{"_type":"location","lat":"x","lon":13.7,"tst":%d}' % T, "application/json", "lat"),
    (b'{"_type":"location","lat":95,"lon":13.7,"tst":%d}' % T, "application/json", "lat"),
    (b'{"_type":"location","lat":NaN,"lon":13.7,"tst":%d}' % T, "application/json", "body"),
    (b'{"_type":"location","lat":45,"lon":13.7,"tst":%d}' % T, "text/plain", "Content-Type"),
    (b"\xff\xfe{}", "application/json", "body"),
])
async def test_owntracks_bad_input_is_400_and_stores_nothing(party, watch, body,
                                                             content_type, field):
    viewer = await watch(party.room, party.vera_key)
    response = await post_owntracks(AsyncClient(), body, party.ana_key,
                                    content_type=content_type)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"]
    assert await viewer.quiet()
    assert await stored(party.ana) == []


# -- OsmAnd / Traccar Client endpoint --------------------------------------------------------------


@db_async
async def test_osmand_query_get_is_stored_and_broadcast(party, watch):
    viewer = await watch(party.room, party.vera_key)
    params = {"id": party.ana_key, "lat": "45.2735", "lon": "13.7142",
              "timestamp": str(T), "hdop": "4", "altitude": "211", "speed": "20",
              "bearing": "180"}
    response = await AsyncClient().get("/ingest/osmand/", params)
    assert response.status_code == 200
    assert response.content == b""
    (position,) = await viewer.positions()
    assert position["member"] == party.ana.pk
    assert position["speed"] == pytest.approx(20 * 1852 / 3600)
    assert "charging" not in position
    (row,) = await stored(party.ana)
    assert (row.lat, row.heading, row.altitude) == (45.2735, 180, 211)


@db_async
async def test_a_phones_charging_and_device_name_are_stored_and_broadcast(party, watch):
    _device, key = await database_sync_to_async(device_create)(
        member=party.ana, name="Ana's Pixel")
    viewer = await watch(party.room, party.vera_key)
    response = await AsyncClient().get("/ingest/osmand/", {
        "id": key, "lat": "45.2735", "lon": "13.7142", "timestamp": str(T),
        "batt": "62", "charge": "true"})
    assert response.status_code == 200
    (position,) = await viewer.positions()
    assert (position["battery"], position["charging"], position["device"]) == (
        62, True, "Ana's Pixel")
    (row,) = await stored(party.ana)
    assert (row.charging, row.device) == (True, "Ana's Pixel")
    # The member's first device ("Phone") reports too while the Pixel's share runs:
    # answered as usual, neither stored nor shown (one source per share, issue 25).
    response = await AsyncClient().get("/ingest/osmand/", {
        "id": party.ana_key, "lat": "45.2736", "lon": "13.7142",
        "timestamp": str(T + 1), "charge": "false"})
    assert response.status_code == 200
    response = await AsyncClient().get("/ingest/osmand/", {
        "id": key, "lat": "45.2737", "lon": "13.7142", "timestamp": str(T + 2)})
    assert response.status_code == 200
    (position,) = await viewer.positions()
    # Same device as before: its name is not repeated.
    assert (position["lat"], "device" in position) == (45.2737, False)
    assert [row.lat for row in await stored(party.ana)] == [45.2735, 45.2737]


@db_async
async def test_osmand_form_post_is_stored(party, watch):
    body = urlencode({"deviceid": party.ana_key, "location": "45.5,13.5",
                      "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T))})
    response = await AsyncClient().post("/ingest/osmand/", data=body,
                                        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    (row,) = await stored(party.ana)
    assert (row.lat, row.lon, int(row.device_time.timestamp())) == (45.5, 13.5, T)


@db_async
async def test_traccar_client_json_is_stored_and_broadcast(party, watch):
    viewer = await watch(party.room, party.vera_key)
    response = await AsyncClient().post(
        "/ingest/osmand/", data=json.dumps(traccar_json(party.ana_key, speed=3.5)),
        content_type="application/json")
    assert response.status_code == 200
    assert response.content == b""
    (position,) = await viewer.positions()
    assert position["speed"] == 3.5 and "heading" not in position
    assert position["battery"] == pytest.approx(42)
    (row,) = await stored(party.ana)
    assert row.heading is None and row.accuracy == 5


@db_async
async def test_osmand_out_of_order_batch_keeps_the_newest_live(party, watch):
    viewer = await watch(party.room, party.vera_key)
    client = AsyncClient()
    newest = {"id": party.ana_key, "lat": "45.9", "lon": "13.9", "timestamp": str(T + 60)}
    assert (await client.get("/ingest/osmand/", newest)).status_code == 200
    (live,) = await viewer.positions()
    assert live["ts"] == (T + 60) * 1000

    # Queued while offline, sent late and shuffled: history only.
    batch = [{"id": party.ana_key, "lat": 45.0 + i / 100, "lon": 13.0,
              "timestamp": T + i} for i in (30, 10, 20)]
    response = await client.post("/ingest/osmand/", data=json.dumps(batch),
                                 content_type="application/json")
    assert response.status_code == 200
    assert await viewer.quiet()
    assert registry().get(party.room.pk).state.latest[party.ana.pk]["ts"] == (T + 60) * 1000
    rows = await stored(party.ana)
    assert [int(r.device_time.timestamp()) for r in rows] == [T + 10, T + 20, T + 30,
                                                              T + 60]

    # A later batch, also shuffled, moves the marker to its newest point only.
    batch = [{"id": party.ana_key, "lat": 46.0 + i / 100, "lon": 14.0,
              "timestamp": T + i} for i in (90, 120, 100)]
    await client.post("/ingest/osmand/", data=json.dumps(batch),
                      content_type="application/json")
    (live,) = await viewer.positions()
    assert (live["ts"], live["lat"]) == ((T + 120) * 1000, 47.2)
    assert len(await stored(party.ana)) == 7


@db_async
async def test_osmand_unknown_key_is_400_for_the_query_and_404_for_json(party, watch):
    client = AsyncClient()
    query = await client.get("/ingest/osmand/", {"id": "nope", "lat": "45", "lon": "13"})
    assert query.status_code == 400 and query.json()["field"] == "id"
    missing = await client.get("/ingest/osmand/", {"lat": "45", "lon": "13"})
    assert missing.status_code == 400 and missing.json()["field"] == "id"
    as_json = await client.post("/ingest/osmand/", data=json.dumps(traccar_json("nope")),
                                content_type="application/json")
    assert as_json.status_code == 404
    no_id = traccar_json("x")
    del no_id["device_id"]
    as_json = await client.post("/ingest/osmand/", data=json.dumps(no_id),
                                content_type="application/json")
    assert as_json.status_code == 400 and as_json.json()["field"] == "device_id"


@db_async
async def test_viewer_cannot_publish_through_osmand(party, watch):
    client = AsyncClient()
    query = await client.get("/ingest/osmand/", {"id": party.vera_key, "lat": "45",
                                                 "lon": "13"})
    assert query.status_code == 403
    as_json = await client.post("/ingest/osmand/",
                                data=json.dumps(traccar_json(party.vera_key)),
                                content_type="application/json")
    assert as_json.status_code == 403
    assert await stored(party.vera) == []


@db_async
@pytest.mark.parametrize("kind, payload, field", [
    ("query", {"lat": "45"}, "lon"),
    ("query", {"lat": "abc", "lon": "13"}, "lat"),
    ("query", {"lat": "45", "lon": "200"}, "lon"),
    ("query", {"lat": "NaN", "lon": "13"}, "lat"),
    ("query", {"lat": "45", "lon": "Infinity"}, "lon"),
    ("query", {"lat": "45", "lon": "13", "timestamp": "never"}, "timestamp"),
    ("json", b"{garbage", "body"),
    ("json", b'{"device_id": "KEY", "location": {"timestamp": "2025-06-15T13:4', "body"),
    ("json", b'"just a string"', "body"),
    ("text", b"lat=45&lon=13", "Content-Type"),
])
async def test_osmand_bad_input_is_400_and_stores_nothing(party, watch, kind, payload,
                                                          field):
    viewer = await watch(party.room, party.vera_key)
    client = AsyncClient()
    if kind == "query":
        response = await client.get("/ingest/osmand/", {"id": party.ana_key, **payload})
    elif kind == "json":
        response = await client.post(
            "/ingest/osmand/", data=payload.replace(b"KEY", party.ana_key.encode()),
            content_type="application/json")
    else:
        response = await client.post("/ingest/osmand/", data=payload,
                                     content_type="text/plain")
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert await viewer.quiet()
    assert await stored(party.ana) == []


@db_async
async def test_traccar_client_push_token_answers_200_and_changes_nothing(party, watch):
    # traccar/traccar-client lib/push_service.dart: a form POST with no position.
    viewer = await watch(party.room, party.vera_key)
    client = AsyncClient()
    body = urlencode({"id": party.ana_key, "notificationToken": "dGVzdC10b2tlbg:APA91b"})
    response = await client.post("/ingest/osmand/", data=body,
                                 content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and response.content == b""
    assert await viewer.quiet()
    assert await stored(party.ana) == []
    unknown = await client.post(
        "/ingest/osmand/", data=urlencode({"id": "nope", "notificationToken": "t"}),
        content_type="application/x-www-form-urlencoded")
    assert unknown.status_code == 400 and unknown.json()["field"] == "id"


@db_async
async def test_a_bad_point_in_a_batch_stores_none_of_it(party, watch):
    batch = [{"id": party.ana_key, "lat": 45.1, "lon": 13.1, "timestamp": T},
             {"id": party.ana_key, "lat": 45.2, "lon": "east", "timestamp": T + 1}]
    response = await AsyncClient().post("/ingest/osmand/", data=json.dumps(batch),
                                        content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == "lon"
    assert await stored(party.ana) == []


# -- GPSLogger endpoint --------------------------------------------------------------------------


@db_async
async def test_gpslogger_get_is_stored_and_broadcast(party, watch):
    viewer = await watch(party.room, party.vera_key)
    response = await AsyncClient().get(f"/ingest/gpslogger/{party.ana_key}/",
                                       gpslogger_params())
    assert response.status_code == 200
    (position,) = await viewer.positions()
    assert (position["speed"], position["heading"]) == (12.5, 93.0)
    (row,) = await stored(party.ana)
    assert (row.lat, row.battery, int(row.device_time.timestamp())) == (45.2735188, 77, T)


@db_async
async def test_gpslogger_post_with_a_form_body(party, watch):
    response = await AsyncClient().post(
        f"/ingest/gpslogger/{party.ana_key}/", data=urlencode(gpslogger_params()),
        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert len(await stored(party.ana)) == 1


@db_async
async def test_gpslogger_refuses_unknown_keys_viewers_and_bad_input(party, watch):
    client = AsyncClient()
    assert (await client.get("/ingest/gpslogger/nope/", gpslogger_params())
            ).status_code == 401
    assert (await client.get(f"/ingest/gpslogger/{party.vera_key}/", gpslogger_params())
            ).status_code == 403
    response = await client.get(f"/ingest/gpslogger/{party.ana_key}/",
                                gpslogger_params(lat="%LAT"))
    assert response.status_code == 400 and response.json()["field"] == "lat"
    response = await client.post(f"/ingest/gpslogger/{party.ana_key}/", data=b"<xml/>",
                                 content_type="application/xml")
    assert response.status_code == 400 and response.json()["field"] == "Content-Type"
    assert await stored(party.ana) == [] and await stored(party.vera) == []


# -- Overland endpoint ---------------------------------------------------------------------------


async def post_overland(client, body, key=None, *, bearer=True, path="/ingest/overland/"):
    headers = {"Authorization": f"Bearer {key}"} if key and bearer else {}
    data = body if isinstance(body, bytes) else json.dumps(body)
    return await client.post(path, data=data, content_type="application/json",
                             headers=headers)


@db_async
async def test_overland_batch_is_stored_broadcast_and_answered_ok(party, watch):
    viewer = await watch(party.room, party.vera_key)
    batch = {"locations": [
        overland_feature(13.1, 45.1, ts=T),
        {"type": "Feature", "geometry": None, "properties": {"action": "app_terminated"}},
        overland_feature(13.2, 45.2, ts=T + 10, speed=2.5, course=90),
    ]}
    response = await post_overland(AsyncClient(), batch, party.ana_key)
    assert response.status_code == 200
    assert response.json() == {"result": "ok"}
    positions = await viewer.positions()
    assert positions[-1]["lat"] == 45.2 and positions[-1]["speed"] == 2.5
    assert positions[-1]["battery"] == pytest.approx(80)
    rows = await stored(party.ana)
    assert [(r.lat, r.lon, int(r.device_time.timestamp())) for r in rows] == [
        (45.1, 13.1, T), (45.2, 13.2, T + 10)]


@db_async
async def test_overland_key_in_the_query_string(party, watch):
    response = await post_overland(AsyncClient(), {"locations": [overland_feature()]},
                                   path=f"/ingest/overland/?key={party.ana_key}")
    assert response.json() == {"result": "ok"}
    assert len(await stored(party.ana)) == 1


@db_async
async def test_overland_takes_a_full_batch_of_1000_points(party, watch):
    batch = {"locations": [overland_feature(13 + i / 10_000, 45.0, ts=T - 1000 + i)
                           for i in range(1000)]}
    body = json.dumps(batch).encode()
    assert len(body) > 256 * 1024  # more than the other doors take
    response = await post_overland(AsyncClient(), body, party.ana_key)
    assert response.status_code == 200, response.content
    assert len(await stored(party.ana)) == 1000
    too_many = {"locations": batch["locations"] + [overland_feature()]}
    response = await post_overland(AsyncClient(), too_many, party.bo_key)
    assert response.status_code == 413
    assert await stored(party.bo) == []


@db_async
async def test_overland_refusals(party, watch):
    client = AsyncClient()
    batch = {"locations": [overland_feature()]}
    unknown = await post_overland(client, batch, "nope")
    assert unknown.status_code == 401 and unknown["WWW-Authenticate"].startswith("Bearer")
    assert (await post_overland(client, batch)).status_code == 401
    assert (await post_overland(client, batch, party.vera_key)).status_code == 403
    bad = await post_overland(client, {"locations": [overland_feature(timestamp="x")]},
                              party.ana_key)
    assert bad.status_code == 400 and bad.json()["field"] == "timestamp"
    half_bad = {"locations": [overland_feature(), overland_feature(200.0, 1.0)]}
    bad = await post_overland(client, half_bad, party.ana_key)
    assert bad.status_code == 400 and bad.json()["field"] == "coordinates"
    assert (await client.get(f"/ingest/overland/?key={party.ana_key}")).status_code == 405
    assert await stored(party.ana) == [] and await stored(party.vera) == []


# -- Hauk ------------------------------------------------------------------------------------------


async def hauk(client, endpoint, form):
    """POST a form as Hauk's ConnectionThread does; return (lines, response)."""
    response = await client.post(f"/hauk/api/{endpoint}.php", data=urlencode(form),
                                 content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200  # the app reads only 200 answers
    assert response["X-Hauk-Version"] == "1.6.2"
    return response.content.decode().splitlines(), response


@db_async
async def test_hauk_create_post_stop_as_the_app_sends_them(party, watch):
    viewer = await watch(party.room, party.vera_key)
    client = AsyncClient()
    lines, _ = await hauk(client, "create", hauk_create_form(party.ana_key, dur=900))
    assert lines[0] == "OK" and len(lines) == 4
    sid = lines[1]
    assert lines[2] == f"http://testserver/r/{party.room.public_id}/"
    assert lines[3] == party.room.public_id
    assert party.ana_key not in sid

    lines, _ = await hauk(client, "post", hauk_post_form(sid, time_s=T + 0.5, spd=3.0,
                                                         acc=7.0))
    assert lines == ["OK", "http://testserver/r/%s/", party.room.public_id]
    (position,) = await viewer.positions()
    assert (position["member"], position["ts"], position["speed"]) == (
        party.ana.pk, T * 1000 + 500, 3.0)
    (row,) = await stored(party.ana)
    assert (row.lat, row.accuracy) == (45.2735, 7.0)

    lines, _ = await hauk(client, "stop", {"sid": sid})
    assert lines == ["OK"]
    while True:
        frame = await viewer.communicator.receive_json_from(timeout=2)
        if frame["type"] == "stopped":
            assert frame["member"] == party.ana.pk
            break
    # The app would not post after stopping; a late post is refused, not stored.
    lines, _ = await hauk(client, "post", hauk_post_form(sid, time_s=T + 5))
    assert lines[0] == "Session expired!"
    assert len(await stored(party.ana)) == 1


@db_async
async def test_hauk_refusals_are_lines_the_app_shows(party, watch):
    client = AsyncClient()
    lines, _ = await hauk(client, "create", hauk_create_form("not-a-key"))
    assert lines[0] == "Incorrect password!"
    lines, _ = await hauk(client, "create", hauk_create_form(party.ana_key, e2e=1,
                                                             salt="c2FsdA=="))
    assert lines[0].startswith("e2e: End-to-end encrypted shares cannot be read")
    lines, _ = await hauk(client, "create", hauk_create_form(party.ana_key, mod=1,
                                                             nic="Ana"))
    assert lines[0].startswith("mod: geoshare does not take Hauk group shares")
    lines, _ = await hauk(client, "create", hauk_create_form(party.vera_key))
    assert "viewer" in lines[0]
    lines, _ = await hauk(client, "post", hauk_post_form("forged:sid"))
    assert lines[0] == "Session expired!"
    lines, _ = await hauk(client, "adopt", {"sid": "x", "aid": "y"})
    assert "does not offer" in lines[0]
    assert await stored(party.ana) == [] and await stored(party.vera) == []


@db_async
async def test_hauk_session_ends_with_its_duration_and_its_device_key(party, watch):
    from maps.ingest.views import hauk_sid

    client = AsyncClient()
    lines, _ = await hauk(client, "create", hauk_create_form(party.ana_key))
    sid = lines[1]
    bad, _ = await hauk(client, "post", hauk_post_form(sid, lat=95.0))
    assert bad[0].startswith("lat:") and "between -90 and 90" in bad[0]
    assert await stored(party.ana) == []
    # A session past its end (made the way create makes it, with an earlier clock).
    device = await database_sync_to_async(lambda: party.ana.devices.get())()
    old = hauk_sid(key_hash=device.key_hash, until_ms=(T - 60) * 1000,
                   issued_ms=(T - 960) * 1000)
    lines, _ = await hauk(client, "post", hauk_post_form(old))
    assert lines[0] == "Session expired!"
    # A new key for the device ends its sessions.
    await database_sync_to_async(_rotate)(party.ana)
    lines, _ = await hauk(client, "post", hauk_post_form(sid))
    assert lines[0] == "Session expired!"
    assert await stored(party.ana) == []


# -- all doors ---------------------------------------------------------------------------------


@db_async
@pytest.mark.parametrize("door", ["owntracks", "osmand", "gpslogger"])
async def test_body_over_256_kib_is_413(party, watch, door):
    path = {"owntracks": f"/ingest/owntracks/?key={party.ana_key}",
            "osmand": "/ingest/osmand/",
            "gpslogger": f"/ingest/gpslogger/{party.ana_key}/"}[door]
    response = await AsyncClient().post(path, data=b" " * (256 * 1024 + 1),
                                        content_type="application/json")
    assert response.status_code == 413
    assert response.json()["field"] == "body"


@db_async
async def test_a_key_moves_only_its_own_rooms_map(party, watch):
    viewer = await watch(party.room, party.vera_key)
    response = await AsyncClient().get(f"/ingest/gpslogger/{party.sam_key}/",
                                       gpslogger_params())
    assert response.status_code == 200
    assert await viewer.quiet()
    assert len(await stored(party.sam)) == 1


# -- the "Connect a phone" page ---------------------------------------------------------------------


def session_client(room, member):
    client = Client()
    session = client.session
    session["members"] = {room.public_id: member.pk}
    session.save()
    return client


def connect_post(client, room, **data):
    return client.post(f"/r/{room.public_id}/connect/", data)


def shown_key(page):
    return re.search(r'id="device-key" class="copy-value mono" readonly value="([^"]+)"',
                     page).group(1)


def field_values(page):
    return [v.replace("&amp;", "&") for v in
            re.findall(r'class="copy-value mono" readonly value="([^"]+)"', page)]


@db_async
def test_connect_page_lists_devices_without_showing_a_key(party):
    client = session_client(party.room, party.ana)
    response = client.get(f"/r/{party.room.public_id}/connect/")
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    page = response.content.decode()
    assert "Phone" in page and "No report yet" in page and "Add a device" in page
    assert "<svg" not in page and 'id="device-key"' not in page
    assert member_for_key(party.ana_key) is not None  # looking rotates nothing
    for word in ("placeholder", "HTTP mode"):
        assert word not in page.replace('placeholder="', "")


@db_async
def test_adding_a_device_shows_its_key_and_every_app_once(party):
    client = session_client(party.room, party.ana)
    response = connect_post(client, party.room, action="add", name="Tablet")
    assert response.status_code == 200
    page = response.content.decode()
    key = shown_key(page)
    assert re.fullmatch(r"[2-9a-km-np-z]{26}", key)
    found = member_for_key(key)
    assert found.pk == party.ana.pk and found.device.name == "Tablet"
    assert member_for_key(party.ana_key).device.name == "Phone"  # the phone keeps its key
    assert " ".join(key[i:i + 4] for i in range(0, 26, 4)) in page
    for app in ("OwnTracks", "Traccar Client", "OsmAnd", "GPSLogger", "Hauk", "Overland"):
        assert app in page
    values = field_values(page)
    base = "http://testserver"
    assert f"{base}/ingest/owntracks/?key={key}" in values
    assert f"{base}/ingest/osmand/" in values and f"{base}/hauk/" in values
    assert f"{base}/ingest/osmand/?id={key}&lat={{0}}&lon={{1}}&timestamp={{2}}" \
           "&accuracy={3}&altitude={4}&speed_mps={5}&bearing={6}&batt={11}" in values
    assert f"{base}/ingest/gpslogger/{key}/?lat=%LAT&lon=%LON" in " ".join(values)
    assert page.count('class="copy"') == len(values)
    # OwnTracks, Traccar Client, Overland, and the one-time setup link for the phone.
    assert page.count("<svg") == 4
    assert 'id="setup-url"' in page or "/setup/" in page


@db_async
def test_qr_links_configure_the_apps(party):
    from urllib.parse import parse_qs, unquote, urlsplit

    from maps.web.phone_views import (
        overland_setup_link,
        owntracks_config_link,
        phone_apps,
    )

    apps = {a["id"]: a for a in phone_apps("https://geo.example", "k3y", "Car", "pw")}
    link = apps["owntracks"]["qr"]["text"]
    assert link.startswith("owntracks:///config?inline=")
    # LoadViewModel: URLDecoder.decode, then Base64.decode, then the JSON import.
    inline = unquote(link.split("inline=", 1)[1])
    assert "+" not in link.split("inline=", 1)[1] and " " not in inline
    config = json.loads(base64.b64decode(inline))
    assert config == {"_type": "configuration", "mode": 3,
                      "url": "https://geo.example/ingest/owntracks/?key=k3y",
                      "encryptionKey": "pw"}
    assert owntracks_config_link("u") != link
    # Traccar Client's ConfigurationService.applyUri: origin + path is the URL, id the id.
    traccar = urlsplit(apps["traccar"]["qr"]["text"])
    assert f"{traccar.scheme}://{traccar.netloc}{traccar.path}" == (
        "https://geo.example/ingest/osmand/")
    assert parse_qs(traccar.query) == {"id": ["k3y"]}
    overland = urlsplit(apps["overland"]["qr"]["text"])
    assert (overland.scheme, overland.netloc) == ("overland", "setup")
    assert parse_qs(overland.query) == {"url": ["https://geo.example/ingest/overland/"],
                                        "token": ["k3y"], "device_id": ["Car"]}
    assert overland_setup_link("https://x/", "k", "d").startswith("overland://setup?url=")
    assert apps["osmand"]["qr"] is None and apps["gpslogger"]["qr"] is None


@db_async
def test_new_key_for_one_device_leaves_the_others(party):
    client = session_client(party.room, party.ana)
    tablet_key = shown_key(connect_post(client, party.room, action="add",
                                        name="Tablet").content.decode())
    phone = party.ana.devices.get(name="Phone")
    page = connect_post(client, party.room, action="rotate", device=phone.pk)
    new_key = shown_key(page.content.decode())
    assert member_for_key(party.ana_key) is None  # the phone's old key stopped working
    assert member_for_key(new_key).device.pk == phone.pk
    assert member_for_key(tablet_key).device.name == "Tablet"
    removed = connect_post(client, party.room, action="remove",
                           device=party.ana.devices.get(name="Tablet").pk)
    assert "is removed" in removed.content.decode()
    assert member_for_key(tablet_key) is None and member_for_key(new_key) is not None


@db_async
def test_owntracks_secret_is_set_per_device(party):
    client = session_client(party.room, party.ana)
    phone = party.ana.devices.get()
    response = connect_post(client, party.room, action="secret", device=phone.pk,
                            secret="s3cret")
    assert "Encryption key" in response.content.decode()
    phone.refresh_from_db()
    assert phone.secret == "s3cret"
    too_long = connect_post(client, party.room, action="secret", device=phone.pk,
                            secret="x" * 33)
    assert "at most 32 bytes" in too_long.content.decode()
    phone.refresh_from_db()
    assert phone.secret == "s3cret"


@db_async
def test_a_device_that_is_not_yours_is_a_400_naming_device(party):
    client = session_client(party.room, party.ana)
    bos = party.bo.devices.get()
    for raw in ("abc", "", str(bos.pk)):
        response = connect_post(client, party.room, action="rotate", device=raw)
        assert response.status_code == 400
        assert response.content.decode().startswith("device:")
    assert member_for_key(party.bo_key) is not None
    assert connect_post(client, party.room, action="dance").status_code == 400


@db_async
async def test_the_urls_on_the_page_work_as_the_apps_fill_them(party, watch):
    from tests.phone_payloads import osmand_fill

    client = await database_sync_to_async(session_client)(party.room, party.ana)
    page = await database_sync_to_async(connect_post)(client, party.room, action="add",
                                                      name="Phone 2")
    values = field_values(page.content.decode())
    gpslogger = next(v for v in values if "/ingest/gpslogger/" in v)
    for placeholder, value in (("%LAT", "45.1"), ("%LON", "13.2"), ("%ACC", "0.0"),
                               ("%ALT", "100.0"), ("%SPD", "0.0"), ("%DIR", "0.0"),
                               ("%BATT", "0.0"), ("%TIMESTAMP", str(T))):
        gpslogger = gpslogger.replace(placeholder, value)
    phone = AsyncClient()
    assert (await phone.get(gpslogger.removeprefix("http://testserver"))).status_code == 200
    osmand_url = next(v for v in values if "speed_mps" in v)
    filled = osmand_fill(osmand_url, lat=45.2, lon=13.3, time_ms=(T + 1) * 1000 + 7,
                         accuracy=6.0, speed=12.5, bearing=90.0, battery=64)
    assert (await phone.get(filled.removeprefix("http://testserver"))).status_code == 200
    rows = await stored(party.ana)
    assert [(r.lat, r.accuracy, r.battery) for r in rows] == [(45.1, None, None),
                                                             (45.2, 6.0, 64)]
    assert rows[1].speed == 12.5  # m/s, as OsmAnd sent it
    listing = await database_sync_to_async(client.get)(
        f"/r/{party.room.public_id}/connect/")
    assert "Last report:" in listing.content.decode()
    assert 'class="local-time"' in listing.content.decode()


@db_async
def test_owner_may_connect_a_phone(party):
    client = session_client(party.room, party.owner)
    response = connect_post(client, party.room, action="add", name="Phone")
    assert response.status_code == 200
    assert member_for_key(shown_key(response.content.decode())).pk == party.owner.pk


@db_async
def test_viewer_and_stranger_are_refused_the_connect_page(party):
    path = f"/r/{party.room.public_id}/connect/"
    viewer = session_client(party.room, party.vera)
    assert viewer.get(path).status_code == 403
    assert viewer.post(path, {"action": "add", "name": "X"}).status_code == 403
    assert member_for_key(party.vera_key) is not None
    assert Client().get(path).status_code == 403
    assert Client().get("/r/no-such-room/connect/").status_code == 404


# -- a real server: a drive replayed through OsmAnd while a viewer watches ------------------------------


@pytest.mark.slow
async def test_real_server_replays_a_gpx_drive_in_order(tmp_path):
    import gpxpy
    import httpx
    from websockets.asyncio.client import connect

    with gpx_file("around-visnjan-with-car.gpx").open() as handle:
        points = [p for track in gpxpy.parse(handle).tracks for segment in track.segments
                  for p in segment.points]
    assert len(points) > 50

    project = Project(tmp_path, GEOSHARE_TICK_MS=20, GEOSHARE_HISTORY_FLUSH_MS=200).migrate()
    cast = project.personas()
    driver = cast.member
    with Uvicorn(project) as server:
        url = f"{server.ws_url}/ws/rooms/{cast.room}/?key={cast.viewer['key']}"
        async with connect(url) as socket_, httpx.AsyncClient(base_url=server.http) as http:
            assert json.loads(await socket_.recv())["type"] == "snapshot"
            received = []
            last_ts = int(points[-1].time.timestamp()) * 1000

            async def read():
                while not received or received[-1]["ts"] != last_ts:
                    frame = json.loads(await socket_.recv())
                    if frame["type"] == "positions":
                        received.extend(p for p in frame["positions"]
                                        if p["member"] == driver["member"])

            reader = asyncio.create_task(read())
            for index, point in enumerate(points):
                ts = int(point.time.timestamp())
                response = await http.get("/ingest/osmand/", params={
                    "id": driver["key"], "lat": repr(point.latitude),
                    "lon": repr(point.longitude),
                    "timestamp": str(ts),
                    "altitude": repr(point.elevation)})
                assert response.status_code == 200, response.text
                # Two points at a time, then until the viewer has the second: at most
                # two ever share a tick, however slow the machine.
                if index % 2:
                    await until(lambda ts=ts: received and received[-1]["ts"] >= ts * 1000,
                                timeout=10)
            await asyncio.wait_for(reader, 10)

        by_ts = {int(p.time.timestamp()) * 1000: p for p in points}
        stamps = [p["ts"] for p in received]
        assert stamps == sorted(set(stamps)), "points arrived out of order"
        assert stamps[-1] == last_ts
        for position in received:
            point = by_ts[position["ts"]]
            assert (position["lat"], position["lon"]) == (point.latitude, point.longitude)
        # The tick coalesces at most a few points; most reach the viewer one by one.
        assert len(received) >= len(points) // 2

        def count():
            with sqlite3.connect(project.db) as conn:
                return conn.execute("SELECT COUNT(*) FROM maps_position WHERE member_id=?",
                                    (driver["member"],)).fetchone()[0]

        await until(lambda: count() == len(points), timeout=10, interval=0.05)
        assert count() == len(points), "every replayed point reaches the history"
