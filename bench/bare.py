"""The ceiling control: a bare ASGI WebSocket app, no Django, no Channels.

It does the fan-out geoshare does and nothing else: per room, the latest position
per member wins; once per tick (100 ms) the moved positions are encoded once with
orjson into one ``positions`` frame, and the same text goes to every socket of the
room. What geoshare loses against it is the price of the framework.

URL: ``/ws/bare/<room>/?member=<n>``. Frames follow docs/protocol.md, reduced to
what the benchmark uses: ``{"type": "position", "lat", "lon", "ts"}`` in (``ts``
integer epoch ms UTC, filled with the server's time when absent) and
``{"type": "positions", "positions": [{"member", "lat", "lon", "ts"}, ...]}`` out.
Nothing is validated beyond what the fan-out needs: it is a ceiling, not a server.
"""

from __future__ import annotations

import asyncio
import random
import time
from urllib.parse import parse_qs

import orjson

TICK_S = 0.1


class BareRoom:
    """One room's sockets and the positions that moved since the last tick."""

    __slots__ = ("name", "sockets", "pending", "flush_handle", "phase")

    def __init__(self, name: str) -> None:
        self.name = name
        self.sockets: dict[int, object] = {}
        self.pending: dict[str, dict] = {}
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
        if self.flush_handle is None:
            loop = asyncio.get_running_loop()
            now = loop.time()
            # The next boundary of this room's fixed tick grid: an idle room
            # costs nothing, a busy one flushes every TICK_S.
            k = int((now - self.phase) / TICK_S) + 1
            self.flush_handle = loop.call_at(self.phase + k * TICK_S, self.flush)

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
