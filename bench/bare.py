"""The ceiling control: a bare ASGI WebSocket app, no Django, no Channels.

It does the fan-out geoshare does and nothing else: per room, the latest position
per member wins; once per tick (100 ms) the moved positions are encoded once with
orjson into one ``positions`` frame, and the same text goes to every socket of the
room. What geoshare loses against it is the price of the framework.

URL: ``/ws/bare/<room>/?member=<n>[&seed=<m>]``. Frames follow docs/protocol.md,
reduced to what the benchmark uses: ``{"type": "position", "lat", "lon", "ts"}`` in
(``ts`` integer epoch ms UTC, filled with the server's time when absent) and
``{"type": "positions", "positions": [{"member", "lat", "lon", "ts"}, ...]}`` out.
Nothing is validated beyond what the fan-out needs: it is a ceiling, not a server.

On accept, every socket first gets a ``snapshot``-like hello, as geoshare's
``snapshot`` (``{"type": "snapshot", "you", "now", "members": [...], "positions":
[...]}``): the room's members and latest position per member, encoded once per room
until a position changes, with only ``you`` spliced in per socket. ``seed=<m>`` fills
a new room with m members that each have one position, so that the hello of the
reconnect storm (bench.storm) carries as much as geoshare's snapshot of a room whose
members all shared.

The HTTP control of the phone doors (bench.ingest) is :func:`http_application`:
``/bare/ingest/osmand/`` (GET query or form POST) and ``/bare/ingest/owntracks/``
(JSON POST, HTTP Basic or ``?key=``) parse what geoshare's doors parse and answer 200
with an empty body: no key lookup, no storage, no fan-out.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from urllib.parse import parse_qs, parse_qsl

import orjson

TICK_S = 0.1


class BareRoom:
    """One room's sockets and the positions that moved since the last tick."""

    __slots__ = ("name", "sockets", "pending", "flush_handle", "phase", "latest",
                 "members", "hello_tail")

    def __init__(self, name: str) -> None:
        self.name = name
        self.sockets: dict[int, object] = {}
        self.pending: dict[str, dict] = {}
        # Latest position and member entry per member, for the hello.
        self.latest: dict = {}
        self.members: dict = {}
        # The encoded hello after ``"you"``: rebuilt after a position changed.
        self.hello_tail: str | None = None
        self.flush_handle: asyncio.TimerHandle | None = None
        # A per-room phase spreads the rooms' ticks over the tick period instead
        # of flushing every room at the same instant.
        self.phase = random.random() * TICK_S

    def publish(self, member: str, position: dict) -> None:
        """Keep ``position`` as the member's latest (by device time) and arm a tick."""
        old = self.pending.get(member)
        if old is not None and old["ts"] > position["ts"]:
            return
        self.pending[member] = position
        self.latest[member] = position
        self.hello_tail = None
        if self.flush_handle is None:
            loop = asyncio.get_running_loop()
            now = loop.time()
            # The next boundary of this room's fixed tick grid: an idle room
            # costs nothing, a busy one flushes every TICK_S.
            k = int((now - self.phase) / TICK_S) + 1
            self.flush_handle = loop.call_at(self.phase + k * TICK_S, self.flush)

    def join(self, member) -> None:
        """Add ``member`` to the room's member list (for the hello)."""
        if member not in self.members:
            self.members[member] = _member_entry(member)
            self.hello_tail = None

    def seed(self, count: int) -> None:
        """Give the room members 1..``count``, each with one position."""
        ts = int(time.time() * 1000)
        for m in range(1, count + 1):
            self.members[m] = _member_entry(m)
            self.latest[m] = {"member": m, "lat": 46.05 + m * 1e-5,
                              "lon": 14.5 + m * 1e-5, "accuracy": 8.0, "ts": ts,
                              "seen": ts}
        self.hello_tail = None

    def hello(self, member) -> str:
        """The ``snapshot``-like first frame for ``member``: encoded once per room."""
        if self.hello_tail is None:
            body = orjson.dumps({
                "now": int(time.time() * 1000),
                "room": {"id": self.name, "tick_ms": int(TICK_S * 1000)},
                "members": list(self.members.values()),
                "positions": list(self.latest.values()),
            }).decode()
            self.hello_tail = body[1:]
        return f'{{"type":"snapshot","you":{orjson.dumps(member).decode()},{self.hello_tail}'

    def flush(self) -> None:
        """Encode the moved positions once and write the same text to every socket."""
        self.flush_handle = None
        if not self.pending:
            return
        text = orjson.dumps(
            {"type": "positions", "positions": list(self.pending.values())}
        ).decode()
        self.pending = {}
        message = {"type": "websocket.send", "text": text}
        # One task per tick writes the same text to every socket in turn: uvicorn's
        # send() only writes to the transport unless that socket is paused.
        asyncio.ensure_future(_send_all(list(self.sockets.values()), message))


def _member_entry(member) -> dict:
    return {"id": member, "name": f"m{member}", "color": "#1f77b4", "role": "member",
            "online": True, "sharing": True, "sharing_until": None, "last_seen": None}


async def _send_all(sends: list, message: dict) -> None:
    for send in sends:
        try:
            await send(message)
        except Exception:  # noqa: BLE001 - the socket went away; its receive loop ends it
            pass


ROOMS: dict[str, BareRoom] = {}


def _room_of(path: str) -> str | None:
    # /ws/bare/<room>/
    parts = [p for p in path.split("/") if p]
    if len(parts) != 3 or parts[:2] != ["ws", "bare"]:
        return None
    return parts[2]


async def application(scope, receive, send) -> None:
    """ASGI app for ``/ws/bare/<room>/?member=<n>``."""
    if scope["type"] != "websocket":
        raise ValueError(f"bare control serves WebSockets only, not {scope['type']}")
    room_name = _room_of(scope["path"])
    query = parse_qs(scope.get("query_string", b"").decode())
    member = (query.get("member") or [None])[0]
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if room_name is None or member is None:
        await send({"type": "websocket.close", "code": 4404})
        return
    member_id = int(member) if member.isdigit() else member
    await send({"type": "websocket.accept"})
    room = ROOMS.get(room_name)
    if room is None:
        room = ROOMS[room_name] = BareRoom(room_name)
        seed = (query.get("seed") or ["0"])[0]
        if seed.isdigit():
            room.seed(int(seed))
    room.join(member_id)
    await send({"type": "websocket.send", "text": room.hello(member_id)})
    key = id(send)
    room.sockets[key] = send
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                break
            if kind != "websocket.receive":
                continue
            raw = message.get("text") or message.get("bytes")
            try:
                frame = orjson.loads(raw)
                if frame.get("type") != "position":
                    continue
                ts = frame.get("ts")
                if ts is None:
                    ts = int(time.time() * 1000)
                position = {
                    "member": member_id,
                    "lat": frame["lat"],
                    "lon": frame["lon"],
                    "ts": ts,
                }
            except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError):
                continue
            room.publish(member_id, position)
    finally:
        room.sockets.pop(key, None)
        if not room.sockets:
            if room.flush_handle is not None:
                room.flush_handle.cancel()
            ROOMS.pop(room_name, None)


# -- the phone doors' control -------------------------------------------------------


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _basic_password(headers) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization" and value[:6].lower() == b"basic ":
            try:
                decoded = base64.b64decode(value[6:].strip()).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2]
    return None


async def http_application(scope, receive, send) -> None:
    """``/bare/ingest/osmand/`` and ``/bare/ingest/owntracks/``: parse, answer 200.

    What geoshare's doors parse, and nothing after it: the query string (OsmAnd GET),
    the form body (OsmAnd POST), or the JSON body and the HTTP Basic password or
    ``?key=`` (OwnTracks). Answers 200 with an empty body; 400 when the input does not
    parse, 404 for another path.
    """
    path = scope["path"]
    body = await _read_body(receive)
    status = 200
    try:
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        if path == "/bare/ingest/osmand/":
            if body:
                query.update(parse_qsl(body.decode()))
            float(query["lat"])
            float(query["lon"])
            if not query.get("id"):
                status = 400
        elif path == "/bare/ingest/owntracks/":
            key = _basic_password(scope.get("headers", ())) or query.get("key")
            message = orjson.loads(body)
            float(message["lat"])
            float(message["lon"])
            if not key or message.get("_type") != "location":
                status = 400
        else:
            status = 404
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
        status = 400
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
