"""Reconnect storm: ``python -m bench.storm`` (part of ``make bench``, issue 16).

How long geoshare takes to let many sockets in at once, every one of them holding its
``snapshot`` (the first frame geoshare sends, docs/protocol.md), against the bare
control opening as many sockets on the bare hub (``bench.bare``, whose first frame is
a ``snapshot``-like hello encoded once per room) on the same uvicorn flags. Two shapes:

- ``rooms``: ``--key-sockets`` sockets with device keys in rooms of 5 plus
  ``--session-sockets`` browser sessions (one more member in as many of those rooms,
  a Django session ``{"members": {room: member}}`` sent as the session cookie, with an
  ``Origin`` header of the server's own origin, as a browser sends);
- ``room``: ``--room-sockets`` keyed sockets in one room of as many members.

Before each storm every member has a live position (a ``LivePosition`` row, share on),
so each snapshot carries every member and every position of its room; a bare room is
seeded with as many members and positions (``?seed=``).

One measurement: a fresh uvicorn pinned to core 0 (``bench.common.Server``); the client
(this module with ``--client``, ``websockets``, on uvloop) on core 1, ``--clients``
processes of them, each raising its open-files limit. Each socket connects, waits for
its first frame and then keeps reading (and dropping) what follows, as a browser would.
At most ``--concurrency`` handshakes are in flight per client process (1,000: under
uvicorn's listen backlog of 2,048, so the kernel drops no SYN and the clock measures
the server, not TCP's one-second SYN retransmission); ``--concurrency 0`` opens them all
at once. The time reported is from the first connect to the last first frame, over all
client processes (one clock: the same machine).

Prints one line of JSON per measurement, then a summary: geoshare, bare, ratio, target
(rooms: ratio at most 2; room: geoshare at most 10 s). ``--profile DIR`` records the
geoshare server with py-spy during each storm (``bench.stacks`` summarises it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import import_module
from pathlib import Path

from bench.common import (
    PY,
    ROOT,
    Server,
    child_setup,
    prepare_env,
    py_spy,
    raise_nofile,
)
from bench.loadgen import frame_type
from bench.report import print_summary
from tests.servers import pinned

STORM_TIMEOUT_S = 300
#: Targets of issue 16.
ROOMS_RATIO_TARGET = 2.0
ROOM_SECONDS_TARGET = 10.0


# -- the client process ---------------------------------------------------------------


async def _storm(sockets: list[dict], concurrency: int, timeout: float) -> dict:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    sem = asyncio.Semaphore(concurrency) if concurrency > 0 else None
    firsts: list[float] = []
    kinds: dict[str, int] = {}
    errors: list[str] = []
    close_codes: dict[int, int] = {}
    held: list = []
    drains: list = []
    first_bytes = [0]

    async def drain(ws) -> None:
        try:
            while True:
                await ws.recv(decode=False)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            close_codes[code] = close_codes.get(code, 0) + 1

    async def one(c: dict) -> None:
        headers = {"Cookie": c["cookie"]} if c.get("cookie") else None
        try:
            ws = await connect(
                c["url"],
                origin=c.get("origin"),
                additional_headers=headers,
                compression=None,
                max_size=2**25,
                ping_interval=None,
                open_timeout=timeout,
                close_timeout=1,
                max_queue=16,
            )
            held.append(ws)
            data = await asyncio.wait_for(ws.recv(decode=False), timeout)
        except Exception as exc:  # noqa: BLE001 - counted and reported, not raised
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        firsts.append(time.time())
        first_bytes[0] += len(data)
        kind = frame_type(data) or "?"
        kinds[kind] = kinds.get(kind, 0) + 1
        drains.append(asyncio.ensure_future(drain(ws)))

    async def gated(c: dict) -> None:
        if sem is None:
            return await one(c)
        async with sem:
            return await one(c)

    cpu0 = time.process_time()
    started = time.time()
    await asyncio.gather(*(gated(c) for c in sockets))
    ended = time.time()
    cpu = time.process_time() - cpu0
    for t in drains:
        t.cancel()
    for ws in held:
        ws.transport.abort()
    firsts.sort()
    return {
        "sockets": len(sockets),
        "first_frames": len(firsts),
        "snapshots": kinds.get("snapshot", 0),
        "first_frame_types": kinds,
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "closed_early": {str(k): n for k, n in close_codes.items()},
        "started": started,
        "last_first_frame": firsts[-1] if firsts else None,
        "first_frame_times": [round(t - started, 3) for t in firsts],
        "first_frame_bytes": first_bytes[0],
        "wall_s": round(ended - started, 3),
        "client_cpu_pct": round(100 * cpu / max(ended - started, 1e-9), 1),
    }


def client_main(spec_path: str) -> None:
    """``--client SPEC``: read the spec, wait for ``go`` on stdin, storm, print JSON."""
    raise_nofile()
    spec = json.loads(Path(spec_path).read_text())
    print(json.dumps({"event": "ready"}), flush=True)
    sys.stdin.readline()
    coro = _storm(spec["sockets"], spec["concurrency"], spec["timeout_s"])
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the bench extra
        result = asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(coro)
    print(json.dumps(result), flush=True)
    # Closing thousands of sockets politely takes longer than the storm.
    os._exit(0)


# -- fixtures -------------------------------------------------------------------------


def make_rooms(sizes: list[int], sessions: int = 0) -> tuple[list[list[dict]], list]:
    """Create rooms of ``sizes`` keyed members, plus ``sessions`` browser members, one
    in each of the first rooms in turn; give every member a live position.

    Returns, per room, its sockets' ``{"path", "cookie"}`` (``cookie`` the session's
    value, ``None`` for a key), and the rooms.
    """
    # after django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from maps.models import LivePosition, Member, Share
    from maps.services import member_create, room_create

    store = import_module(settings.SESSION_ENGINE).SessionStore
    now = timezone.now()
    out: list[list[dict]] = []
    rooms = []
    members = []
    with transaction.atomic():
        for i, n in enumerate(sizes):
            room, _owner = room_create(name=f"storm {i}", owner_name="bench owner")
            rooms.append(room)
            sockets = []
            for m in range(n):
                member, key = member_create(room=room, name=f"m{m + 1}", role="member")
                members.append(member)
                sockets.append(
                    {"path": f"/ws/rooms/{room.public_id}/?key={key}", "cookie": None}
                )
            out.append(sockets)
        for s in range(sessions):
            r = s % len(rooms)
            room = rooms[r]
            member, _key = member_create(room=room, name=f"browser {s}", role="member")
            members.append(member)
            session = store()
            session["members"] = {room.public_id: member.pk}
            session.create()
            out[r].append(
                {"path": f"/ws/rooms/{room.public_id}/", "cookie": session.session_key}
            )
        Member.objects.filter(pk__in=[m.pk for m in members]).update(
            share=Share.ON, last_seen=now
        )
        LivePosition.objects.bulk_create(
            [
                LivePosition(
                    member=m,
                    lat=46.05 + k * 1e-5,
                    lon=14.5 + k * 1e-5,
                    accuracy=8.0,
                    device_time=now,
                    received=now,
                )
                for k, m in enumerate(members)
            ],
            batch_size=500,
        )
    connection.close()
    return out, rooms


# -- one storm ------------------------------------------------------------------------


def storm(
    env: dict,
    work: Path,
    sockets: list[dict],
    *,
    label: str,
    clients: int = 1,
    concurrency: int = 1000,
    profile_dir: Path | None = None,
) -> dict:
    """Open ``sockets`` (``{"path", "cookie"}``) at once on a fresh server; return the
    merged client results with ``seconds`` (first connect to last first frame)."""
    from django.conf import settings  # after django.setup()

    server = Server(env, work, core=0)
    procs: list[subprocess.Popen] = []
    profiler = None
    try:
        origin = f"http://127.0.0.1:{server.port}"
        specs = [[] for _ in range(clients)]
        for i, s in enumerate(sockets):
            c = {"url": f"ws://127.0.0.1:{server.port}{s['path']}"}
            if s.get("cookie"):
                c["cookie"] = f"{settings.SESSION_COOKIE_NAME}={s['cookie']}"
                c["origin"] = origin
            specs[i % clients].append(c)
        for k, part in enumerate(specs):
            path = work / f"storm-{label}-{k}.json"
            path.write_text(
                json.dumps(
                    {
                        "sockets": part,
                        "concurrency": concurrency,
                        "timeout_s": STORM_TIMEOUT_S / 2,
                    }
                )
            )
            procs.append(
                subprocess.Popen(
                    pinned([PY, "-m", "bench.storm", "--client", str(path)], 1),
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=child_setup,
                )
            )
        for p in procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"storm {label}: a client process exited early")
        if profile_dir is not None:
            # Stopped with SIGINT when the storm is over: py-spy writes what it has.
            profiler = py_spy(
                server.process.pid, STORM_TIMEOUT_S, profile_dir / f"storm-{label}.txt"
            )
        cpu0 = server.cpu()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        parts = []
        for p in procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"storm {label}: a client process gave no result")
            parts.append(json.loads(line))
        server_cpu_s = server.cpu() - cpu0
        log = server.log_tail(5)
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(60)
            except subprocess.TimeoutExpired:
                profiler.kill()
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.kill()
    return merge(parts, label=label, server_cpu_s=server_cpu_s, server_log=log)


def merge(parts: list[dict], **extra) -> dict:
    """One result of the client processes' results: counts added, one clock."""
    started = min(p["started"] for p in parts)
    lasts = [p["last_first_frame"] for p in parts if p["last_first_frame"]]
    times = sorted(
        p["started"] - started + t for p in parts for t in p["first_frame_times"]
    )
    kinds: dict[str, int] = {}
    closed: dict[str, int] = {}
    for p in parts:
        for k, n in p["first_frame_types"].items():
            kinds[k] = kinds.get(k, 0) + n
        for k, n in p["closed_early"].items():
            closed[k] = closed.get(k, 0) + n

    def pct(q: float):
        if not times:
            return None
        return round(times[min(len(times) - 1, int(len(times) * q))], 2)

    sockets = sum(p["sockets"] for p in parts)
    snapshots = sum(p["snapshots"] for p in parts)
    first_frames = sum(p["first_frames"] for p in parts)
    return {
        "sockets": sockets,
        "snapshots": snapshots,
        "first_frame_types": kinds,
        # The size of what the storm carried: geoshare's snapshots against bare's hellos.
        "first_frame_kib_mean": round(
            sum(p["first_frame_bytes"] for p in parts) / 1024 / max(1, first_frames), 1
        ),
        "failed": sum(p["failed"] for p in parts),
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), None),
        "closed_early": closed,
        # Only when every socket holds its snapshot does the storm have an end.
        "seconds": round(max(lasts) - started, 2)
        if lasts and snapshots == sockets
        else None,
        "seconds_to_last_first_frame": round(max(lasts) - started, 2) if lasts else None,
        "p50_s": pct(0.5),
        "p99_s": pct(0.99),
        "client_cpu_pct": [p["client_cpu_pct"] for p in parts],
        **extra,
    }


# -- the scenarios --------------------------------------------------------------------


def bare_sockets(sizes: list[int], tag: str) -> list[list[dict]]:
    """Per room of ``sizes``, the bare hub's sockets, each room seeded as full."""
    return [
        [{"path": f"/ws/bare/{tag}-{r}/?member={m + 1}&seed={n}"} for m in range(n)]
        for r, n in enumerate(sizes)
    ]


def interleave(rooms: list[list[dict]]) -> list[dict]:
    """Sockets in connect order: one of each room in turn, as after a restart."""
    out = []
    longest = max((len(r) for r in rooms), default=0)
    for i in range(longest):
        out.extend(r[i] for r in rooms if i < len(r))
    return out


def run(
    scenarios=("rooms", "room"),
    key_sockets=10_000,
    session_sockets=2_000,
    room_sockets=2_000,
    clients=1,
    concurrency=1000,
    profile_dir=None,
    work=None,
    env=None,
    emit=print,
) -> list[dict]:
    """Run the storms; return one summary row per scenario (see :func:`summary_rows`)."""
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    if env is None:
        env = prepare_env(work)
    rows = []
    for scenario in scenarios:
        if scenario == "rooms":
            sizes = [5] * (key_sockets // 5)
            geo_rooms, _ = make_rooms(sizes, sessions=session_sockets)
            geo = interleave(geo_rooms)
            bare = interleave(bare_sockets([len(r) for r in geo_rooms], "storm"))
            name = f"storm rooms {key_sockets}+{session_sockets}"
        elif scenario == "room":
            geo_rooms, _ = make_rooms([room_sockets])
            geo = geo_rooms[0]
            bare = bare_sockets([room_sockets], "big")[0]
            name = f"storm room {room_sockets}"
        else:
            raise ValueError(f"unknown storm scenario {scenario!r}")
        kw = {"clients": clients, "concurrency": concurrency}
        g = storm(env, work, geo, label=f"{scenario}-geoshare", profile_dir=profile_dir,
                  **kw)
        emit(json.dumps({"scenario": name, "app": "geoshare", **g}))
        b = storm(env, work, bare, label=f"{scenario}-bare", **kw)
        emit(json.dumps({"scenario": name, "app": "bare", **b}))
        rows.append(summary_row(scenario, name, g, b))
    return rows


def summary_row(scenario: str, name: str, geo: dict, bare: dict) -> dict:
    """``{"name", "geoshare", "bare", "ratio", "target", "met"}`` of one storm."""
    g, b = geo.get("seconds"), bare.get("seconds")
    ratio = round(g / b, 2) if g is not None and b else None
    if scenario == "rooms":
        target = f"ratio <= {ROOMS_RATIO_TARGET:g}"
        met = ratio is not None and ratio <= ROOMS_RATIO_TARGET
    else:
        target = f"geoshare <= {ROOM_SECONDS_TARGET:g} s"
        met = g is not None and g <= ROOM_SECONDS_TARGET
    return {
        "name": name + " (s to all snapshots)",
        "geoshare": g,
        "bare": b,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", default="rooms,room",
                        help="comma-separated: rooms,room")
    parser.add_argument("--key-sockets", type=int, default=10_000)
    parser.add_argument("--session-sockets", type=int, default=2_000)
    parser.add_argument("--room-sockets", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true",
                        help="2,000 + 500 sockets and a room of 500")
    parser.add_argument("--clients", type=int, default=1,
                        help="client processes (all on core 1)")
    parser.add_argument("--concurrency", type=int, default=1000,
                        help="handshakes in flight per client process (0: all)")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the geoshare server during each storm")
    args = parser.parse_args(argv)
    if args.client:
        client_main(args.client)
        return 0
    raise_nofile()
    if args.quick:
        args.key_sockets, args.session_sockets, args.room_sockets = 2000, 500, 500
    profile_dir = None
    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
    rows = run(
        scenarios=[s.strip() for s in args.scenarios.split(",") if s.strip()],
        key_sockets=args.key_sockets,
        session_sockets=args.session_sockets,
        room_sockets=args.room_sockets,
        clients=args.clients,
        concurrency=args.concurrency,
        profile_dir=profile_dir,
    )
    print_summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
