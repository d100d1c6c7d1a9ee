"""The load generator: asyncio ``websockets`` clients, one per room member.

Runs in its own process (``python -m bench.loadgen SPEC.json``), on uvloop when it
is importable. Every client connects and receives; publishers send
``{"type": "position", "lat", "lon", "ts"}`` at ``rate_hz`` with ``ts`` = the send
time (integer epoch ms UTC). Latency = receive time - ``ts`` for each delivered
position, in whole milliseconds (``ts`` has ms resolution).

So that the generator is not the bottleneck, latency is computed on a sample of
receivers only (full JSON parse); the other receivers count positions with
``bytes.count(b'"member"')`` on ``positions`` frames. The generator reports its own
CPU time, and ``generator_saturated`` when it used more than 90 % of one core.

Spec (JSON)::

    {"rooms": [{"name": "r1", "clients": [{"url": "ws://...", "publish": true}, ...]}],
     "rate_hz": 1.0, "duration_s": 10, "drain_s": 3, "settle_s": 1,
     "sample_budget": 40000, "connect_concurrency": 64, "connect_timeout_s": 60,
     "wait_for_go": false}

Protocol on stdout, one JSON object per line: ``{"event": "connected", ...}``, then
(with ``wait_for_go``, after reading a line ``go`` on stdin) ``{"event":
"publishing"}``, ``{"event": "published"}``, and ``{"event": "result", ...}``
(see :func:`summarize`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HIST_MAX_MS = 120_000
SATURATED_CPU_PCT = 90.0


class LatencyHistogram:
    """Latencies in whole milliseconds, one bucket per ms up to 120 s (the last
    bucket holds everything above)."""

    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets = [0] * (HIST_MAX_MS + 1)
        self.count = 0
        self.max = 0.0

    def add(self, latency_ms: float) -> None:
        """Record one latency in ms; negative values (clock jitter) count as 0."""
        i = int(latency_ms)
        if i < 0:
            i = 0
        elif i > HIST_MAX_MS:
            i = HIST_MAX_MS
        self.buckets[i] += 1
        self.count += 1
        if latency_ms > self.max:
            self.max = latency_ms

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts to this histogram."""
        b = self.buckets
        for i, n in enumerate(other.buckets):
            if n:
                b[i] += n
        self.count += other.count
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> int | None:
        """Nearest-rank percentile, ``q`` in [0, 100]: the smallest whole-ms latency
        with at least q % of the samples at or below it; ``None`` when empty."""
        if self.count == 0:
            return None
        rank = max(1, -(-self.count * q // 100))  # ceil(count * q / 100)
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return i
        return HIST_MAX_MS  # pragma: no cover - rank <= count

    def summary(self) -> dict:
        """``{"n", "p50", "p90", "p99", "max"}`` in ms."""
        return {
            "n": self.count,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": int(self.max) if self.count else None,
        }


@dataclass
class Counters:
    """What one process's receivers and publishers saw."""

    sent: int = 0
    frames: int = 0
    positions: int = 0
    other_frames: int = 0
    error_frames: int = 0
    stuck_publishers: int = 0
    close_codes: dict = field(default_factory=dict)


_POSITIONS = b'{"type":"positions"'
_TYPED = b'{"type":"'


def frame_type(data: bytes) -> str | None:
    """The ``type`` of a server frame, cheaply when ``type`` is its first key."""
    head = data[:40].replace(b" ", b"")
    if head.startswith(_POSITIONS):
        return "positions"
    if head.startswith(_TYPED):
        end = head.find(b'"', len(_TYPED))
        if end > 0:
            return head[len(_TYPED) : end].decode()
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return frame.get("type") if isinstance(frame, dict) else None


def count_positions(data: bytes) -> int:
    """Positions in a ``positions`` frame, without parsing it."""
    return data.count(b'"member"')


def record_latencies(
    data: bytes, now_ms: float, since_ms: int, hist: LatencyHistogram
) -> int:
    """Parse a ``positions`` frame, add each position's latency (``now_ms - ts``) for
    positions sent at or after ``since_ms``; return how many were added."""
    frame = orjson.loads(data)
    n = 0
    for p in frame.get("positions", ()):
        ts = p.get("ts")
        if ts is None or ts < since_ms:
            continue
        hist.add(now_ms - ts)
        n += 1
    return n


class Run:
    """One load point: connect every client, publish for ``duration_s``, drain."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.rate = float(spec.get("rate_hz", 1.0))
        self.duration = float(spec.get("duration_s", 10.0))
        self.drain = float(spec.get("drain_s", 3.0))
        self.settle = float(spec.get("settle_s", 1.0))
        self.counters = Counters()
        self.hist = LatencyHistogram()
        self.sampled_positions = 0
        self.measuring = False
        self.since_ms = 2**62
        self.clients: list[dict] = []
        for room in spec["rooms"]:
            for c in room["clients"]:
                self.clients.append(dict(c, room=room.get("name", "")))
        self.room_sizes: dict[str, int] = {}
        self.room_publishers: dict[str, int] = {}
        for c in self.clients:
            self.room_sizes[c["room"]] = self.room_sizes.get(c["room"], 0) + 1
            if c.get("publish"):
                self.room_publishers[c["room"]] = (
                    self.room_publishers.get(c["room"], 0) + 1
                )
        self.sent_by_room: dict[str, int] = {}
        self.connected_by_room: dict[str, int] = {}
        self.sockets: list = []
        self.loop_lag_max = 0.0

    def choose_sample(self) -> None:
        """Mark every k-th client as a latency sample so that the sampled receivers
        parse about ``sample_budget`` positions per second in all."""
        budget = float(self.spec.get("sample_budget", 40_000))
        per_receiver = [
            self.room_publishers.get(c["room"], 0) * self.rate for c in self.clients
        ]
        total = sum(per_receiver) or 1.0
        fraction = min(1.0, budget / total)
        step = max(1, round(1 / fraction))
        for i, c in enumerate(self.clients):
            c["sample"] = i % step == 0
        self.clients[0]["sample"] = True

    async def connect_all(self) -> int:
        sem = asyncio.Semaphore(int(self.spec.get("connect_concurrency", 64)))
        timeout = float(self.spec.get("connect_timeout_s", 60))

        async def one(c: dict):
            async with sem:
                try:
                    ws = await connect(
                        c["url"],
                        compression=None,
                        max_size=2**24,
                        ping_interval=None,
                        open_timeout=timeout,
                        close_timeout=1,
                        max_queue=64,
                    )
                except Exception as exc:  # noqa: BLE001 - reported, not raised
                    c["error"] = f"{type(exc).__name__}: {exc}"[:200]
                    return
                c["ws"] = ws

        await asyncio.gather(*(one(c) for c in self.clients))
        ok = 0
        for c in self.clients:
            if "ws" in c:
                ok += 1
                self.connected_by_room[c["room"]] = (
                    self.connected_by_room.get(c["room"], 0) + 1
                )
        return ok

    async def receive(self, c: dict) -> None:
        ws = c["ws"]
        k = self.counters
        sample = c.get("sample", False)
        hist = self.hist
        try:
            while True:
                data = await ws.recv(decode=False)
                if not self.measuring:
                    continue
                if frame_type(data) != "positions":
                    kind = frame_type(data)
                    k.other_frames += 1
                    if kind == "error":
                        k.error_frames += 1
                    continue
                k.frames += 1
                if sample:
                    now_ms = time.time() * 1000.0
                    self.sampled_positions += record_latencies(
                        data, now_ms, self.since_ms, hist
                    )
                    k.positions += count_positions(data)
                else:
                    k.positions += count_positions(data)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            k.close_codes[code] = k.close_codes.get(code, 0) + 1
        except asyncio.CancelledError:
            raise

    async def publish(self, c: dict, start: float, end: float) -> None:
        ws = c["ws"]
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        t = start + random.random() * interval
        lat = 46.0 + random.random() * 0.1
        lon = 14.4 + random.random() * 0.1
        room = c["room"]
        try:
            while t < end:
                delay = t - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                lat += random.uniform(-1e-4, 1e-4)
                lon += random.uniform(-1e-4, 1e-4)
                ts = int(time.time() * 1000)
                await ws.send(
                    f'{{"type":"position","lat":{lat:.6f},"lon":{lon:.6f},"ts":{ts}}}'
                )
                self.counters.sent += 1
                self.sent_by_room[room] = self.sent_by_room.get(room, 0) + 1
                t += interval
        except ConnectionClosed:
            pass

    async def watch_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            lag = loop.time() - t - 0.01
            if self.measuring and lag > self.loop_lag_max:
                self.loop_lag_max = lag

    async def main(self, emit, wait_for_go) -> dict:
        loop = asyncio.get_running_loop()
        self.choose_sample()
        t_connect = time.monotonic()
        ok = await self.connect_all()
        connect_s = time.monotonic() - t_connect
        failed = [c.get("error") for c in self.clients if "ws" not in c]
        emit(
            {
                "event": "connected",
                "ok": ok,
                "failed": len(failed),
                "first_error": failed[0] if failed else None,
                "connect_s": round(connect_s, 2),
            }
        )
        receivers = [
            asyncio.ensure_future(self.receive(c)) for c in self.clients if "ws" in c
        ]
        lag_task = asyncio.ensure_future(self.watch_loop_lag())
        await asyncio.sleep(self.settle)
        if wait_for_go:
            await loop.run_in_executor(None, sys.stdin.readline)

        self.since_ms = int(time.time() * 1000)
        self.measuring = True
        cpu0 = time.process_time()
        start = loop.time() + 0.05
        end = start + self.duration
        emit({"event": "publishing"})
        publishers = [
            asyncio.ensure_future(self.publish(c, start, end))
            for c in self.clients
            if "ws" in c and c.get("publish")
        ]
        # A server that stopped reading would hold a send forever: give up on the
        # publishers a while after the window instead.
        if publishers:
            _, late = await asyncio.wait(publishers, timeout=self.duration + 10.0)
            for t in late:
                t.cancel()
            self.counters.stuck_publishers = len(late)
        else:
            await asyncio.sleep(self.duration)
        published_at = loop.time()
        cpu_pub = time.process_time() - cpu0
        emit({"event": "published"})
        # Drain: wait for positions still in flight, no longer than drain_s, and not
        # at all once everything expected has arrived.
        drain_end = loop.time() + self.drain
        while loop.time() < drain_end:
            expected = expected_deliveries(self.sent_by_room, self.connected_by_room)
            if self.counters.positions >= expected:
                break
            await asyncio.sleep(0.05)
        drained_at = loop.time()
        cpu_all = time.process_time() - cpu0
        self.measuring = False
        snapshot = Counters(**vars(self.counters))
        snapshot.close_codes = dict(self.counters.close_codes)
        lag_task.cancel()
        for t in receivers:
            t.cancel()
        for c in self.clients:
            if "ws" in c:
                # Closing thousands of sockets politely takes longer than the run.
                c["ws"].transport.abort()
        return summarize(
            self,
            snapshot,
            connected=ok,
            failed=len(failed),
            first_error=failed[0] if failed else None,
            connect_s=connect_s,
            publish_wall_s=published_at - start,
            cpu_publish_s=cpu_pub,
            wall_all_s=drained_at - start,
            cpu_all_s=cpu_all,
        )


def expected_deliveries(
    sent_by_room: dict[str, int], receivers_by_room: dict[str, int]
) -> int:
    """Positions that should arrive: each sent position goes to every connected
    client of its room (the sender included: the same frame goes to everyone)."""
    return sum(n * receivers_by_room.get(room, 0) for room, n in sent_by_room.items())


def summarize(run: Run, k: Counters, **timing) -> dict:
    """The result line: counts, rates, latency percentiles (ms), generator CPU."""
    expected = expected_deliveries(run.sent_by_room, run.connected_by_room)
    pub_s = timing["publish_wall_s"] or 1e-9
    gen_cpu_pct = 100.0 * timing["cpu_publish_s"] / pub_s
    return {
        "event": "result",
        "sockets": timing["connected"],
        "connect_failed": timing["failed"],
        "first_error": timing["first_error"],
        "connect_s": round(timing["connect_s"], 2),
        "publishers": sum(1 for c in run.clients if "ws" in c and c.get("publish")),
        "sampled_receivers": sum(1 for c in run.clients if "ws" in c and c["sample"]),
        "sent": k.sent,
        "expected": expected,
        "delivered": k.positions,
        "frames": k.frames,
        "other_frames": k.other_frames,
        "error_frames": k.error_frames,
        "stuck_publishers": k.stuck_publishers,
        "close_codes": {str(code): n for code, n in k.close_codes.items()},
        "offered_per_s": k.sent / pub_s,
        "delivered_per_s": k.positions / pub_s,
        "delivery": (k.positions / expected) if expected else None,
        "latency": run.hist.summary(),
        "publish_s": round(pub_s, 3),
        "gen_cpu_pct": round(gen_cpu_pct, 1),
        "gen_cpu_pct_with_drain": round(
            100.0 * timing["cpu_all_s"] / (timing["wall_all_s"] or 1e-9), 1
        ),
        "gen_loop_lag_max_ms": round(run.loop_lag_max * 1000, 1),
        "generator_saturated": gen_cpu_pct > SATURATED_CPU_PCT,
    }


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_spec(spec: dict, emit=None, wait_for_go: bool = False) -> dict:
    """Run one load point in this process; return the result dict."""
    raise_nofile()
    if emit is None:

        def emit(_event):
            return None

    run = Run(spec)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the bench extra
        return asyncio.run(run.main(emit, wait_for_go))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run.main(emit, wait_for_go))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="path of the JSON spec, or - for stdin")
    args = parser.parse_args(argv)
    # Thousands of client sockets are long-lived objects: without this the collector's
    # full passes stalled this process's loop for hundreds of ms and the stall showed
    # up as server latency (same tuning as the server's, geoshare/asgi.py).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    if args.spec == "-":
        spec = json.loads(sys.stdin.readline())
    else:
        with open(args.spec) as f:
            spec = json.load(f)

    def emit(event: dict) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    result = run_spec(spec, emit, bool(spec.get("wait_for_go")))
    emit(result)
    sys.stdout.flush()
    # Closing thousands of sockets politely takes longer than the run: the driver
    # stops the server anyway.
    os._exit(0)


if __name__ == "__main__":
    main()
