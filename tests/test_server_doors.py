"""Every phone door on a real uvicorn (tests.servers), read back from a viewer's socket.

One server for the module; each door sends one position the way its app does, with the
device key of a member, and a viewer's WebSocket must receive it in geoshare's units.
"""

import asyncio
import base64
import json
import time
from urllib.parse import urlencode

import httpx
import nacl.secret
import nacl.utils
import pytest
from websockets.asyncio.client import connect

from tests.phone_payloads import (
    gpslogger_params,
    hauk_create_form,
    hauk_post_form,
    overland_feature,
    owntracks_location,
    traccar_json,
)
from tests.servers import Project, Uvicorn, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    project = Project(tmp_path_factory.mktemp("doors"), GEOSHARE_TICK_MS=20).migrate()
    cast = project.personas()
    with Uvicorn(project) as running:
        yield running, cast


async def _watch_and_send(server, send):
    """Open the viewer's socket, run ``send(http, key)``, return the member's position."""
    running, cast = server
    url = f"{running.ws_url}/ws/rooms/{cast.room}/?key={cast.viewer['key']}"
    async with connect(url) as socket, httpx.AsyncClient(base_url=running.http) as http:
        assert json.loads(await socket.recv())["type"] == "snapshot"
        await send(http, cast.member["key"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            if frame["type"] != "positions":
                continue
            mine = [p for p in frame["positions"] if p["member"] == cast.member["member"]]
            if mine:
                return mine[-1]
    raise AssertionError("no position reached the viewer")


def _now():
    # Each door's point is some seconds newer than the one before (the tests run in
    # file order), so each moves the marker; all stay within the 10 minutes ahead a
    # device clock may be.
    return int(time.time())


async def test_owntracks_door(server):
    async def send(http, key):
        message = owntracks_location(tst=_now() + 10, lat=45.01, vel=36)
        response = await http.post("/ingest/owntracks/", json=message, auth=("me", key))
        assert response.status_code == 200 and isinstance(response.json(), list)

    position = await _watch_and_send(server, send)
    assert position["lat"] == 45.01 and position["speed"] == pytest.approx(10.0)


async def test_owntracks_door_encrypted(server):
    # The secret is set as the page would, through the service in the server's database.
    running, cast = server
    running.project.manage("shell", "-c", (
        "from maps.models import Device; from maps.services import device_set_secret; "
        f"device_set_secret(device=Device.objects.get(member_id={cast.member['member']}), "
        "secret='s3cret')"))
    box = nacl.secret.SecretBox(b"s3cret".ljust(32, b"\0"))

    async def send(http, key):
        plain = json.dumps(owntracks_location(tst=_now() + 20, lat=45.015)).encode()
        sealed = base64.b64encode(bytes(box.encrypt(plain, nacl.utils.random(24))))
        response = await http.post("/ingest/owntracks/", auth=("me", key),
                                   json={"_type": "encrypted", "data": sealed.decode()})
        assert response.status_code == 200
        answer = response.json()
        assert answer["_type"] == "encrypted"
        assert isinstance(json.loads(box.decrypt(base64.b64decode(answer["data"]))), list)

    try:
        position = await _watch_and_send(server, send)
    finally:
        running.project.manage("shell", "-c", (
            "from maps.models import Device; Device.objects.filter(member_id="
            f"{cast.member['member']}).update(secret='')"))
    assert position["lat"] == 45.015


async def test_osmand_app_door(server):
    async def send(http, key):
        response = await http.get("/ingest/osmand/", params={
            "id": key, "lat": "45.02", "lon": "13.7", "timestamp": str((_now() + 30) * 1000 + 2),
            "accuracy": "5.0", "speed_mps": "12.5", "bearing": "90.0", "batt": "64"})
        assert response.status_code == 200

    position = await _watch_and_send(server, send)
    assert (position["lat"], position["speed"], position["battery"]) == (45.02, 12.5, 64)


async def test_traccar_client_door(server):
    async def send(http, key):
        body = traccar_json(key, latitude=45.03, speed=3.5)
        body["location"]["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                      time.gmtime(_now() + 40))
        response = await http.post("/ingest/osmand/", json=body)
        assert response.status_code == 200
        token = await http.post("/ingest/osmand/", content=urlencode(
            {"id": key, "notificationToken": "t"}),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert token.status_code == 200

    position = await _watch_and_send(server, send)
    assert position["lat"] == 45.03 and position["speed"] == 3.5


async def test_gpslogger_door(server):
    async def send(http, key):
        response = await http.get(f"/ingest/gpslogger/{key}/", params=gpslogger_params(
            lat="45.04", timestamp=str(_now() + 50), acc="0.0", batt="0.0"))
        assert response.status_code == 200

    position = await _watch_and_send(server, send)
    assert position["lat"] == 45.04
    assert "accuracy" not in position and "battery" not in position


async def test_overland_door(server):
    async def send(http, key):
        body = {"locations": [overland_feature(13.7, 45.05, ts=_now() + 60)]}
        response = await http.post("/ingest/overland/", json=body,
                                   headers={"Authorization": f"Bearer {key}"})
        assert response.json() == {"result": "ok"}

    position = await _watch_and_send(server, send)
    assert position["lat"] == 45.05 and position["battery"] == pytest.approx(80)


async def test_hauk_door(server):
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}

    async def send(http, key):
        created = await http.post("/hauk/api/create.php", headers=form_type,
                                  content=urlencode(hauk_create_form(key)))
        assert created.headers["X-Hauk-Version"] == "1.6.2"
        status, sid = created.text.splitlines()[:2]
        assert status == "OK"
        posted = await http.post("/hauk/api/post.php", headers=form_type, content=urlencode(
            hauk_post_form(sid, time_s=_now() + 70.25, lat=45.06, spd=2.0)))
        assert posted.text.splitlines()[0] == "OK"

    position = await _watch_and_send(server, send)
    assert position["lat"] == 45.06 and position["speed"] == 2.0


async def test_stored_positions_reach_the_database_file(server):
    # The history connection commits without SQLite's automatic checkpoint; its own
    # thread copies the WAL back into the database file after a batch (at most every
    # CHECKPOINT_EVERY_S). Opened "immutable", the file is read without its WAL: what
    # is there was checkpointed. With neither, these few pages would stay in the WAL
    # until it grew past 1,000 pages.
    import sqlite3

    running, cast = server
    if running.project.db is None:
        pytest.skip("the server runs on PostgreSQL here: no WAL to checkpoint")

    def in_file():
        db = sqlite3.connect(f"file:{running.project.db}?immutable=1", uri=True)
        try:
            return db.execute("SELECT count(*) FROM maps_position WHERE lat = 45.125"
                              ).fetchone()[0]
        finally:
            db.close()

    assert in_file() == 0
    async with httpx.AsyncClient(base_url=running.http) as http:
        for i in range(6):
            response = await http.get("/ingest/osmand/", params={
                "id": cast.member["key"], "lat": "45.125", "lon": "13.7",
                "timestamp": str((_now() + 40 + i) * 1000)})
            assert response.status_code == 200  # stored: the checkpoint may lag
    await until(lambda: in_file() == 6, timeout=10, interval=0.05)
    assert in_file() == 6
