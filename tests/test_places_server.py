"""Arrivals and departures on real servers (tests.servers): a real drive goes in
through the OsmAnd door as JSON batches and must give one enter and one leave, in
order, at the right points, with one process, two processes on Redis, and a restart
in between."""

import asyncio
import json
import time

import gpxpy
import httpx
import pytest
from websockets.asyncio.client import connect

from maps.domain import places
from tests.servers import Project, Uvicorn, gpx_file, postgres_database, redis_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CENTRE_INDEX = 50
RADIUS = 150.0
BATCH = 8


def drive():
    """The Višnjan drive as ``(lat, lon, ts ms)``, moved to end a minute ago."""
    with gpx_file("around-visnjan-with-car.gpx").open() as handle:
        points = [p for t in gpxpy.parse(handle).tracks for s in t.segments
                  for p in s.points]
    # Whole seconds: the OsmAnd door sends seconds.
    shift = (int(time.time()) - 60 - int(points[-1].time.timestamp())) * 1000
    return [(p.latitude, p.longitude, int(p.time.timestamp() * 1000) + shift)
            for p in points]


def expected(points, circle):
    """The device times of the first fix inside and the first clearly outside after it,
    found with distances alone (accuracy 5 m, as sent)."""
    enter = leave = None
    for lat, lon, ts in points:
        d = places.distance_m(circle.lat, circle.lon, lat, lon)
        if enter is None and d <= circle.radius:
            enter = ts
        elif enter is not None and d - 5 > circle.radius + places.margin(circle.radius):
            leave = ts
            break
    return enter, leave


def batches(points, key):
    for start in range(0, len(points), BATCH):
        yield [{"id": key, "lat": lat, "lon": lon, "timestamp": ts // 1000,
                "accuracy": 5} for lat, lon, ts in points[start:start + BATCH]]


async def make_place(server, room, key, lat, lon):
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            f"/api/rooms/{room}/places", headers={"Authorization": f"Bearer {key}"},
            json={"name": "Crossroads", "lat": lat, "lon": lon, "radius": RADIUS})
        assert response.status_code == 201, response.text
        return response.json()["id"]


async def send(server, batch):
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post("/ingest/osmand/", json=batch)
        assert response.status_code == 200, response.text


async def place_events(socket, count, timeout=15):
    found = []
    async with asyncio.timeout(timeout):
        while len(found) < count:
            frame = json.loads(await socket.recv())
            if frame["type"] == "place_event":
                found.append(frame)
    return found


async def markers_sent(servers, member):
    """Send a fix of ``member`` (``{"member", "key"}``), far from the place, through
    each of ``servers`` in turn, each newer than the last; return the newest's device
    time (ms): the later message :func:`place_events_before` reads up to."""
    ts = int(time.time())
    for offset, server in enumerate(servers):
        await send(server, [{"id": member["key"], "lat": 45.0, "lon": 13.0,
                             "timestamp": ts + offset, "accuracy": 5}])
    return (ts + len(servers) - 1) * 1000


async def place_events_before(socket, member_id, ts, timeout=15):
    """Return the ``place_event`` frames ``socket`` gets before ``member_id``'s marker
    fix of device time ``ts`` (ms): none came after the crossings when this is empty
    (a tick lists place events before positions)."""
    found = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await socket.recv())
            if frame["type"] == "place_event":
                found.append(frame)
            elif frame["type"] == "positions" and any(
                    p["member"] == member_id and p["ts"] >= ts for p in frame["positions"]):
                return found


async def stored_events(server, room, key):
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get(f"/api/rooms/{room}/events",
                                  headers={"Authorization": f"Bearer {key}"})
        return response.json()["events"]


def setup(tmp_path, database_url=None, **env):
    project = Project(tmp_path, database_url=database_url, GEOSHARE_TICK_MS=20,
                      **env).migrate()
    cast = project.personas()
    points = drive()
    lat, lon, _ts = points[CENTRE_INDEX]
    circle = places.Circle(lat, lon, RADIUS)
    enter, leave = expected(points, circle)
    assert enter is not None and leave is not None and enter < leave
    return project, cast, points, (enter, leave)


def check(found, place_id, member_id, enter, leave):
    assert [(f["kind"], f["ts"]) for f in found] == [("enter", enter), ("leave", leave)]
    assert {(f["place"], f["member"]) for f in found} == {(place_id, member_id)}


async def test_a_drive_through_a_place_gives_one_enter_and_one_leave(tmp_path):
    project, cast, points, (enter, leave) = setup(tmp_path)
    with Uvicorn(project) as server:
        url = f"{server.ws_url}/ws/rooms/{cast.room}/?key={cast.other['key']}"
        async with connect(url) as socket:
            place_id = await make_place(server, cast.room, cast.member["key"],
                                        *points[CENTRE_INDEX][:2])
            for batch in batches(points, cast.member["key"]):
                await send(server, batch)
            found = await place_events(socket, 2)
            check(found, place_id, cast.member["member"], enter, leave)
            # Nothing more comes, and the same batches again change nothing.
            for batch in batches(points, cast.member["key"]):
                await send(server, batch)
            marker = await markers_sent([server], cast.other)
            assert await place_events_before(socket, cast.other["member"], marker) == []
        stored = await stored_events(server, cast.room, cast.other["key"])
        assert [(e["kind"], e["ts"]) for e in stored] == [("enter", enter),
                                                          ("leave", leave)]


async def test_two_processes_on_redis_give_each_crossing_once(tmp_path):
    with redis_url() as (url, _redis):
        project, cast, points, (enter, leave) = setup(tmp_path, REDIS_URL=url)
        with Uvicorn(project) as first, Uvicorn(project) as second:
            path = f"/ws/rooms/{cast.room}/?key="
            async with (
                connect(first.ws_url + path + cast.other["key"]) as on_first,
                connect(second.ws_url + path + cast.other["key"]) as on_second,
            ):
                place_id = await make_place(first, cast.room, cast.member["key"],
                                            *points[CENTRE_INDEX][:2])
                for index, batch in enumerate(batches(points, cast.member["key"])):
                    await send((first, second)[index % 2], batch)
                for socket in (on_first, on_second):
                    found = await place_events(socket, 2)
                    check(found, place_id, cast.member["member"], enter, leave)
                marker = await markers_sent([first, second], cast.other)
                for socket in (on_first, on_second):
                    assert await place_events_before(socket, cast.other["member"],
                                                     marker) == []
            stored = await stored_events(second, cast.room, cast.other["key"])
            assert [e["kind"] for e in stored] == ["enter", "leave"]


async def test_two_processes_racing_on_postgres_give_each_crossing_once(tmp_path):
    # Both processes get batches at the same moment: the stored state, locked FOR
    # UPDATE, lets one of them decide each crossing. Which fix decides may shift by
    # a batch when the later batch commits first (docs/architecture.md, "Places").
    with redis_url() as (url, _redis), postgres_database() as database_url:
        project, cast, points, _expected = setup(tmp_path, database_url, REDIS_URL=url)
        with Uvicorn(project) as first, Uvicorn(project) as second:
            path = f"/ws/rooms/{cast.room}/?key={cast.other['key']}"
            async with connect(second.ws_url + path) as socket:
                await make_place(first, cast.room, cast.member["key"],
                                 *points[CENTRE_INDEX][:2])
                pairs = list(batches(points, cast.member["key"]))
                for index in range(0, len(pairs), 2):
                    await asyncio.gather(*(send(server, batch) for server, batch in
                                           zip((first, second), pairs[index:index + 2])))
                found = await place_events(socket, 2)
                assert [f["kind"] for f in found] == ["enter", "leave"]
                marker = await markers_sent([first, second], cast.other)
                assert await place_events_before(socket, cast.other["member"], marker) == []
            stored = await stored_events(first, cast.room, cast.other["key"])
            assert [e["kind"] for e in stored] == ["enter", "leave"]


async def test_a_restart_between_enter_and_leave(tmp_path):
    project, cast, points, (enter, leave) = setup(tmp_path)
    middle = next(i for i, p in enumerate(points) if p[2] == enter) + 1
    server = Uvicorn(project).start()
    try:
        place_id = await make_place(server, cast.room, cast.member["key"],
                                    *points[CENTRE_INDEX][:2])
        for batch in batches(points[:middle], cast.member["key"]):
            await send(server, batch)
    finally:
        server.stop()
    with Uvicorn(project) as server:
        url = f"{server.ws_url}/ws/rooms/{cast.room}/?key={cast.other['key']}"
        async with connect(url) as socket:
            # The batch with the enter is sent again (a phone retrying): no second enter.
            for batch in batches(points[middle - 3:], cast.member["key"]):
                await send(server, batch)
            found = await place_events(socket, 1)
            assert [(f["kind"], f["ts"], f["place"]) for f in found] == [
                ("leave", leave, place_id)]
            marker = await markers_sent([server], cast.other)
            assert await place_events_before(socket, cast.other["member"], marker) == []
        stored = await stored_events(server, cast.room, cast.other["key"])
        assert [(e["kind"], e["ts"]) for e in stored] == [("enter", enter),
                                                          ("leave", leave)]
