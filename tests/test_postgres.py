"""geoshare on PostgreSQL (DATABASE_URL), as users who outgrow SQLite run it.

Uses the server at ``GEOSHARE_TEST_POSTGRES`` (default
``postgres://postgres@127.0.0.1:5432/test``) and creates a database of its own there;
skips when no server answers (fails under CI).
"""

import asyncio
import os
import time
import uuid

import orjson
import psycopg
import pytest
import websockets

from tests.servers import Project, Uvicorn, skip_or_fail
from tests.test_server import collect_positions, make_room, next_frame

ADMIN_URL = os.environ.get("GEOSHARE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_project(tmp_path):
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        skip_or_fail(f"no PostgreSQL at {ADMIN_URL}: {exc}")
    name = f"geoshare_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield Project(tmp_path, DATABASE_URL=url).migrate(), url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


async def test_live_room_history_and_restart_on_postgres(pg_project):
    project, url = pg_project
    room, keys = make_room(project, members=("Ana", "Bo"))
    path = f"/ws/rooms/{room}/?key="
    base = 1_763_700_000_000
    with Uvicorn(project) as server:
        async with (
            websockets.connect(server.ws_url + path + keys["Ana"]["key"]) as ana,
            websockets.connect(server.ws_url + path + keys["Bo"]["key"]) as bo,
        ):
            await next_frame(ana, "snapshot")
            await next_frame(bo, "snapshot")
            for i in range(5):
                await ana.send(orjson.dumps({"type": "position", "lat": 46 + i / 100,
                                             "lon": 14.5, "ts": base + i}).decode())
                await asyncio.sleep(0.15)
            got = await collect_positions(bo, keys["Ana"]["member"], 5, timeout=5)
            assert [p["ts"] for p in got] == [base + i for i in range(5)]
            await bo.send(orjson.dumps({"type": "position", "lat": 45.0, "lon": 15.0}).decode())
            await collect_positions(ana, keys["Bo"]["member"], 1, timeout=5)
            await bo.send(orjson.dumps({"type": "stop"}).decode())
            await next_frame(ana, "stopped")
    deadline = time.monotonic() + 5
    with psycopg.connect(url) as db:
        while time.monotonic() < deadline:
            count = db.execute("select count(*) from maps_position").fetchone()[0]
            if count == 6:
                break
            await asyncio.sleep(0.2)
        assert count == 6
    # A new process loads the live state from PostgreSQL: Ana's newest, not Bo's.
    with Uvicorn(project) as server:
        async with websockets.connect(server.ws_url + path + keys["Bo"]["key"]) as bo:
            snapshot = await next_frame(bo, "snapshot")
    assert [(p["member"], p["lat"], p["ts"]) for p in snapshot["positions"]] == [
        (keys["Ana"]["member"], 46.04, base + 4)]
