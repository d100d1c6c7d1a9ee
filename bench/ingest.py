"""Phone ingest throughput: ``python -m bench.ingest`` (part of ``make bench``, issue 16).

Positions per second through geoshare's phone doors on one core, each against a bare
control measured in the same run:

- ``osmand-get``: ``GET /ingest/osmand/?id=<key>&lat=..&lon=..&accuracy=8``;
- ``osmand-post``: the same fields as a form (``application/x-www-form-urlencoded``);
- ``owntracks``: ``POST /ingest/owntracks/`` with ``{"_type": "location", "lat", "lon",
  "tst": <now, epoch s>, "acc"}`` and HTTP Basic auth whose password is the device key.

geoshare: one uvicorn (``bench.common.Server``, geoshare's flags) pinned to core 0 on a
fresh SQLite database, history on; ``wrk`` on core 1, ``--connections`` connections,
``--seconds`` seconds, a Lua script rotating over ``--devices`` devices so each device
sends rate/devices positions a second, inside the per-member budget of 1,200 a minute
(docs/security.md; no limit is lifted). The devices and ``--viewers`` viewers (role
``viewer``) are members of one room (``--room-size`` spreads the devices over rooms of
that many instead, the viewers staying in the first); the viewers are ``websockets``
clients in their own process (``bench.viewers``) on core 1, connected, each holding its
``snapshot``, before the load starts.

Checks, per door:

- every answered position is stored: after the run the server is killed with SIGKILL,
  not stopped, so the positions in the database then are the ones stored by the time
  their request was answered (``stored_at_kill`` against ``answered_200``);
- the positions reached the viewers: viewers get coalesced ``positions`` frames (the
  latest position per member per 100 ms tick, docs/protocol.md), so the check is on the
  final state: ``delivered`` is the fraction of (sampled viewer, device) pairs where the
  viewer's latest ``ts`` for the device is that of the device's last stored position
  (its ``LivePosition``), checked on ``--sample-viewers`` viewers that parse every frame;
  every viewer counts its frames (``viewer_frames_min``: the fewest any viewer got).

bare: the same wrk script with ``/bare`` in front of the path, served by
``bench.bare.http_application`` in the same uvicorn app with the same flags: it parses
the query, form or JSON (and the Basic password) and answers 200 with an empty body. No
viewers: it stores and fans out nothing. ``ratio`` is geoshare's rate over bare's.

Prints one line of JSON per run and a summary (target: geoshare at least 5,000
positions/s on every door). ``--profile DIR`` records the geoshare server with py-spy
while wrk runs (``python -m bench.stacks DIR/ingest-<door>.txt`` summarises it). Needs
``wrk`` (Debian's package; ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    DOORS,
    PY,
    ROOT,
    Server,
    child_setup,
    make_devices,
    prepare_env,
    py_spy,
    raise_nofile,
)
from bench.report import print_summary
from tests.servers import pinned

#: Issue 16's target, positions per second on one core, every door.
TARGET_PER_S = 5000
#: The device clock of the OwnTracks door is whole seconds (``tst``).
LUA = """
local keys = {%(keys)s}
local auths = {%(auths)s}
local prefix = %(prefix)s
local door = %(door)s
local i = 0
local other = 0
local form = {["Content-Type"] = "application/x-www-form-urlencoded"}
request = function()
  i = i + 1
  local k = (i %% #keys) + 1
  if door == "osmand-get" then
    return wrk.format("GET", prefix .. "/ingest/osmand/?id=" .. keys[k] ..
      "&lat=46.05&lon=14.5&accuracy=8")
  elseif door == "osmand-post" then
    return wrk.format("POST", prefix .. "/ingest/osmand/", form,
      "id=" .. keys[k] .. "&lat=46.05&lon=14.5&accuracy=8")
  else
    return wrk.format("POST", prefix .. "/ingest/owntracks/",
      {["Content-Type"] = "application/json", ["Authorization"] = auths[k]},
      string.format('{"_type":"location","lat":46.05,"lon":14.5,"tst":%%d,"acc":8}',
                    os.time()))
  end
end
response = function(status, headers, body)
  if status ~= 200 then other = other + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("not 200: %%d\\n", other))
end
"""


def lua_script(door: str, keys: list[str], prefix: str = "") -> str:
    """The wrk script of ``door`` rotating over ``keys``; ``prefix`` ``/bare`` for the
    control."""
    auths = [
        "Basic " + base64.b64encode(f"bench:{k}".encode()).decode() for k in keys
    ]
    return LUA % {
        "keys": ", ".join(json.dumps(k) for k in keys),
        "auths": ", ".join(json.dumps(a) for a in auths),
        "prefix": json.dumps(prefix),
        "door": json.dumps(door),
    }


def parse_wrk(text):
    """Return ``(requests per second, total requests, non-2xx responses)`` of wrk's output."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return rate, total, int(bad.group(1)) if bad else 0


def _db_counts(db: str) -> tuple[int, dict[int, int]]:
    """``(history rows, {member id: live position's device time, epoch ms})``."""
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM maps_position").fetchone()[0]
        live = {}
        for member, when in conn.execute(
            "SELECT member_id, device_time FROM maps_liveposition"
        ):
            dt = datetime.fromisoformat(str(when))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            live[member] = int(dt.timestamp() * 1000)
    return stored, live


def delivery(sampled: list[dict], live: dict[int, int], devices) -> tuple[int, int, list]:
    """``(pairs reached, pairs checked, up to 5 misses)``: a (sampled viewer, device)
    pair is reached when the viewer's latest ``ts`` of the device is at least that of
    the device's stored live position (1 ms of rounding allowed). Devices with no live
    position (none answered) are not checked. A miss is ``{"member", "stored_ts",
    "viewer_ts"}``."""
    reached = checked = 0
    missed: list[dict] = []
    for latest in sampled:
        for member in devices:
            want = live.get(member)
            if want is None:
                continue
            checked += 1
            got = latest.get(str(member), latest.get(member))
            if got is not None and got >= want - 1:
                reached += 1
            elif len(missed) < 5:
                missed.append({"member": member, "stored_ts": want, "viewer_ts": got})
    return reached, checked, missed


def settle(server, timeout: float = 60.0, idle_pct: float = 10.0) -> float:
    """Wait until ``server`` used under ``idle_pct`` % of a core in each of two half
    seconds in a row; return the seconds waited (at most ``timeout``)."""
    started = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - started < timeout:
        cpu0 = server.cpu()
        time.sleep(0.5)
        quiet = quiet + 1 if (server.cpu() - cpu0) / 0.5 * 100 < idle_pct else 0
    return round(time.monotonic() - started, 1)


def _wrk(url: str, script: Path, connections: int, seconds: float) -> str:
    return subprocess.run(
        pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                "-s", str(script), url], 1),
        capture_output=True, text=True, check=True,
    ).stdout


def run_door(door, app, env, work, keys, ids, viewer_paths, *, connections, seconds,
             sample_viewers=50, profile_dir=None, warmup=3.0) -> dict:
    """One wrk run of ``door`` on ``app`` (``geoshare`` or ``bare``) on a fresh server.

    ``warmup`` seconds of the same load go first, not counted: phones that already
    report (their shares started, their keys looked up), the steady state a running
    server is in. The stored count is taken after them.
    """
    script = work / f"{door}-{app}.lua"
    script.write_text(lua_script(door, keys, "/bare" if app == "bare" else ""))
    db = env["DATABASE_URL"].removeprefix("sqlite:///")
    stored0, _ = _db_counts(db)
    server = Server(env, work, core=0)
    viewers = None
    profiler = None
    result: dict = {"door": door, "app": app}
    try:
        url = f"http://127.0.0.1:{server.port}"
        if app == "geoshare" and viewer_paths:
            spec = work / "viewers.json"
            spec.write_text(json.dumps({
                "urls": [f"ws://127.0.0.1:{server.port}{p}" for p in viewer_paths],
                "sample": sample_viewers, "drain_s": 1.0,
            }))
            viewers = subprocess.Popen(
                pinned([PY, "-m", "bench.viewers", str(spec)], 1), cwd=ROOT, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                preexec_fn=child_setup,
            )
            line = viewers.stdout.readline()
            if not line:
                raise RuntimeError("the viewers process exited before connecting")
            connected = json.loads(line)
            result.update(viewers=len(viewer_paths), viewers_connected=connected["ok"],
                          viewers_first_error=connected["first_error"],
                          viewers_connect_s=connected["connect_s"])
        if warmup > 0:
            _wrk(url, script, connections, warmup)
            settle(server)
            stored0, _ = _db_counts(db)
        if profile_dir is not None and app == "geoshare":
            profiler = py_spy(server.process.pid, seconds,
                              profile_dir / f"ingest-{door}.txt")
        cpu0 = server.cpu()
        started = time.monotonic()
        out = _wrk(url, script, connections, seconds)
        elapsed = time.monotonic() - started
        result["server_cpu_pct"] = round((server.cpu() - cpu0) / elapsed * 100)
        # wrk drops the requests in flight when its time is up, but the server goes on
        # with them (stores and publishes them): the viewers' check waits for that.
        result["settle_s"] = settle(server)
        if viewers is not None:
            viewers.stdin.write("stop\n")
            viewers.stdin.flush()
            line = viewers.stdout.readline()
            seen = json.loads(line) if line else {}
        result["server_log"] = server.log_tail(5)
    finally:
        server.kill()
        if viewers is not None and viewers.poll() is None:
            viewers.kill()
        if profiler is not None:
            profiler.wait(60)
    rate, total, bad = parse_wrk(out)
    not_200 = int(re.search(r"not 200: (\d+)", out).group(1))
    stored1, live = _db_counts(db)
    result.update(
        requests_s=round(rate),
        answered_200=total - not_200,
        not_200=not_200,
        non_2xx=bad,
        devices=len(keys),
        connections=connections,
        seconds=seconds,
    )
    if app == "geoshare":
        result["stored_at_kill"] = stored1 - stored0
        result["answered_not_stored"] = max(0, result["answered_200"]
                                            - result["stored_at_kill"])
        # Requests wrk gave up on at its deadline that the server still stored.
        result["stored_not_answered"] = max(0, result["stored_at_kill"]
                                            - result["answered_200"])
    if viewers is not None:
        reached, checked, missed = delivery(seen.get("sampled", []), live, ids)
        result.update(
            delivered=round(reached / checked, 4) if checked else None,
            delivered_pairs=f"{reached}/{checked}",
            missed=missed,
            viewers_stopped_ms=seen.get("stopped_ms"),
            viewer_frames_min=seen.get("frames_min"),
            viewer_frames_max=seen.get("frames_max"),
            viewer_positions=seen.get("positions"),
            viewers_without_frames=seen.get("viewers_without_frames"),
            viewer_resyncs=seen.get("resync_snapshots"),
            viewers_closed=seen.get("closed"),
            viewers_cpu_pct=seen.get("cpu_pct"),
        )
    return result


def run(doors=DOORS, devices=1000, viewers=500, connections=50, seconds=10,
        room_size=0, sample_viewers=50, profile_dir=None, work=None, env=None,
        emit=print, warmup=3.0, extra_env=None) -> list[dict]:
    """Run every door on geoshare and bare; return the summary rows."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    if env is None:
        # Production mode, but plain HTTP on loopback: without this every request would
        # be a 301 to https (which wrk does not count as an error).
        env = prepare_env(work)
    env = {**env, "SECURE_SSL_REDIRECT": "0", **(extra_env or {})}
    keys, ids, viewer_paths = make_devices(devices, viewers, room_size)
    rows = []
    for door in doors:
        kw = dict(connections=connections, seconds=seconds,
                  sample_viewers=sample_viewers, warmup=warmup)
        g = run_door(door, "geoshare", env, work, keys, ids, viewer_paths,
                     profile_dir=profile_dir, **kw)
        emit(json.dumps(g))
        b = run_door(door, "bare", env, work, keys, ids, [], **kw)
        emit(json.dumps(b))
        rows.append(summary_row(door, g, b))
    return rows


def summary_row(door: str, g: dict, b: dict) -> dict:
    """The target row of one door: geoshare's and bare's positions/s, and the checks."""
    rate, bare = g["requests_s"], b["requests_s"]
    ok = (
        g["not_200"] == 0
        and g.get("answered_not_stored", 0) == 0
        and g.get("delivered", 1.0) == 1.0
    )
    checks = f"stored {g.get('stored_at_kill')}/{g['answered_200']} answered"
    if "delivered" in g:
        checks += f", {g['delivered_pairs']} viewer-device last positions"
    return {
        "name": f"ingest {door} (positions/s; {checks})",
        "geoshare": rate,
        "bare": bare,
        "ratio": round(rate / bare, 3) if bare else None,
        "target": f">= {TARGET_PER_S:,}/s, all stored and delivered",
        "met": ok and rate >= TARGET_PER_S,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doors", default=",".join(DOORS),
                        help=f"comma-separated subset of {','.join(DOORS)}")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--room-size", type=int, default=0,
                        help="devices per room (0: one room with the viewers)")
    parser.add_argument("--sample-viewers", type=int, default=50,
                        help="viewers that parse every frame for the delivery check")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of the same load first, not counted")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the geoshare server while wrk runs")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the servers (e.g. GEOSHARE_INGEST_FRONT=0), "
                        "to measure what a step is worth")
    args = parser.parse_args(argv)
    raise_nofile()
    profile_dir = None
    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
    rows = run(
        doors=[d.strip() for d in args.doors.split(",") if d.strip()],
        devices=args.devices, viewers=args.viewers, connections=args.connections,
        seconds=args.seconds, room_size=args.room_size,
        sample_viewers=args.sample_viewers, profile_dir=profile_dir,
        warmup=args.warmup,
        extra_env=dict(item.split("=", 1) for item in args.set),
    )
    print_summary(rows)


if __name__ == "__main__":
    sys.exit(main())
