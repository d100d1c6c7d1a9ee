"""The viewers of the ingest benchmark: ``python -m bench.viewers SPEC`` (bench.ingest).

Connects one ``websockets`` client per URL (viewers of one room), waits until every one
holds its ``snapshot``, and prints ``{"event": "connected", ...}``. Then it reads: every
viewer counts its ``positions`` frames and the positions in them (without parsing);
``sample`` viewers (spread over the list) parse every ``positions`` and ``snapshot``
frame and keep the latest ``ts`` per member. On a line ``stop`` on stdin it waits
``drain_s`` (the last ticks) and prints the result: counts per viewer and, per sampled
viewer, ``{member id: latest ts}``, which bench.ingest checks against the positions
stored last. Frames follow docs/protocol.md.

Spec (JSON): ``{"urls": [...], "sample": 50, "drain_s": 2, "connect_concurrency": 100,
"timeout_s": 120}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.common import raise_nofile
from bench.loadgen import count_positions, frame_type


class Viewer:
    """One socket's counts; a sampled one also keeps the latest ``ts`` per member."""

    __slots__ = ("ws", "sample", "frames", "positions", "snapshots", "latest", "closed")

    def __init__(self, sample: bool) -> None:
        self.ws = None
        self.sample = sample
        self.frames = 0
        self.positions = 0
        self.snapshots = 0
        self.latest: dict[int, int] | None = {} if sample else None
        self.closed: int | None = None

    def take(self, data: bytes) -> None:
        """Count one frame (and, sampled, record its positions' ``ts``)."""
        kind = frame_type(data)
        if kind == "positions":
            self.frames += 1
            self.positions += count_positions(data)
        elif kind == "snapshot":
            self.snapshots += 1
        else:
            return
        if self.latest is not None:
            latest = self.latest
            for p in orjson.loads(data).get("positions", ()):
                m, ts = p["member"], p["ts"]
                if ts > latest.get(m, -1):
                    latest[m] = ts


async def _main(spec: dict) -> None:
    urls = spec["urls"]
    n_sample = min(len(urls), int(spec.get("sample", 50)))
    step = max(1, len(urls) // max(1, n_sample))
    viewers = [Viewer(i % step == 0 and i // step < n_sample) for i in range(len(urls))]
    sem = asyncio.Semaphore(int(spec.get("connect_concurrency", 100)))
    timeout = float(spec.get("timeout_s", 120))
    errors: list[str] = []

    async def open_one(v: Viewer, url: str) -> None:
        async with sem:
            try:
                v.ws = await connect(url, compression=None, max_size=2**25,
                                     ping_interval=None, open_timeout=timeout,
                                     close_timeout=1)
                first = await asyncio.wait_for(v.ws.recv(decode=False), timeout)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                v.ws = None
                return
            if frame_type(first) != "snapshot":
                errors.append(f"first frame is not a snapshot: {first[:80]!r}")
            v.take(first)

    async def read(v: Viewer) -> None:
        try:
            while True:
                v.take(await v.ws.recv(decode=False))
        except ConnectionClosed as exc:
            v.closed = exc.rcvd.code if exc.rcvd is not None else 1006

    started = time.monotonic()
    await asyncio.gather(*(open_one(v, u) for v, u in zip(viewers, urls)))
    live = [v for v in viewers if v.ws is not None]
    readers = [asyncio.ensure_future(read(v)) for v in live]
    _emit({"event": "connected", "ok": len(live), "failed": len(viewers) - len(live),
           "first_error": errors[0] if errors else None,
           "connect_s": round(time.monotonic() - started, 2)})
    for v in live:
        # The snapshot's positions predate the load: start counting from zero.
        v.frames = v.positions = v.snapshots = 0
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    await loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.sleep(float(spec.get("drain_s", 2.0)))
    stopped_ms = int(time.time() * 1000)
    cpu_pct = 100 * (time.process_time() - cpu0) / max(time.monotonic() - t0, 1e-9)
    for t in readers:
        t.cancel()
    frames = sorted(v.frames for v in live)
    closes: dict[str, int] = {}
    for v in live:
        if v.closed is not None:
            closes[str(v.closed)] = closes.get(str(v.closed), 0) + 1
    _emit({
        "event": "result",
        "viewers": len(viewers),
        "connected": len(live),
        "frames_min": frames[0] if frames else 0,
        "frames_max": frames[-1] if frames else 0,
        "frames": sum(frames),
        "positions": sum(v.positions for v in live),
        "resync_snapshots": sum(v.snapshots for v in live),
        "viewers_without_frames": sum(1 for f in frames if f == 0),
        "closed": closes,
        "cpu_pct": round(cpu_pct, 1),
        "stopped_ms": stopped_ms,
        "sampled": [v.latest for v in live if v.latest is not None],
    })
    for v in live:
        v.ws.transport.abort()


def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    raise_nofile()
    spec = json.loads(open(argv[0]).read())
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the bench extra
        asyncio.run(_main(spec))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_main(spec))
    os._exit(0)


if __name__ == "__main__":
    main()
