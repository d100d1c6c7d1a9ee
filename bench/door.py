"""A phone door's CPU per request in one process: ``python -m bench.door``.

No HTTP server, no load generator: the project's ASGI application is called directly,
50 requests in flight (as ``bench.ingest``'s wrk connections), rotating over 1,000
devices of one room, with history on and the durable group commit (every answer waits
for its commit, as in production). The result is the process's CPU time (every thread:
the event loop and the history writer's database thread) per request, in microseconds.
Without uvicorn's HTTP parsing and the viewers' fan-out it is the part of a phone's
request that is geoshare's own; ``bench.ingest`` measures the whole on a real server.
On a machine shared with other work the CPU time per request varies much less than a
server's throughput does, which is why the issue 16 steps were measured with it too.

``--profile FILE`` records the run with py-spy (raw stacks of the thread holding the
GIL; ``python -m bench.stacks FILE`` summarises them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DOORS, make_devices, prepare_env

IN_FLIGHT = 50


def request_for(door: str, key: str, now_s: int) -> tuple[dict, bytes]:
    """The ASGI scope and body of one request of ``door`` for device ``key``."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench.door")]
    path, query, method, body = "/ingest/osmand/", b"", "GET", b""
    if door == "osmand-get":
        query = f"id={key}&lat=46.05&lon=14.5&accuracy=8".encode()
    elif door == "osmand-post":
        method = "POST"
        body = f"id={key}&lat=46.05&lon=14.5&accuracy=8".encode()
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    else:
        method, path = "POST", "/ingest/owntracks/"
        body = (b'{"_type":"location","lat":46.05,"lon":14.5,"tst":%d,"acc":8}' % now_s)
        token = base64.b64encode(f"bench:{key}".encode())
        headers += [(b"content-type", b"application/json"),
                    (b"authorization", b"Basic " + token)]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000)}
    return scope, body


async def call(application, scope: dict, body: bytes, statuses: dict) -> None:
    """Send one request to ``application``; count its status in ``statuses``."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never hangs up

    async def send(message):
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    await application(scope, receive, send)


async def drive(application, door: str, keys: list[str], count: int,
                statuses: dict) -> None:
    """``count`` requests, :data:`IN_FLIGHT` at a time, each in-flight slot rotating
    over ``keys`` as wrk's connections do."""
    now_s = int(time.time())

    async def slot(index: int) -> None:
        for n in range(count // IN_FLIGHT):
            key = keys[(index + IN_FLIGHT * n) % len(keys)]
            await call(application, *request_for(door, key, now_s + n), statuses)

    await asyncio.gather(*(slot(i) for i in range(IN_FLIGHT)))


async def measure(door: str, keys: list[str], count: int, warmup: int,
                  profile: Path | None) -> dict:
    from geoshare.asgi import application  # after django.setup()

    startup: asyncio.Queue = asyncio.Queue()
    said: asyncio.Queue = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.get_running_loop().create_task(
        application({"type": "lifespan", "asgi": {"version": "3.0"}}, startup.get, said.put))
    await said.get()
    statuses: dict = {}
    # Every share started, every key cached: the steady state of a room in use.
    await drive(application, door, keys, warmup, statuses)
    statuses.clear()
    spy = None
    if profile is not None:
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
             "--rate", "250", "--nonblocking", "--gil", "--duration", "8",
             "--pid", str(os.getpid()), "-o", str(profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(1)
    cpu, wall = time.process_time(), time.perf_counter()
    await drive(application, door, keys, count, statuses)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if spy is not None:
        spy.wait()
    await startup.put({"type": "lifespan.shutdown"})
    await said.get()
    await lifespan
    return {"door": door, "requests": count, "cpu_us_per_request": round(cpu / count * 1e6),
            "wall_us_per_request": round(wall / count * 1e6), "statuses": {str(k): v for k, v in statuses.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doors", default="osmand-get",
                        help=f"comma-separated subset of {','.join(DOORS)}")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--profile", metavar="FILE", help="py-spy the measured part")
    args = parser.parse_args(argv)
    prepare_env(Path(tempfile.mkdtemp(prefix="bench-door-")))
    from django.conf import settings  # after django.setup()

    # Plain HTTP in production mode, as bench.ingest's servers run.
    settings.SECURE_SSL_REDIRECT = False
    keys, _ids, _paths = make_devices(1000, 0, 0)
    for door in args.doors.split(","):
        profile = Path(args.profile) if args.profile else None
        result = asyncio.run(measure(door, keys, args.requests, args.warmup, profile))
        print(json.dumps(result), flush=True)
        if set(result["statuses"]) != {"200"}:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
