"""geoshare as users run it: a real uvicorn, real WebSocket clients, a real Redis.

Also the one definition of how uvicorn is run (geoshare.serving).
"""

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import gpxpy
import httpx
import orjson
import pytest
import websockets

from geoshare.serving import UVICORN_OPTIONS, uvicorn_command
from tests.servers import (
    ROOT,
    Project,
    Uvicorn,
    free_port,
    gpx_file,
    redis_url,
    wait_for_port,
)

slow = pytest.mark.slow


async def next_frame(socket, kind, timeout=5):
    """Return the next frame of type ``kind`` from a websockets client."""
    async with asyncio.timeout(timeout):
        while True:
            frame = orjson.loads(await socket.recv())
            if frame["type"] == kind:
                return frame


async def collect_positions(socket, member_id, count, timeout):
    """Collect ``member_id``'s positions from ``positions`` frames until ``count``."""
    seen = []
    async with asyncio.timeout(timeout):
        while len(seen) < count:
            frame = orjson.loads(await socket.recv())
            if frame["type"] == "positions":
                seen.extend(p for p in frame["positions"] if p["member"] == member_id)
    return seen


async def echoed(socket, member_id, ts, timeout=10):
    """Wait until a ``positions`` frame on ``socket`` holds ``member_id``'s fix of ``ts``."""
    async with asyncio.timeout(timeout):
        while True:
            frame = orjson.loads(await socket.recv())
            if frame["type"] == "positions" and any(
                    p["member"] == member_id and p["ts"] == ts for p in frame["positions"]):
                return


#: Points the GPX replay sends before it awaits their echo: at most these share a tick.
GROUP = 5


@pytest.fixture
def project(tmp_path):
    """A migrated SQLite project of its own: these tests read its database afterwards."""
    return Project(tmp_path).migrate()


def track(name):
    with open(gpx_file(name), encoding="utf-8") as handle:
        gpx = gpxpy.parse(handle)
    return [p for t in gpx.tracks for s in t.segments for p in s.points]


@slow
async def test_gpx_replay_reaches_viewers_in_order_and_history_keeps_all(project):
    points = track("cerknicko-jezero.gpx")
    room, keys = project.make_room()
    with Uvicorn(project) as server:
        url = f"{server.ws_url}/ws/rooms/{room}/?key="
        async with (
            websockets.connect(url + keys["Ana"]["key"]) as walker,
            websockets.connect(url + keys["Bo"]["key"]) as viewer_b,
            websockets.connect(url + keys["Cy"]["key"]) as viewer_c,
        ):
            for socket in (walker, viewer_b, viewer_c):
                assert (await next_frame(socket, "snapshot"))["positions"] == []
            walker_id = keys["Ana"]["member"]
            base = 1_763_700_000_000
            sent = []
            for index, point in enumerate(points):
                ts = base + index * 1000
                sent.append((point.latitude, point.longitude, ts))
                await walker.send(orjson.dumps(
                    {"type": "position", "lat": point.latitude, "lon": point.longitude,
                     "altitude": point.elevation, "ts": ts}).decode())
                # A few points at a time, as a fast phone sends them: they may share a
                # tick. The next few go once the room has sent these back to the
                # walker, so no more than a few ever merge, however slow the machine.
                if index % GROUP == GROUP - 1 or index == len(points) - 1:
                    await echoed(walker, walker_id, ts)
            received = []
            for viewer in (viewer_b, viewer_c):
                got = []
                # Generous: a loaded CI machine may be slow; nothing here is timed.
                async with asyncio.timeout(30):
                    while not got or got[-1]["ts"] != sent[-1][2]:
                        frame = orjson.loads(await viewer.recv())
                        if frame["type"] == "positions":
                            got.extend(p for p in frame["positions"] if p["member"] == walker_id)
                received.append(got)
        log = server.output()
        # uvicorn logs each WebSocket path with its query string: keys are redacted.
        assert "[redacted]" in log
        assert not any(k["key"] in log for k in keys.values())
        for got in received:
            stamps = [p["ts"] for p in got]
            # In order, each one a point that was sent, unchanged; only points inside
            # one tick may merge, so most of the track arrives.
            assert stamps == sorted(stamps)
            by_ts = {ts: (lat, lon) for lat, lon, ts in sent}
            assert all((p["lat"], p["lon"]) == by_ts[p["ts"]] for p in got)
            assert len(got) >= len(sent) // 8
            assert stamps[-1] == sent[-1][2]
    # The server has stopped: its shutdown wrote whatever history was still buffered.
    with sqlite3.connect(project.db) as db:
        stored = db.execute(
            "select lat, lon from maps_position where member_id = ? order by device_time",
            (walker_id,),
        ).fetchall()
    assert stored == [(lat, lon) for lat, lon, _ in sent]


@slow
async def test_replay_gpx_command_plays_track_into_room(project):
    points = track("around-visnjan-with-car.gpx")
    room, keys = project.make_room(members=("Bo",))
    with Uvicorn(project) as server:
        url = f"{server.ws_url}/ws/rooms/{room}/?key={keys['Bo']['key']}"
        async with websockets.connect(url) as viewer:
            await next_frame(viewer, "snapshot")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "manage.py", "replay_gpx", room,
                str(gpx_file("around-visnjan-with-car.gpx")), "--member", "Driver",
                "--speed", "200", "--url", server.http,
                env=project.env, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(30):
                while True:
                    presence = await next_frame(viewer, "presence", timeout=30)
                    if presence["member"]["name"] == "Driver":
                        break
            driver_id = presence["member"]["id"]
            got = []
            async with asyncio.timeout(60):
                while not got or (got[-1]["lat"], got[-1]["lon"]) != (
                        points[-1].latitude, points[-1].longitude):
                    frame = orjson.loads(await viewer.recv())
                    if frame["type"] == "positions":
                        got.extend(p for p in frame["positions"] if p["member"] == driver_id)
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            assert f"sent {len(points)} positions as Driver" in out.decode()
    stamps = [p["ts"] for p in got]
    assert stamps == sorted(stamps) and len(got) >= 3
    assert presence["member"]["name"] == "Driver"


@slow
async def test_two_processes_share_a_room_through_redis(project):
    with redis_url() as (url, _server):
        room, keys = project.make_room(members=("Ana", "Bo"))
        env = {"REDIS_URL": url, "REDIS_PREFIX": f"test{os.getpid()}"}
        with Uvicorn(project, extra_env=env) as one, Uvicorn(project, extra_env=env) as two:
            path = f"/ws/rooms/{room}/?key="
            async with (
                websockets.connect(one.ws_url + path + keys["Ana"]["key"]) as ana,
                websockets.connect(two.ws_url + path + keys["Bo"]["key"]) as bo,
            ):
                await next_frame(ana, "snapshot")
                await next_frame(bo, "snapshot")
                await ana.send(orjson.dumps(
                    {"type": "position", "lat": 46.05, "lon": 14.5, "ts": 1763700000000}
                ).decode())
                got = await collect_positions(bo, keys["Ana"]["member"], 1, timeout=5)
                assert (got[0]["lat"], got[0]["lon"], got[0]["ts"]) == (46.05, 14.5,
                                                                         1763700000000)
                await bo.send(orjson.dumps({"type": "position", "lat": 45.8, "lon": 15.9}
                                           ).decode())
                got = await collect_positions(ana, keys["Bo"]["member"], 1, timeout=5)
                assert (got[0]["lat"], got[0]["lon"]) == (45.8, 15.9)
                # A newcomer on the first process sees Bo online on the second one.
                async with websockets.connect(
                    one.ws_url + path + keys["Ana"]["key"]
                ) as again:
                    snapshot = await next_frame(again, "snapshot")
                    members = {m["id"]: m for m in snapshot["members"]}
                    assert members[keys["Bo"]["member"]]["online"] is True
                    assert {p["member"] for p in snapshot["positions"]} == {
                        keys["Ana"]["member"], keys["Bo"]["member"]}


# -- how uvicorn is run (geoshare.serving) -------------------------------------------------


def uvicorn_params(command):
    """What uvicorn's own command-line parser makes of ``command`` (nothing is run)."""
    from uvicorn.main import main

    assert command[:3] == [sys.executable, "-m", "uvicorn"]
    return main.make_context("uvicorn", command[3:]).params


def test_uvicorn_command_serves_geoshare_with_the_one_set_of_flags():
    command = uvicorn_command(port=8123)
    assert command[3:8] == ["geoshare.asgi:application", "--host", "127.0.0.1", "--port",
                            "8123"]
    assert command[8:8 + len(UVICORN_OPTIONS)] == UVICORN_OPTIONS
    params = uvicorn_params(command)
    assert params["ws"] == "wsproto"
    assert params["ws_per_message_deflate"] is False
    assert params["ws_max_size"] == 65536
    assert (params["ws_ping_interval"], params["ws_ping_timeout"]) == (20, 20)
    # uvicorn would otherwise take X-Forwarded-For from any local client as its address.
    assert params["proxy_headers"] is False
    assert params["access_log"] is True and params["log_level"] == "info"


def test_uvicorn_command_options_override_the_defaults():
    command = uvicorn_command(
        "bench.asgi:application", "127.0.0.1", 9000, ws="websockets",
        log_level="warning", access_log=False, extra=["--ws-ping-interval", "1"],
    )
    params = uvicorn_params(command)
    assert params["app"] == "bench.asgi:application"
    assert params["ws"] == "websockets" and "wsproto" not in command
    assert params["log_level"] == "warning" and params["access_log"] is False
    assert params["ws_ping_interval"] == 1
    assert params["ws_max_size"] == 65536 and params["proxy_headers"] is False


@slow
def test_forged_forwarded_for_from_localhost_does_not_dodge_the_rate_limit(tmp_path):
    project = Project(tmp_path, GEOSHARE_BADKEY_PER_MIN=2).migrate()
    statuses = []
    with Uvicorn(project) as server, httpx.Client(base_url=server.http) as http:
        for i in range(5):
            response = http.get(
                "/ingest/osmand/",
                params={"id": f"no-such-key-{i}", "lat": "46.0", "lon": "14.5"},
                # A new address per guess: believed, each would get a fresh budget.
                headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
            )
            statuses.append(response.status_code)
    # Two wrong keys a minute are allowed; the third is refused.
    assert statuses == [400, 400, 429, 429, 429]


@slow
def test_python_m_geoshare_serving_execs_uvicorn_with_the_flags(project):
    port = free_port()
    log = project.dir / "serving.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "geoshare.serving", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, env=project.env, stdout=handle, stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for_port(port, process=process)
        except Exception:
            pytest.fail(f"python -m geoshare.serving did not serve:\n{log.read_text()}")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        # It replaced itself with uvicorn: same process, uvicorn's command line.
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        assert [arg.decode() for arg in cmdline] == uvicorn_command(port=port)
    finally:
        process.terminate()
        process.wait(10)
