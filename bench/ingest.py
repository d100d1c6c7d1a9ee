"""Phone ingest throughput: ``python -m bench.ingest`` (part of ``make bench``).

Positions per second through ``/ingest/osmand/`` on one core: one uvicorn serving
geoshare (``bench.run.Server``, pinned to core 0, a fresh SQLite database, history on)
and ``wrk`` on core 1 with ``--connections`` connections for ``--seconds`` seconds.
Each request is one OsmAnd query (``id``, ``lat``, ``lon``, no timestamp: the server's
time) from one of ``--devices`` devices in rooms of 5, rotated by a Lua script, so every
device stays inside the per-member position budget (docs/security.md) and no limit is
lifted. After the run the server is killed with SIGKILL, not stopped: the positions in
the database then are the ones stored by the time their request was answered
(``stored_at_kill``), against ``answered_200``.

Prints one line of JSON: ``{"requests_s", "answered_200", "non_2xx", "stored_at_kill",
"server_cpu_pct", ...}``. Needs ``wrk`` (Debian's package; ``make bench`` installs it).
"""

import argparse
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import Server, prepare_env
from tests.servers import pinned

LUA = """
local paths = {%s}
local i = 0
local other = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
response = function(status, headers, body)
  if status ~= 200 then other = other + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("not 200: %%d\\n", other))
end
"""


def make_devices(count):
    """Create ``count`` keyed members in rooms of 5; return their OsmAnd query paths."""
    from django.db import transaction

    from maps.services import member_create, room_create

    paths = []
    with transaction.atomic():
        for start in range(0, count, 5):
            room, _ = room_create(name=f"ingest {start}", owner_name="bench owner")
            for m in range(min(5, count - start)):
                _, key = member_create(room=room, name=f"phone {m}", role="member")
                paths.append(f"/ingest/osmand/?id={key}&lat=46.05&lon=14.5&accuracy=8")
    return paths


def parse_wrk(text):
    """Return ``(requests per second, total requests, non-2xx responses)`` of wrk's output."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return rate, total, int(bad.group(1)) if bad else 0


def run(devices=200, connections=50, seconds=10):
    """Run one measurement; return the result dict (see the module docstring)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    # Production mode, but plain HTTP on loopback: without this every request would be
    # a 301 to https (which wrk does not count as an error).
    env = {**prepare_env(work), "SECURE_SSL_REDIRECT": "0"}
    paths = make_devices(devices)
    script = work / "rotate.lua"
    script.write_text(LUA % ", ".join(json.dumps(p) for p in paths))
    server = Server(env, work, core=0)
    try:
        url = f"http://127.0.0.1:{server.port}"
        cpu_before = server.cpu()
        started = time.monotonic()
        out = subprocess.run(
            pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                    url], 1),
            capture_output=True, text=True, check=True,
        ).stdout
        elapsed = time.monotonic() - started
        cpu = (server.cpu() - cpu_before) / elapsed * 100
    finally:
        server.kill()
    rate, total, bad = parse_wrk(out)
    not_200 = int(re.search(r"not 200: (\d+)", out).group(1))
    db = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM maps_position").fetchone()[0]
    return {
        "requests_s": round(rate),
        "answered_200": total - not_200,
        "not_200": not_200,
        "non_2xx": bad,
        "stored_at_kill": stored,
        "server_cpu_pct": round(cpu),
        "devices": devices,
        "connections": connections,
        "seconds": seconds,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.devices, args.connections, args.seconds)))


if __name__ == "__main__":
    sys.exit(main())
