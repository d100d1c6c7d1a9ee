"""The WebSocket door: ``/ws/rooms/<room_id>/`` (docs/protocol.md).

The consumer authenticates the connection, parses frames, checks what the member may do
and hands positions to :func:`maps.services.position_publish`. Fan-out is the room hub's
(maps.hub): the consumer owns no channel-layer channel of its own, and frames reach it
through :meth:`LocationConsumer.push`, which queues them for this socket's writer.
"""

import asyncio
import collections
import logging
import time
from importlib import import_module
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import protocol, ratelimit
from .fixes import InvalidFix, fix_from_frame, now_ms
from .hub import registry
from .selectors import (
    member_for_key,
    member_info_dict,
    room_by_public_id,
    session_member,
)
from .services import NotAllowed, amember_stop_sharing, member_ref, position_publish

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024


def load_session(session_key):
    """Return the browser session stored under ``session_key``, or ``None``."""
    if not session_key:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key)


def authenticate(room_id, session_key, key, address="unknown"):
    """Return ``(close_code, member, room)`` for a connection; ``close_code`` ``None`` = ok.

    Synchronous (database). ``session_key`` is the session cookie's value. A device key
    wins over the session; a key of another room is refused with 4403, an unknown key
    with 4401, and an address that tried too many wrong keys lately with 4429
    (maps.ratelimit).
    """
    if key and ratelimit.blocked("badkey", address):
        return protocol.CLOSE_FLOOD, None, None
    if key:
        # One query in the common case: the key's member, with its room.
        member = member_for_key(key)
        if member is not None and member.room.public_id == room_id:
            return None, member, member.room
        room = room_by_public_id(room_id)
        if room is None:
            return protocol.CLOSE_NO_ROOM, None, None
        if member is None:
            ratelimit.hit("badkey", address)
            return protocol.CLOSE_NOT_AUTHENTICATED, None, room
        return protocol.CLOSE_FORBIDDEN, None, room
    room = room_by_public_id(room_id)
    if room is None:
        return protocol.CLOSE_NO_ROOM, None, None
    session = load_session(session_key)
    if session is None or not session.get("members"):
        return protocol.CLOSE_NOT_AUTHENTICATED, None, room
    member = session_member(session, room)
    if member is None:
        return protocol.CLOSE_FORBIDDEN, None, room
    return None, member, room


class LocationConsumer(AsyncWebsocketConsumer):
    """One member's connection to one room.

    After ``accept`` the client receives a ``snapshot``, then the room's frames. Client
    frames: ``position``, ``stop``, ``ping`` (docs/protocol.md). Close codes 4401, 4403,
    4404 refuse a connection; 4429 closes a flood. A socket that stops reading is not
    closed: its backlog is replaced by a fresh snapshot (:meth:`push`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.member = None
        self.member_id = None
        self.member_info = None
        self.via_key = False
        self.hub = None
        self._outbox = collections.deque()
        # Read once: push() runs for every socket on every tick, and the rate check
        # for every frame.
        self._max_pending = settings.GEOSHARE["MAX_PENDING_FRAMES"]
        self._rate = settings.GEOSHARE["RATE_PER_S"]
        self._flood = settings.GEOSHARE["FLOOD_PER_S"]
        self._wake = None
        self._writer = None
        self._closing = False
        self._window_start = 0.0
        self._window_count = 0
        self._warned = False

    async def __call__(self, scope, receive, send):
        # Channels' AsyncConsumer.__call__ races the client's queue against a
        # channel-layer channel with a new task and an asyncio.wait per frame
        # (await_many_dispatch). This consumer has no channel of its own (the room hub
        # fans out), so it reads its one queue directly: measured in make bench S2, the
        # race cost about 5 % of the server's samples.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message):
        # channels >= 4.2 closes old database connections before every handler: a hop
        # through the one database thread, per frame and per connect. This consumer
        # reaches the database only through database_sync_to_async, which closes old
        # connections itself, so it calls its handlers directly.
        kind = message["type"]
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)

    # -- connection ---------------------------------------------------------------

    async def connect(self):
        room_id = self.scope["url_route"]["kwargs"]["room_id"]
        key = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("key")
        key = key[0] if key else None
        session_key = self.scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
        code, member, room = await database_sync_to_async(authenticate)(
            room_id, session_key, key, ratelimit.client_address(self.scope)
        )
        if code is not None:
            # Accepted, then closed: a browser can read a close code, not a refusal.
            await self.accept()
            await self.close(code)
            return
        self.member = member_ref(member)
        self.member_id = member.pk
        self.member_info = member_info_dict(member)
        self.via_key = bool(key)
        # The room's hub is ready before the handshake completes: once a client is
        # connected, its frames are handled at once (not queued behind a hub start).
        self.hub = await registry().hub_for(
            {"pk": room.pk, "public_id": room.public_id, "name": room.name}
        )
        await self.accept()
        if self._closing:
            return
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        self.hub.attach(self)

    async def disconnect(self, code):
        self._closing = True
        if self.hub is not None:
            self.hub.detach(self)
        if self._writer is not None:
            self._writer.cancel()
        self._outbox.clear()

    # -- frames from the client ---------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            self._reply(protocol.error("bad_json", "frames must be JSON text, not binary"))
            return
        if len(text_data) > MAX_FRAME_BYTES:
            self._reply(protocol.error("too_large", "frames may be at most 64 KiB"))
            return
        if self.member is None or self._closing:
            return
        try:
            frame = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            self._reply(protocol.error("bad_json", "the frame is not valid JSON"))
            return
        if type(frame) is not dict:
            self._reply(protocol.error("bad_json", "the frame must be a JSON object"))
            return
        kind = frame.get("type")
        if kind == "position":
            await self._position(frame)
        elif kind == "stop":
            if self.member.can_publish():
                try:
                    await amember_stop_sharing(member=self.member)
                except Exception:
                    log.warning("room %s: could not announce a stop", self.member.room_pk)
                    self._reply(protocol.error("unavailable", "could not stop right now"))
        elif kind == "ping":
            self._reply(protocol.pong(now_ms()))
        else:
            self._reply(protocol.error("unknown_type", "type must be position, stop or ping",
                                       field="type"))

    async def _position(self, frame):
        if not self.member.can_publish():
            self._reply(protocol.error("forbidden", "viewers cannot share a position"))
            return
        if self._over_rate():
            return
        try:
            fix = fix_from_frame(frame)
        except InvalidFix as exc:
            self._reply(protocol.error("invalid", exc.detail, field=exc.field))
            return
        try:
            await position_publish(member=self.member, fix=fix)
        except NotAllowed as exc:
            self._reply(protocol.error("forbidden", str(exc)))
        except Exception:
            # The channel layer (Redis) is away: say so and keep the socket; the hub
            # resyncs every client once it is back.
            log.warning("room %s: could not publish a position", self.member.room_pk)
            self._reply(protocol.error("unavailable", "the server could not share this "
                                       "position right now; it will resync"))

    def _over_rate(self):
        """Count this second's frames; warn above the rate, close a flood."""
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._window_count = 0
            self._warned = False
        self._window_count += 1
        if self._window_count > self._flood:
            self.close_now(protocol.CLOSE_FLOOD)
            return True
        if self._window_count > self._rate and not self._warned:
            # Still published: the hub keeps only the newest per tick, so a fast sender
            # is coalesced, not queued. Told once per second.
            self._warned = True
            self._reply(protocol.error(
                "rate_limited",
                f"send at most {self._rate} positions per second",
            ))
        return False

    def _reply(self, frame):
        self.push(protocol.send_message(protocol.encode(frame)))

    # -- frames to the client (called by the hub) -------------------------------------

    def push(self, message):
        """Queue an ASGI send message for this socket; never blocks.

        A socket that stops reading lets its queue grow to ``MAX_PENDING_FRAMES``; then
        its backlog is replaced by one fresh snapshot (latest state wins, memory stays
        bounded by references to frames shared with the other sockets).
        """
        if self._closing:
            return
        box = self._outbox
        if len(box) >= self._max_pending:
            box.clear()
            if self.hub is not None:
                message = self.hub.snapshot_message(self.member_id)
        box.append(message)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    def resync(self):
        """Replace this socket's backlog with a fresh snapshot."""
        if self.hub is not None and not self._closing:
            self._outbox.clear()
            self.push(self.hub.snapshot_message(self.member_id))

    def close_now(self, code):
        """Close this socket with ``code`` from synchronous code (the hub)."""
        if self._closing:
            return
        self._closing = True
        self._outbox.clear()
        task = asyncio.get_running_loop().create_task(self._close_later(code))
        registry().keep(task)

    async def _close_later(self, code):
        try:
            await self.close(code)
        except Exception:
            pass
        if self.hub is not None:
            self.hub.detach(self)

    async def _write_loop(self):
        box = self._outbox
        send = self.base_send
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not box:
                    self._wake = loop.create_future()
                    await self._wake
                    continue
                await send(box.popleft())
        except asyncio.CancelledError:
            raise
        except Exception:
            # The client went away mid-send; disconnect() cleans up.
            self._closing = True
            self._outbox.clear()
