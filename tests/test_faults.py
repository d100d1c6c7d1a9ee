"""Faults with real processes: Redis dies, uvicorn restarts, clients misbehave."""

import asyncio
import base64
import os
import shutil
import socket
import sqlite3
import time

import orjson
import pytest
import websockets
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from maps.realtime.hub import RoomHub
from maps.realtime.outbox import Outbox
from tests.servers import (
    METRICS_ENV,
    Project,
    RedisServer,
    Uvicorn,
    skip_or_fail,
    until,
)
from tests.test_server import collect_positions, next_frame

slow = pytest.mark.slow


@pytest.fixture
def project(tmp_path):
    """A migrated SQLite project of its own: each test here kills or stops its server."""
    return Project(tmp_path).migrate()


def position(lat, lon, ts=None):
    frame = {"type": "position", "lat": lat, "lon": lon}
    if ts is not None:
        frame["ts"] = ts
    return orjson.dumps(frame).decode()


async def publish_forever(socket, lat, stop):
    """Send a position every 0.3 s until ``stop`` is set; ignore refusals."""
    step = 0
    while not stop.is_set():
        step += 1
        try:
            await socket.send(position(lat, 14.0 + step / 10_000))
        except websockets.ConnectionClosed:
            return
        await asyncio.sleep(0.3)


@slow
async def test_redis_restart_heals_without_reload(project):
    if not shutil.which("redis-server"):
        skip_or_fail("redis-server is not installed: cannot kill and restart Redis")
    redis = RedisServer().start()
    names = ("P1", "P2", "V1", "V2", "V3", "V4", "V5")
    room, keys = project.make_room(members=names)
    env = {"REDIS_URL": redis.url, "REDIS_PREFIX": f"fault{os.getpid()}", **METRICS_ENV}
    one = Uvicorn(project, extra_env=env).start()
    two = Uvicorn(project, extra_env=env).start()
    stop = asyncio.Event()
    try:
        path = f"/ws/rooms/{room}/?key="
        servers = [one, two]
        sockets = {}
        for index, name in enumerate(names):
            server = servers[index % 2]
            sockets[name] = await websockets.connect(server.ws_url + path + keys[name]["key"])
            await next_frame(sockets[name], "snapshot")
        publishers = [asyncio.create_task(publish_forever(sockets[p], lat, stop))
                      for p, lat in (("P1", 46.0), ("P2", 45.0))]
        viewers = [sockets[f"V{i}"] for i in range(1, 6)]
        for viewer in viewers:  # everyone sees both publishers before the fault
            await collect_positions(viewer, keys["P1"]["member"], 1, timeout=5)
            await collect_positions(viewer, keys["P2"]["member"], 1, timeout=5)

        redis.kill()  # no goodbye

        def both_felt_it():  # the publishers' positions fail to reach Redis on both
            return all(server.metric("geoshare_channel_layer_errors_total") > 0
                       for server in servers)

        await until(both_felt_it, timeout=10, interval=0.1)
        assert one.process.poll() is None and two.process.poll() is None
        redis = RedisServer(port=redis.port).start()  # back, empty
        back_ms = int(time.time() * 1000)

        async def heals(viewer):
            fresh = set()
            async with asyncio.timeout(10):
                while len(fresh) < 2:
                    frame = orjson.loads(await viewer.recv())
                    if frame["type"] == "positions":
                        fresh |= {p["member"] for p in frame["positions"]
                                  if p["seen"] > back_ms}
            return fresh

        results = await asyncio.gather(*(heals(v) for v in viewers))
        expected = {keys["P1"]["member"], keys["P2"]["member"]}
        assert all(result == expected for result in results)
        stop.set()
        await asyncio.gather(*publishers)
        for s in sockets.values():
            await s.close()
    finally:
        stop.set()
        one.stop()
        two.stop()
        redis.stop()


@slow
async def test_restarted_server_resyncs_clients_with_current_state(project):
    room, keys = project.make_room(members=("Ana", "Bo", "Cy"))
    server = Uvicorn(project).start()
    path = f"/ws/rooms/{room}/?key="
    try:
        async with (
            websockets.connect(server.ws_url + path + keys["Ana"]["key"]) as ana,
            websockets.connect(server.ws_url + path + keys["Bo"]["key"]) as bo,
        ):
            await next_frame(ana, "snapshot")
            await next_frame(bo, "snapshot")
            await ana.send(position(46.0, 14.0, 1763700000000))
            await bo.send(position(45.0, 15.0, 1763700000000))
            await collect_positions(ana, keys["Bo"]["member"], 1, timeout=5)
            await bo.send(orjson.dumps({"type": "stop"}).decode())
            await next_frame(ana, "stopped")

            def history_written():
                with sqlite3.connect(project.db) as db:
                    members = db.execute("select distinct member_id from maps_position")
                    return {row[0] for row in members} == {
                        keys["Ana"]["member"], keys["Bo"]["member"]}

            await until(history_written, interval=0.05)
            server.kill()
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await ana.recv()
        server = Uvicorn(project, port=server.port).start()
        async with websockets.connect(server.ws_url + path + keys["Cy"]["key"]) as cy:
            snapshot = await next_frame(cy, "snapshot")
        live = {p["member"]: (p["lat"], p["lon"]) for p in snapshot["positions"]}
        assert live == {keys["Ana"]["member"]: (46.0, 14.0)}  # Bo stopped: no marker
        online = {m["id"] for m in snapshot["members"] if m["online"]}
        assert online == {keys["Cy"]["member"]}
    finally:
        server.stop()


@slow
async def test_graceful_stop_writes_buffered_history(project):
    room, keys = project.make_room(members=("Ana", "Bo"))
    # A long flush interval: only the shutdown can write these positions in time.
    server = Uvicorn(project, extra_env={"GEOSHARE_HISTORY_FLUSH_MS": "60000"}).start()
    path = f"/ws/rooms/{room}/?key="
    try:
        async with (
            websockets.connect(server.ws_url + path + keys["Ana"]["key"]) as ana,
            websockets.connect(server.ws_url + path + keys["Bo"]["key"]) as bo,
        ):
            await next_frame(ana, "snapshot")
            await next_frame(bo, "snapshot")
            for i in range(3):
                await ana.send(position(46.0 + i, 14.0, 1763700000000 + i))
                await collect_positions(bo, keys["Ana"]["member"], 1, timeout=5)
            server.stop()  # SIGTERM: uvicorn's graceful shutdown
    finally:
        server.stop()
    with sqlite3.connect(project.db) as db:
        stored = db.execute("select lat from maps_position order by lat").fetchall()
    assert stored == [(46.0,), (47.0,), (48.0,)]


def raw_handshake(port, path):
    """Open a WebSocket with a bare socket that will never read or answer pings."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    )
    response = sock.recv(4096)
    assert b" 101 " in response.split(b"\r\n", 1)[0]
    return sock


@slow
async def test_vanished_client_is_shown_offline_after_ping_timeout(project):
    room, keys = project.make_room(members=("Ana", "Bo"))
    args = ["--ws-ping-interval", "1", "--ws-ping-timeout", "1"]
    with Uvicorn(project, extra_args=args) as server:
        path = f"/ws/rooms/{room}/?key="
        async with websockets.connect(server.ws_url + path + keys["Bo"]["key"]) as bo:
            await next_frame(bo, "snapshot")
            ghost = raw_handshake(server.port, path + keys["Ana"]["key"])
            try:
                ana = keys["Ana"]["member"]
                started = time.monotonic()
                states = []
                async with asyncio.timeout(8):
                    while states[-1:] != [False]:
                        frame = await next_frame(bo, "presence")
                        if frame["member"]["id"] == ana:
                            states.append(frame["online"])
                assert states == [True, False]
                # Ping interval plus timeout is 2 s; allow scheduling slack.
                assert time.monotonic() - started < 8
            finally:
                ghost.close()


async def never(message):
    """An ASGI send whose client never reads: it blocks forever."""
    await asyncio.Event().wait()


@pytest.mark.django_db(transaction=True)
async def test_socket_that_never_reads_stays_bounded_and_others_unaffected(
    room, member, member_key, other_key, connect, hubs
):
    watcher = await connect(room, key=other_key)
    sender = await connect(room, key=member_key)
    hub = hubs.get(room.pk)
    stuck = Outbox(send=never, close=None, snapshot=lambda: hub.snapshot_message(member.pk),
                   member_id=member.pk, via_key=True, address="192.0.2.1", max_pending=10)
    stuck.start()
    hub.attach(stuck, {"id": member.pk, "name": "Ana", "color": "#000", "role": "member"})
    for i in range(40):
        await sender.send({"type": "position", "lat": 46 + i / 1000, "lon": 14.5,
                           "ts": 1763700000000 + i})
        got = await watcher.receive_type("positions")
        assert got["positions"][-1]["ts"] == 1763700000000 + i  # others keep up
        assert len(stuck) <= 10
    # Its backlog was replaced by the latest state, not kept.
    newest = orjson.loads(stuck._box[0]["text"])
    assert newest["type"] == "snapshot"
    hub.detach(stuck)
    stuck.stop()


@pytest.mark.django_db(transaction=True)
async def test_exception_in_one_room_does_not_stop_others(
    room, member_key, other_key, stranger_and_key, connect, hubs
):
    stranger, stranger_key = stranger_and_key
    elsewhere = await database_sync_to_async(lambda: stranger.room)()
    watcher = await connect(room, key=other_key)
    sender = await connect(room, key=member_key)
    outsider = await connect(elsewhere, key=stranger_key)
    # A malformed message reaches the first room's hub: it raises inside handle().
    await get_channel_layer().group_send(f"room.{room.pk}", {"type": "room.fix", "p": {}})
    await outsider.send({"type": "position", "lat": 1.0, "lon": 2.0})
    assert (await outsider.receive_type("positions"))["positions"][0]["lat"] == 1.0
    await sender.send({"type": "position", "lat": 3.0, "lon": 4.0})
    assert (await watcher.receive_type("positions"))["positions"][0]["lat"] == 3.0
    assert isinstance(hubs.get(room.pk), RoomHub) and not hubs.get(room.pk).closed
