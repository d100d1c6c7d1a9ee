"""geoshare on PostgreSQL (DATABASE_URL), as users who outgrow SQLite run it.

Each test gets a private database on the server tests.servers.postgres_database finds
(``GEOSHARE_TEST_POSTGRES``, a PostgreSQL ``DATABASE_URL``, or trust authentication on
127.0.0.1:5432); skipped when none answers (failed under CI).
"""

import json
import subprocess
import sys

import orjson
import psycopg
import pytest
import websockets

from tests.servers import ROOT, Project, Uvicorn, postgres_database, until
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


# Threads of one process, each on its own PostgreSQL connection, all making a link for
# the same member at once; printed: how many were made, refused, and are stored.
_RACE = """
import json, sys, threading
import django
django.setup()
from django.db import connection
from maps import services
from maps.models import Member

member_id, kind, threads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
create = {"watch": lambda m: services.watch_link_create(member=m, minutes=60),
          "signin": lambda m: services.signin_link_create(member=m)}[kind]
start = threading.Barrier(threads)
made, refused, failed = [], [], []


def run():
    try:
        member = Member.objects.get(pk=member_id)
        start.wait(timeout=30)
        try:
            made.append(create(member)[0].pk)
        except ValueError:
            refused.append(1)
    except Exception as exc:
        failed.append(repr(exc))
    finally:
        connection.close()


workers = [threading.Thread(target=run) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
member = Member.objects.get(pk=member_id)
links = member.watch_links if kind == "watch" else member.signin_links
print(json.dumps({"made": len(made), "refused": len(refused), "failed": failed,
                  "stored": links.count()}))
"""


@pytest.mark.parametrize("kind, cap, threads", [("watch", 20, 32), ("signin", 5, 16)])
def test_concurrent_link_creates_never_pass_the_members_cap(pg_project, kind, cap,
                                                            threads):
    project, _url = pg_project
    _room, people = project.make_room(members=("Ana",))
    result = subprocess.run(
        [sys.executable, "-c", _RACE, str(people["Ana"]["member"]), kind, str(threads)],
        cwd=ROOT, env=project.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"made": cap, "refused": threads - cap, "failed": [],
                       "stored": cap}
