"""The load generator: asyncio WebSocket clients, one per room member.

Runs in its own process (``python -m bench.loadgen SPEC.json``), on uvloop when it
is importable. Every client connects and receives; publishers send
``{"type": "position", "lat", "lon", "ts"}`` at ``rate_hz`` with ``ts`` = the send
time (integer epoch ms UTC). Latency = receive time - ``ts`` for each delivered
position, in whole milliseconds (``ts`` has ms resolution).

The client is a minimal RFC 6455 client written here on ``asyncio.Protocol``
(:class:`WSClient`), not the ``websockets`` library: at S1 with 2,000 members (about
20,000 ``positions`` frames of ~18 KB a second) the library's per-frame machinery
(generator-based parser, ``Frame`` objects, the message assembler, a future per
``recv``) saturated the generator's core, so the latency reported measured the
generator rather than the server. Here each complete message is counted straight
from ``data_received``, with no future or task per frame. What it implements: the
opening handshake by hand (section 4.1: ``GET`` with ``Sec-WebSocket-Key`` and
version 13; the answer must be a 101 with the ``Sec-WebSocket-Accept`` of section
4.2.2 and no extension), base framing (section 5.2: 7-, 16- and 64-bit payload
lengths; unmasked server frames, section 5.1), fragmented messages (section 5.4),
pings answered with pongs and close frames echoed (section 5.5), and client frames
masked with a fresh 4-byte key each (section 5.3; from ``random``, enough for a
benchmark). Close codes are section 7.1.5's: the close frame's code, 1005 when it
has none, 1006 when the connection is lost without one.

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
import base64
import gc
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from bench.common import raise_nofile

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


class ConnectionClosed(Exception):
    """The connection is closed (or closing): nothing more can be sent."""


class InvalidHandshake(Exception):
    """The server did not answer the opening handshake with a valid 101."""


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 2**24

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_for(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2:
    base64 of the SHA-1 of the key followed by the GUID)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def handshake_request(url: str, key: str, headers: dict | None = None) -> bytes:
    """The client's opening handshake for ``url`` (RFC 6455 section 4.1)."""
    u = urlsplit(url)
    default_port = 443 if u.scheme == "wss" else 80
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if u.port and u.port != default_port:
        host = f"{host}:{u.port}"
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def check_handshake_response(head: bytes, key: str) -> None:
    """Raise :class:`InvalidHandshake` unless ``head`` (the response up to the blank
    line) is a 101 upgrading to websocket with the right ``Sec-WebSocket-Accept`` and
    no extension (RFC 6455 section 4.1, the client's checks 1 to 5)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "101":
        status = parts[1] if len(parts) > 1 else lines[0][:40]
        raise InvalidHandshake(f"server rejected WebSocket connection: HTTP {status}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("upgrade", "").lower() != "websocket":
        raise InvalidHandshake("missing or wrong Upgrade header")
    if "upgrade" not in fields.get("connection", "").lower():
        raise InvalidHandshake("missing or wrong Connection header")
    if fields.get("sec-websocket-accept") != accept_for(key):
        raise InvalidHandshake("wrong Sec-WebSocket-Accept")
    if fields.get("sec-websocket-extensions"):
        raise InvalidHandshake("unrequested extension")


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
        n, "big"
    )


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final, masked client frame (RFC 6455 section 5.2); a random mask per frame
    unless ``mask`` is given."""
    if mask is None:
        mask = random.getrandbits(32).to_bytes(4, "big")
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + mask_payload(payload, mask)


class WSClient(asyncio.Protocol):
    """One WebSocket client connection (RFC 6455), on ``asyncio.Protocol``.

    Every complete text or binary message goes to :meth:`message` straight from
    :meth:`data_received` (no future or task per frame); pings are answered, a close
    frame's code is recorded in ``close_code`` and :meth:`closed` is called once, with
    1006 when the connection is lost without a close frame."""

    def __init__(self, key: str, request: bytes, loop=None) -> None:
        self.key = key
        self.request = request
        self.transport = None
        loop = loop or asyncio.get_running_loop()
        self.opened: asyncio.Future = loop.create_future()
        self.buf = bytearray()
        self.open = False
        self.close_code: int | None = None
        self.aborted = False
        self.paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.frags: list = []

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if self.open and not buf:
            # The usual case: frames straight from the read, only a partial one kept.
            pos = self.parse(data)
            if 0 <= pos < len(data):
                buf += memoryview(data)[pos:]
            return
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self.fail_open(InvalidHandshake("response headers too long"))
                return
            try:
                check_handshake_response(bytes(buf[:end]), self.key)
            except InvalidHandshake as exc:
                self.fail_open(exc)
                return
            del buf[: end + 4]
            self.open = True
            if not self.opened.done():
                self.opened.set_result(None)
        pos = self.parse(buf)
        if pos > 0:
            del buf[:pos]

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError(f"connection lost during opening handshake: {exc}")
            )
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosed())
        if self.open and self.close_code is None:
            self.close_code = 1006
            if not self.aborted:
                self.closed(1006)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.drain_waiter = None

    # -- frames -----------------------------------------------------------------------

    def parse(self, buf) -> int:
        """Handle every complete frame (RFC 6455 section 5.2) at the start of ``buf``
        (bytes or bytearray); return how many bytes they took, -1 when the connection
        failed."""
        size = len(buf)
        pos = 0
        while size - pos >= 2 and self.close_code is None:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n = (buf[start] << 8) | buf[start + 1]
                start += 2
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[start : start + 8], "big")
                start += 8
            if b1 & 0x80 or b0 & 0x70 or n > MAX_MESSAGE:
                # Servers must not mask (section 5.1); no extension was negotiated,
                # so no RSV bit (section 5.2).
                self.protocol_error()
                return -1
            end = start + n
            if end > size:
                break
            payload = buf[start:end]  # bytes or bytearray: one copy
            pos = end
            op = b0 & 0x0F
            if op & 0x8:
                self.control(op, payload)
                continue
            if (op == OP_CONT) != bool(self.frags):
                # A continuation with nothing to continue, or a new message inside a
                # fragmented one (section 5.4).
                self.protocol_error()
                return -1
            if b0 & 0x80:
                if self.frags:
                    self.frags.append(payload)
                    payload = b"".join(self.frags)
                    self.frags = []
                self.message(payload)
            else:  # a fragment, not the last one
                self.frags.append(payload)
                if sum(map(len, self.frags)) > MAX_MESSAGE:
                    self.protocol_error()
                    return -1
        return pos

    def control(self, op: int, payload: bytes) -> None:
        if op == OP_PING:
            self.write_frame(OP_PONG, payload)
        elif op == OP_CLOSE:
            # Section 5.5.1: the code is the payload's first two bytes; none means
            # 1005 (section 7.1.5). Echo it and close.
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_code = code
            self.write_frame(OP_CLOSE, payload[:2])
            if self.transport is not None:
                self.transport.close()
            self.closed(code)

    def protocol_error(self) -> None:
        """Fail the connection (section 7.1.7); counted as 1006, like a lost one."""
        self.buf.clear()
        if self.transport is not None:
            self.transport.abort()

    def write_frame(self, opcode: int, payload: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(client_frame(opcode, payload))

    async def send(self, text: str) -> None:
        """Send one text message; wait while the transport asks us to pause writing.
        Raises :class:`ConnectionClosed` once the connection is closing."""
        if self.paused:
            if self.drain_waiter is None or self.drain_waiter.done():
                self.drain_waiter = asyncio.get_running_loop().create_future()
            await self.drain_waiter
        if self.close_code is not None or self.transport.is_closing():
            raise ConnectionClosed()
        self.transport.write(client_frame(OP_TEXT, text.encode()))

    def fail_open(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        """Drop the connection without a close handshake, and without counting it."""
        self.aborted = True
        if self.transport is not None:
            self.transport.abort()

    # -- hooks --------------------------------------------------------------------------

    def message(self, data: bytes) -> None:
        """One complete text or binary message."""

    def closed(self, code: int) -> None:
        """The connection closed with ``code`` (1006: lost without a close frame)."""


async def open_client(
    factory, url: str, timeout: float, headers: dict | None = None
) -> WSClient:
    """Connect ``factory(key, request)``'s protocol to ``url`` and complete the opening
    handshake within ``timeout`` seconds."""
    u = urlsplit(url)
    if u.scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws:// or wss:// URL: {url}")
    key = base64.b64encode(os.urandom(16)).decode()
    request = handshake_request(url, key, headers)
    loop = asyncio.get_running_loop()
    port = u.port or (443 if u.scheme == "wss" else 80)
    ssl = u.scheme == "wss" or None

    async def go() -> WSClient:
        _, proto = await loop.create_connection(
            lambda: factory(key, request), u.hostname, port, ssl=ssl
        )
        try:
            await proto.opened
        except BaseException:
            proto.abort()
            raise
        return proto

    try:
        return await asyncio.wait_for(go(), timeout)
    except TimeoutError:
        raise TimeoutError("timed out during opening handshake") from None


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
                    ws = await open_client(
                        lambda key, request: RunClient(
                            self, c.get("sample", False), key, request
                        ),
                        c["url"],
                        timeout,
                        c.get("headers"),
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
        # Every client counts what it receives from its protocol callback (RunClient).
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
        for c in self.clients:
            if "ws" in c:
                # Closing thousands of sockets politely takes longer than the run.
                c["ws"].abort()
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


class RunClient(WSClient):
    """A room member's connection: counts what it receives for its :class:`Run` (what
    the ``websockets`` receive loop did before, now per message in the callback)."""

    def __init__(self, run: Run, sample: bool, key: str, request: bytes) -> None:
        super().__init__(key, request)
        self.run = run
        self.sample = sample

    def message(self, data: bytes) -> None:
        run = self.run
        if not run.measuring:
            return
        k = run.counters
        kind = frame_type(data)
        if kind != "positions":
            k.other_frames += 1
            if kind == "error":
                k.error_frames += 1
            return
        k.frames += 1
        if self.sample:
            now_ms = time.time() * 1000.0
            run.sampled_positions += record_latencies(
                data, now_ms, run.since_ms, run.hist
            )
        k.positions += count_positions(data)

    def closed(self, code: int) -> None:
        codes = self.run.counters.close_codes
        codes[code] = codes.get(code, 0) + 1


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
