"""geoshare on PostgreSQL (DATABASE_URL), as users who outgrow SQLite run it.

Each test gets a private database on the server tests.servers.postgres_database finds
(``GEOSHARE_TEST_POSTGRES``, a PostgreSQL ``DATABASE_URL``, or trust authentication on
127.0.0.1:5432); skipped when none answers (failed under CI).
"""

import orjson
import psycopg
import pytest
import websockets

from tests.servers import Project, Uvicorn, postgres_database, until
from tests.test_server import collect_positions, next_frame

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_project(tmp_path):
    """A migrated project on a private PostgreSQL database; ``(project, url)``."""
    with postgres_database() as url:
        yield Project(tmp_path, database_url=url).migrate(), url


async def test_live_room_history_and_restart_on_postgres(pg_project):
    project, url = pg_project
    room, keys = project.make_room(members=("Ana", "Bo"))
    path = f"/ws/rooms/{room}/?key="
    base = 1_763_700_000_000
    with Uvicorn(project) as server:
        async with (
            websockets.connect(server.ws_url + path + keys["Ana"]["key"]) as ana,
            websockets.connect(server.ws_url + path + keys["Bo"]["key"]) as bo,
        ):
            await next_frame(ana, "snapshot")
            await next_frame(bo, "snapshot")
            got = []
            for i in range(5):
                await ana.send(orjson.dumps({"type": "position", "lat": 46 + i / 100,
                                             "lon": 14.5, "ts": base + i}).decode())
                # Each one seen before the next is sent: no two share a tick.
                got += await collect_positions(bo, keys["Ana"]["member"], 1, timeout=5)
            assert [p["ts"] for p in got] == [base + i for i in range(5)]
            await bo.send(orjson.dumps({"type": "position", "lat": 45.0, "lon": 15.0}).decode())
            await collect_positions(ana, keys["Bo"]["member"], 1, timeout=5)
            await bo.send(orjson.dumps({"type": "stop"}).decode())
            await next_frame(ana, "stopped")
    with psycopg.connect(url, autocommit=True) as db:

        def count():
            return db.execute("select count(*) from maps_position").fetchone()[0]

        await until(lambda: count() == 6, interval=0.05)
        assert count() == 6
    # A new process loads the live state from PostgreSQL: Ana's newest, not Bo's.
    with Uvicorn(project) as server:
        async with websockets.connect(server.ws_url + path + keys["Bo"]["key"]) as bo:
            snapshot = await next_frame(bo, "snapshot")
    assert [(p["member"], p["lat"], p["ts"]) for p in snapshot["positions"]] == [
        (keys["Ana"]["member"], 46.04, base + 4)]
