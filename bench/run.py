"""The fan-out benchmark driver: ``python -m bench.run --quick`` / ``--full``.

For every load point it starts a fresh uvicorn serving ``bench.asgi:application``
(geoshare and both controls) with geoshare's uvicorn flags (``geoshare.serving``, as
``make run``; ``bench.common.Server``, on ``tests.servers``, the tests' harness)
pinned to core 0 with ``taskset``, runs the load generator
(``bench.loadgen``) in its own process pinned to core 1, measures the server's CPU and
RSS with psutil, stops the server, and prints one plain-text table with geoshare, the
naive floor and the bare ceiling side by side. Scenarios (issue 6):

- S1: one room of M members, each publishing 1 Hz, all viewing; M ascends until p99
  passes 1 s or delivery drops below 99 % (per app).
- S2: rooms of 5 members each publishing every 5 s, up to 10,000 sockets; measured with
  uvicorn's ``--ws wsproto`` and ``--ws websockets`` for the memory per socket.
- S3: a burst: 10 % of a 500-member room publish at 10 Hz for 10 s.
- S1-redis (``--redis``, on in ``--full``): geoshare with ``REDIS_URL`` (channels_redis)
  on two uvicorn processes (one per core; the generator then shares the cores), clients
  split between them.
- ingest: ``bench.ingest`` (issue 16): positions/s through the phone doors with 500
  viewers in the room, against a bare HTTP control;
- storm: ``bench.storm`` (issue 16): sockets connecting at once until each holds its
  snapshot, against the bare hub;
- history: ``bench.history`` in its own process (a million positions on PostgreSQL:
  the day's drawable track, GPX, API pages, a prune under inserts), after the rest;
  ``--scenarios history`` runs it alone.

S1 and S2 rows are followed by a line comparing geoshare's p99 with bare's (issue 16's
ratio targets), and the run ends with the table of every target (``bench.report``):
name, geoshare, bare, ratio, target, met.

geoshare runs on a fresh SQLite database in a temporary directory (``DATABASE_URL``),
migrated first; its rooms and members are made through ``maps.services`` in this
process, and clients connect with device keys.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import ingest, storm
from bench.common import (
    PY,
    ROOT,
    Server,
    child_setup,
    prepare_env,
    py_spy,
    raise_nofile,
)
from bench.report import print_summary
from tests.servers import RedisServer, pinned

APPS = ("geoshare", "naive", "bare")
P99_LIMIT_MS = 1000
DELIVERY_MIN = 0.99
#: Issue 16: geoshare's p99 over bare's, at most this, at the headline point of each
#: scenario (S1 at 2,000 members, S2 at 10,000 sockets in ``--full``).
RATIO_TARGETS = {"S1": 1.4, "S2": 1.5}
#: Apps that S1's stopping rule never stops: the control of those ratios.
UNSTOPPED = ("bare",)


# -- rooms --------------------------------------------------------------------------


class Fixtures:
    """Makes rooms for the three apps; geoshare's through ``maps.services``."""

    def __init__(self) -> None:
        self.seq = 0

    def rooms(self, app: str, sizes: list[int]) -> list[list[str]]:
        """Return, per room, the URL path (with query) of each member's client."""
        self.seq += 1
        if app == "geoshare":
            return self._geoshare_rooms(sizes)
        tag = f"{self.seq}-{secrets.token_hex(3)}"
        return [
            [f"/ws/{app}/r{tag}-{i}/?member={m + 1}" for m in range(n)]
            for i, n in enumerate(sizes)
        ]

    def _geoshare_rooms(self, sizes: list[int]) -> list[list[str]]:
        # after django.setup()
        from django.db import transaction

        from maps.domain.sources import device_source
        from maps.models import Member, Share
        from maps.services import member_create, room_create

        out = []
        with transaction.atomic():
            for i, n in enumerate(sizes):
                room, owner = room_create(
                    name=f"bench {self.seq}-{i}", owner_name="bench owner"
                )
                keys = []
                for m in range(n):
                    member, key = member_create(room=room, name=f"m{m + 1}",
                                                role="member")
                    keys.append(key)
                    # The share's source is the device whose key the socket opens with
                    # (one source per share): its first position claims nothing.
                    Member.objects.filter(pk=member.pk).update(
                        share_source=device_source(member.devices.get().pk))
                out.append([f"/ws/rooms/{room.public_id}/?key={k}" for k in keys])
            # The members are sharing already, as in a room in use, from the device
            # they connect with: a member's first position would otherwise start or
            # claim their share (a write and a room.share event, once per member),
            # and in a run of a few seconds nearly every position would be someone's
            # first.
            Member.objects.filter(room__name__startswith=f"bench {self.seq}-").update(
                share=Share.ON)
        return out


# -- one point ----------------------------------------------------------------------


@dataclass
class Point:
    scenario: str
    app: str
    sizes: list[int]
    publishers_per_room: list[int]
    rate_hz: float
    duration_s: float
    ws: str = "wsproto"
    servers: int = 1
    redis: bool = False
    drain_s: float = 3.0
    result: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.scenario} {self.app} {self.ws} {sum(self.sizes)}"


def _reader(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def start_profilers(point: Point, servers: list[Server], out: Path) -> list:
    """``py-spy record`` each server for the publishing window (one file per server in
    ``out``, see :func:`py_spy`)."""
    procs = []
    for s in servers:
        name = (
            f"{point.scenario}-{point.app}-{point.ws}-{sum(point.sizes)}-{s.port}.txt"
        )
        proc = py_spy(s.process.pid, point.duration_s, out / name)
        if proc is not None:
            procs.append(proc)
    return procs


def run_point(
    point: Point,
    env: dict,
    fixtures: Fixtures,
    work: Path,
    profile_dir: Path | None = None,
    profile_apps: tuple = ("geoshare",),
) -> dict:
    """Run one point on fresh server(s); return the loadgen result plus server metrics.

    With ``profile_dir``, the servers of ``profile_apps`` points are sampled by py-spy
    while the generator publishes.
    """
    profilers: list = []
    paths = fixtures.rooms(point.app, point.sizes)
    server_env = dict(env)
    redis = None
    if point.redis:
        redis = RedisServer(directory=work).start()
        server_env["REDIS_URL"] = redis.url
    servers = []
    try:
        for i in range(point.servers):
            core = i if point.servers > 1 else 0
            servers.append(Server(server_env, work, ws=point.ws, core=core))
        rooms = []
        k = 0
        for r, members in enumerate(paths):
            clients = []
            for j, path in enumerate(members):
                server = servers[k % len(servers)]
                k += 1
                clients.append(
                    {
                        "url": f"ws://127.0.0.1:{server.port}{path}",
                        "publish": j < point.publishers_per_room[r],
                    }
                )
            rooms.append({"name": f"room{r}", "clients": clients})
        spec = {
            "rooms": rooms,
            "rate_hz": point.rate_hz,
            "duration_s": point.duration_s,
            "drain_s": point.drain_s,
            "settle_s": 1.0,
            "sample_budget": 40_000,
            "connect_concurrency": 64,
            "connect_timeout_s": 120,
            "wait_for_go": True,
        }
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        gen_core = None if point.servers > 1 else 1
        gen = subprocess.Popen(
            pinned([PY, "-m", "bench.loadgen", str(spec_path)], gen_core),
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=child_setup,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(gen.stdout, lines), daemon=True).start()
        metrics: dict = {}
        deadline = time.monotonic() + 300 + point.duration_s
        result = None
        while result is None:
            try:
                line = lines.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                gen.kill()
                raise RuntimeError(f"{point.label}: the load generator gave no result")
            event = json.loads(line)
            kind = event.get("event")
            if kind == "connected":
                metrics["connected"] = event
                metrics["rss_connected"] = sum(s.rss() for s in servers)
                gen.stdin.write("go\n")
                gen.stdin.flush()
            elif kind == "publishing":
                metrics["t0"] = time.monotonic()
                metrics["cpu0"] = [s.cpu() for s in servers]
                if profile_dir is not None and point.app in profile_apps:
                    profilers = start_profilers(point, servers, profile_dir)
            elif kind == "published":
                wall = time.monotonic() - metrics["t0"]
                cpu = [s.cpu() - c for s, c in zip(servers, metrics["cpu0"])]
                metrics["server_cpu_pct"] = [round(100 * c / wall, 1) for c in cpu]
                metrics["rss_end"] = sum(s.rss() for s in servers)
            elif kind == "result":
                result = event
        gen.wait(30)
        for prof in profilers:
            prof.wait(60)
        rss_base = sum(s.rss_base for s in servers)
        sockets = max(1, result["sockets"])
        result.update(
            server_cpu_pct=metrics.get("server_cpu_pct"),
            rss_base=rss_base,
            rss_connected=metrics.get("rss_connected"),
            rss_end=metrics.get("rss_end"),
            kib_per_socket_idle=(metrics.get("rss_connected", rss_base) - rss_base)
            / 1024
            / sockets,
            kib_per_socket=(metrics.get("rss_end", rss_base) - rss_base)
            / 1024
            / sockets,
            server_log=[s.log_tail(5) for s in servers if s.log_tail(5).strip()],
        )
        return result
    finally:
        for s in servers:
            s.stop()
        if redis is not None:
            redis.stop()


def failed(result: dict) -> bool:
    """Whether a point misses S1's continuation rule (p99 > 1 s or delivery < 99 %)."""
    p99 = result.get("latency", {}).get("p99")
    delivery = result.get("delivery")
    return (
        p99 is None
        or p99 > P99_LIMIT_MS
        or delivery is None
        or delivery < DELIVERY_MIN
        or result.get("connect_failed", 0) > 0
    )


# -- the grid -----------------------------------------------------------------------


def s1_points(ms: list[int], duration: float) -> list[list[Point]]:
    return [[Point("S1", app, [m], [m], 1.0, duration) for app in APPS] for m in ms]


def s2_points(
    sockets: list[int], duration: float, impls: list[str]
) -> list[list[Point]]:
    out = []
    for n in sockets:
        rooms = n // 5
        for ws in impls:
            out.append(
                [
                    Point("S2", app, [5] * rooms, [5] * rooms, 0.2, duration, ws=ws)
                    for app in APPS
                ]
            )
    return out


def s3_points(duration: float) -> list[list[Point]]:
    return [[Point("S3", app, [500], [50], 10.0, duration) for app in APPS]]


def redis_points(ms: list[int], duration: float) -> list[list[Point]]:
    return [
        [Point("S1-redis", "geoshare", [m], [m], 1.0, duration, servers=2, redis=True)]
        for m in ms
    ]


def grid(args) -> list[tuple[str, list[list[Point]], bool]]:
    """Return ``(scenario, rows of side-by-side points, ascending)`` to run."""
    if args.full:
        plan = [
            (
                "S1",
                s1_points([50, 100, 200, 300, 500, 700, 1000, 1500, 2000], 10),
                True,
            ),
            (
                "S2",
                s2_points([2000, 5000, 10000], 15, ["wsproto", "websockets"]),
                False,
            ),
            ("S3", s3_points(10), False),
            ("S1-redis", redis_points([200, 500, 1000], 10), True),
        ]
    else:
        plan = [
            ("S1", s1_points([50, 200, 500], 6), True),
            ("S2", s2_points([2000], 10, ["wsproto", "websockets"]), False),
            ("S3", s3_points(10), False),
        ]
        if args.redis:
            plan.append(("S1-redis", redis_points([500], 6), True))
    wanted = {s.strip() for s in args.scenarios.split(",")} if args.scenarios else None
    apps = set(args.apps.split(",")) if args.apps else set(APPS)
    out = []
    for name, rows, ascending in plan:
        if wanted and name not in wanted:
            continue
        rows = [[p for p in row if p.app in apps] for row in rows]
        rows = [row for row in rows if row]
        if args.ws:
            rows = [[p for p in row if p.ws == args.ws] for row in rows]
            rows = [row for row in rows if row]
        if args.sizes:
            sizes = {int(x) for x in args.sizes.split(",")}
            rows = [row for row in rows if sum(row[0].sizes) in sizes]
        if args.duration:
            for row in rows:
                for p in row:
                    p.duration_s = args.duration
        out.append((name, rows, ascending))
    return out


# -- the table ------------------------------------------------------------------------


COLUMNS = [
    ("scenario", 9),
    ("app", 8),
    ("ws", 10),
    ("sockets", 7),
    ("offered/s", 9),
    ("deliv/s", 9),
    ("deliv%", 7),
    ("p50", 6),
    ("p90", 6),
    ("p99", 6),
    ("max", 6),
    ("srvCPU%", 9),
    ("RSS MiB", 7),
    ("KiB/sock", 8),
    ("genCPU%", 7),
    ("notes", 0),
]


def _fmt(v, nd=0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def row_text(p: Point) -> str:
    r = p.result
    if r.get("skipped"):
        cells = [p.scenario, p.app, p.ws, str(sum(p.sizes))] + ["-"] * 11
        cells.append(r["skipped"])
    elif r.get("error"):
        cells = [p.scenario, p.app, p.ws, str(sum(p.sizes))] + ["-"] * 11
        cells.append("error: " + r["error"][:80])
    else:
        lat = r["latency"]
        notes = []
        if r.get("connect_failed"):
            notes.append(
                f"{r['connect_failed']} connects failed ({(r.get('first_error') or '')[:60]})"
            )
        if r.get("close_codes"):
            notes.append(
                "closed " + ",".join(f"{c}x{n}" for c, n in r["close_codes"].items())
            )
        if r.get("error_frames"):
            notes.append(f"{r['error_frames']} error frames")
        if r.get("stuck_publishers"):
            notes.append(f"{r['stuck_publishers']} publishers stuck")
        if (r.get("gen_loop_lag_max_ms") or 0) > 100:
            notes.append(f"generator loop lag up to {r['gen_loop_lag_max_ms']:.0f} ms")
        if r.get("generator_saturated"):
            notes.append("GENERATOR SATURATED")
        cpu = r.get("server_cpu_pct") or []
        cells = [
            p.scenario,
            p.app,
            p.ws,
            str(r["sockets"]),
            _fmt(r["offered_per_s"]),
            _fmt(r["delivered_per_s"]),
            _fmt(100 * r["delivery"], 1) if r.get("delivery") is not None else "-",
            _fmt(lat["p50"]),
            _fmt(lat["p90"]),
            _fmt(lat["p99"]),
            _fmt(lat["max"]),
            "+".join(_fmt(c) for c in cpu) or "-",
            _fmt(r["rss_end"] / 2**20 if r.get("rss_end") else None, 0),
            _fmt(r.get("kib_per_socket"), 1),
            _fmt(r.get("gen_cpu_pct"), 0),
            "; ".join(notes),
        ]
    return "  ".join(c.rjust(w) if w else c for c, (_, w) in zip(cells, COLUMNS))


def header() -> str:
    line = "  ".join(n.rjust(w) if w else n for n, w in COLUMNS)
    return line + "\n" + "-" * len(line)


# -- geoshare against bare ---------------------------------------------------------------


def ratio_row(row: list[Point]) -> dict | None:
    """S1 / S2: geoshare's p99 against bare's on one row of side-by-side points, as a
    target row (``bench.report``); ``None`` for other scenarios or a row without both."""
    by_app = {p.app: p for p in row}
    first = row[0]
    target = RATIO_TARGETS.get(first.scenario)
    if target is None or "geoshare" not in by_app or "bare" not in by_app:
        return None

    def p99(p: Point):
        r = p.result
        if r.get("skipped") or r.get("error"):
            return None
        return r["latency"]["p99"]

    g, b = p99(by_app["geoshare"]), p99(by_app["bare"])
    ratio = round(g / b, 2) if g is not None and b else None
    # A p99 of what was delivered says little when much was not.
    delivered = all(
        (p.result.get("delivery") or 0) >= DELIVERY_MIN
        for p in (by_app["geoshare"], by_app["bare"])
    )
    name = f"{first.scenario} {sum(first.sizes)}"
    if first.scenario == "S2":
        name += f" {first.ws}"
    why = by_app["geoshare"].result.get("skipped") or by_app["geoshare"].result.get(
        "error"
    )
    if not why and g is not None and not delivered:
        why = f"delivery under {DELIVERY_MIN:.0%}"
    return {
        "name": f"{name} (p99 ms{'; ' + why[:40] if why else ''})",
        "geoshare": g,
        "bare": b,
        "ratio": ratio,
        "target": f"ratio <= {target:g}",
        "met": ratio is not None and ratio <= target and delivered,
    }


def ratio_line(row: dict) -> str:
    """``S1 2000: p99 geoshare X / bare Y = Z x, target 1.4x (met)``."""
    name = row["name"].split(" (")[0]
    g = "-" if row["geoshare"] is None else f"{row['geoshare']} ms"
    b = "-" if row["bare"] is None else f"{row['bare']} ms"
    r = "-" if row["ratio"] is None else f"{row['ratio']}x"
    met = "met" if row["met"] else "NOT met"
    return f"  {name}: p99 geoshare {g} / bare {b} = {r}, {row['target']}x ({met})"


def headline_rows(rows: list[dict]) -> list[dict]:
    """The target rows of the largest point of each scenario (per ``--ws`` for S2)."""
    best: dict[str, tuple[int, dict]] = {}
    for r in rows:
        parts = r["name"].split(" (")[0].split()
        key = parts[0] + (" " + parts[2] if len(parts) > 2 else "")
        size = int(parts[1])
        if key not in best or size > best[key][0]:
            best[key] = (size, r)
    return [r for _, r in best.values()]


# -- main -----------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="geoshare fan-out benchmark (issue 6)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few minutes (default)")
    mode.add_argument("--full", action="store_true", help="the whole grid")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="with --quick: add S1 at M=500 on Redis and two processes",
    )
    parser.add_argument(
        "--scenarios",
        help="comma-separated subset: S1,S2,S3,S1-redis,ingest,storm,history",
    )
    parser.add_argument("--apps", help="comma-separated subset of geoshare,naive,bare")
    parser.add_argument("--sizes", help="only points with these socket counts")
    parser.add_argument(
        "--ws",
        choices=["wsproto", "websockets"],
        help="only points on this uvicorn WebSocket implementation",
    )
    parser.add_argument("--duration", type=float, help="publishing seconds per point")
    parser.add_argument("--json", help="also write every result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy the geoshare servers while publishing (raw stacks)",
    )
    parser.add_argument(
        "--ingest-seconds",
        type=int,
        help="wrk's seconds per door (default 10 in --full, 5 in --quick)",
    )
    args = parser.parse_args(argv)

    raise_nofile()
    profile_dir = None
    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="geoshare-bench-"))
    env = prepare_env(work)
    fixtures = Fixtures()
    plan = grid(args)
    started = time.monotonic()
    print(
        f"geoshare fan-out benchmark ({'full' if args.full else 'quick'}); "
        f"{os.cpu_count()} cores; server on core 0, generator on core 1; "
        f"latencies in ms; work dir {work}",
        flush=True,
    )
    print(header(), flush=True)
    done: list[Point] = []
    targets: list[dict] = []
    wanted = {x.strip() for x in args.scenarios.split(",")} if args.scenarios else None
    try:
        for _name, rows, ascending in plan:
            stopped: dict[str, str] = {}
            for row in rows:
                for p in row:
                    if ascending and p.app in stopped:
                        p.result = {"skipped": f"stopped after {stopped[p.app]}"}
                    else:
                        try:
                            p.result = run_point(
                                p, env, fixtures, work, profile_dir=profile_dir
                            )
                        except Exception as exc:  # noqa: BLE001 - one bad point, not all
                            p.result = {"error": f"{type(exc).__name__}: {exc}"}
                        # bare is the control of the ratio targets (issue 16): it is
                        # measured at every size, so each row has its ratio.
                        if (
                            ascending
                            and p.app not in UNSTOPPED
                            and (p.result.get("error") or failed(p.result))
                        ):
                            stopped[p.app] = f"{sum(p.sizes)}"
                    done.append(p)
                    print(row_text(p), flush=True)
                target = ratio_row(row)
                if target is not None:
                    targets.append(target)
                    print(ratio_line(target), flush=True)
        targets = headline_rows(targets)
        if wanted is None or "ingest" in wanted:
            print("\nPhone ingest (bench.ingest)", flush=True)
            seconds = args.ingest_seconds or (10 if args.full else 5)
            targets += ingest.run(
                seconds=seconds, profile_dir=profile_dir, work=work, env=env
            )
        if wanted is None or "storm" in wanted:
            print("\nReconnect storm (bench.storm)", flush=True)
            sizes = (10_000, 2_000, 2_000) if args.full else (2_000, 500, 500)
            targets += storm.run(
                key_sockets=sizes[0],
                session_sockets=sizes[1],
                room_sockets=sizes[2],
                profile_dir=profile_dir,
                work=work,
                env=env,
            )
        if wanted is None or "history" in wanted:
            # Its own process: it sets Django up on a PostgreSQL database of its own.
            subprocess.run([PY, "-m", "bench.history"], cwd=ROOT, check=False)
    finally:
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    [dict(vars(p), result=p.result) for p in done],
                    indent=1,
                    default=str,
                )
            )
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if targets:
        print_summary(targets)
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
