"""The latest position is always there, and a 200 to a phone means stored (real uvicorn).

Nothing here is timed: "later" is a state the test awaits (the answer given, the
room's hub left idle), not a number of seconds.
"""

import asyncio
import sqlite3
import time

import httpx
import orjson
import pytest
import websockets

from tests.servers import METRICS_ENV, Project, Uvicorn, redis_url, wait_for
from tests.test_server import next_frame

pytestmark = pytest.mark.slow


def room_of(project, retention_days):
    room = project.create_room(f"Room {retention_days}", "Olga")
    project.manage("shell", "-c", (
        "from maps.models import Room\n"
        f"Room.objects.filter(public_id={room!r}).update(retention_days={retention_days})\n"))
    return room, project.add_member(room, "Ana"), project.add_member(room, "Bo")


async def snapshot_positions(server, room, key):
    url = f"{server.ws_url}/ws/rooms/{room}/?key={key}"
    async with websockets.connect(url) as socket:
        return (await next_frame(socket, "snapshot"))["positions"]


def post(server, key, lat):
    response = httpx.get(f"{server.http}/ingest/osmand/",
                         params={"id": key, "lat": str(lat), "lon": "14.5"})
    assert response.status_code == 200, response.text
    return response


def history_rows(project, member):
    with sqlite3.connect(project.db) as db:
        return db.execute("select count(*) from maps_position where member_id = ?",
                          (member,)).fetchone()[0]


@pytest.mark.parametrize("retention_days", [0, 7])
async def test_a_phones_position_is_there_for_whoever_opens_the_map_later(
    tmp_path, retention_days
):
    project = Project(tmp_path).migrate()
    room, ana, bo = room_of(project, retention_days)
    server = Uvicorn(project).start()
    try:
        # Nobody watches when the phone posts; its 200 means stored, so the map opened
        # right after shows it.
        post(server, ana["key"], 46.01)
        (live,) = await snapshot_positions(server, room, bo["key"])
        assert (live["member"], live["lat"]) == (ana["member"], 46.01)
        server.stop()  # graceful
        server = Uvicorn(project, port=server.port).start()
        (live,) = await snapshot_positions(server, room, bo["key"])
        assert live["lat"] == 46.01
        # A crash right after the answer: the answer meant stored.
        post(server, ana["key"], 46.02)
        server.kill()
        server = Uvicorn(project, port=server.port).start()
        (live,) = await snapshot_positions(server, room, bo["key"])
        assert live["lat"] == 46.02
    finally:
        server.stop()
    # A live-only room keeps no history; the other keeps every position.
    assert history_rows(project, ana["member"]) == (0 if retention_days == 0 else 2)


async def test_a_map_opened_right_after_a_post_and_another_later_both_show_it(tmp_path):
    project = Project(tmp_path).migrate()
    room, ana, bo = room_of(project, 7)
    with Uvicorn(project, extra_env=METRICS_ENV) as server:
        post(server, ana["key"], 46.03)
        url = f"{server.ws_url}/ws/rooms/{room}/?key={bo['key']}"
        async with websockets.connect(url) as socket:
            (first,) = (await next_frame(socket, "snapshot"))["positions"]
            assert first["lat"] == 46.03
            # Its own arrival shown: the tick the snapshot was encoded in is over.
            while not (await next_frame(socket, "presence"))["online"]:
                pass
            ticks = server.metric("geoshare_tick_flush_seconds_count")

        def hub_idle():
            # The map closed, and a tick flushed its going: the room's hub lingers idle
            # in memory, and a map opened now gets a snapshot encoded afresh
            # (RoomHub.snapshot_message keeps one per tick).
            return (server.metric("geoshare_open_sockets") == 0
                    and server.metric("geoshare_live_hubs") == 1
                    and server.metric("geoshare_tick_flush_seconds_count") > ticks)

        wait_for(hub_idle)
        post(server, ana["key"], 46.04)
        (second,) = await snapshot_positions(server, room, bo["key"])
        assert second["lat"] == 46.04


async def test_a_share_ended_on_one_process_removes_the_marker_on_the_other(tmp_path):
    with redis_url() as (url, _redis):
        project = Project(tmp_path, REDIS_URL=url).migrate()
        room, ana, bo = room_of(project, 7)
        with Uvicorn(project) as first, Uvicorn(project) as second:
            path = f"/ws/rooms/{room}/?key="
            async with (
                websockets.connect(first.ws_url + path + ana["key"]) as sender,
                websockets.connect(second.ws_url + path + bo["key"]) as viewer,
            ):
                await next_frame(sender, "snapshot")
                await next_frame(viewer, "snapshot")
                hour = int(time.time() * 1000) + 3_600_000
                await sender.send(orjson.dumps({"type": "share", "until": hour}).decode())
                await sender.send(orjson.dumps(
                    {"type": "position", "lat": 46.05, "lon": 14.5}).decode())
                async with asyncio.timeout(10):
                    while True:
                        frame = await next_frame(viewer, "positions")
                        if any(p["member"] == ana["member"] for p in frame["positions"]):
                            break
                # Shown on the other process: now move the share's end up to a moment
                # from now, and await the end it comes to by itself.
                soon = int(time.time() * 1000) + 200
                await sender.send(orjson.dumps({"type": "share", "until": soon}).decode())
                stopped = await next_frame(viewer, "stopped", timeout=10)
                assert stopped["member"] == ana["member"]
            # And it stays ended for a map opened later, on either process.
            for server in (first, second):
                assert await snapshot_positions(server, room, bo["key"]) == []
