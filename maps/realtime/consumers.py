"""The WebSocket door: ``/ws/rooms/<room_id>/`` (docs/protocol.md).

The consumer authenticates the connection (:mod:`maps.access.auth`), parses frames, checks
what the member may do and hands positions to :func:`maps.services.position_publish`.
Fan-out is the room hub's (:mod:`maps.realtime.hub`): the consumer owns no channel-layer channel
of its own, and frames reach the client through its :class:`~maps.realtime.outbox.Outbox`.
"""

import asyncio
import logging
import secrets
import time
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from maps.access import address, identity, limits
from maps.domain import policy, sources
from maps.domain.fixes import InvalidFix, fix_from_frame, now_ms
from maps.protocol import events
from maps.realtime.hub import registry
from maps.realtime.outbox import Outbox
from maps.services import (
    NotAllowed,
    amember_stop_sharing,
    ashare_claim,
    ashare_start,
    position_publish,
)
from maps.telemetry import metrics

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
# The furthest end a share may have: 30 days.
MAX_SHARE_MS = 30 * 86_400_000
# Positions a socket takes from its member's budget at a time.
BUDGET_CHUNK = 20



class LocationConsumer(AsyncWebsocketConsumer):
    """One member's connection to one room.

    After ``accept`` the client receives a ``snapshot``, then the room's frames. Client
    frames: ``position``, ``share``, ``stop``, ``ping`` (docs/protocol.md). The socket
    is a share's source of its own: its device key's device, or its browser
    (``?browser=<id>``, :mod:`maps.domain.sources`). Close codes 4401, 4403,
    4404 refuse a connection; 4429 refuses one past the socket limits or closes a
    flood. A socket that stops reading is not closed: its backlog is replaced by a
    fresh snapshot (:class:`~maps.realtime.outbox.Outbox`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.member = None
        self.hub = None
        self.device_name = None
        # Where this socket's positions come from (maps.domain.sources), and its name.
        self.source = ""
        self.source_name = ""
        self.outbox = None
        self.address = None
        self._counted = False
        # Read once: the check runs for every frame.
        self._flood = settings.GEOSHARE["FLOOD_PER_S"]
        self._window_start = 0.0
        self._window_count = 0
        self._budget = 0
        self._warned_at = 0.0

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

    async def _refuse(self, code):
        # Accepted, then closed: a browser can read a close code, not a refusal.
        await self.accept()
        await self.close(code)

    async def _count_address(self, hubs):
        """Count this socket against its address; refuse it (4429) past the limit."""
        self.address = address.client_address(self.scope)
        if not hubs.address_open(self.address):
            await self._refuse(events.CLOSE_FLOOD)
            return False
        self._counted = True
        return True

    async def connect(self):
        hubs = registry()
        if not await self._count_address(hubs):
            return
        room_id = self.scope["url_route"]["kwargs"]["room_id"]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        key = query["key"][0] if query.get("key") else None
        browser = query["browser"][0] if query.get("browser") else ""
        session_key = self.scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
        code, member, room = await identity.asocket_member(room_id, session_key, key,
                                                       self.address)
        if code is not None:
            await self._refuse(code)
            return
        # The room's hub is ready before the handshake completes: once a client is
        # connected, its frames are handled at once (not queued behind a hub start).
        hub = await hubs.hub_for({"pk": room.pk, "public_id": room.public_id,
                                  "name": room.name})
        per_member = settings.GEOSHARE["MAX_SOCKETS_PER_MEMBER"]
        if per_member and hub.local_sockets(member.pk) >= per_member:
            await self._refuse(events.CLOSE_FLOOD)
            return
        self.member = identity.member_ref(member)
        # A socket opened with a device key speaks for that device; a browser tab
        # (session cookie) has no device name.
        self.device_name = member.device.name if key else None
        if key:
            self.source = sources.device_source(member.device.pk)
            self.source_name = member.device.name
        else:
            # A browser without a (valid) id of its own is a source of its own for
            # as long as this socket lives.
            if not sources.BROWSER_ID_RE.fullmatch(browser):
                browser = secrets.token_urlsafe(12)
            self.source = sources.browser_source(browser)
            agent = dict(self.scope.get("headers", [])).get(b"user-agent", b"")
            self.source_name = sources.browser_label(agent.decode("latin-1"))
        self.hub = hub
        self.outbox = Outbox(
            send=self.base_send, close=self.close,
            snapshot=lambda: hub.snapshot_message(member.pk),
            after_snapshot=hub.places_message,
            member_id=member.pk, address=self.address,
            via_key=member.device.pk if key else None,
            max_pending=settings.GEOSHARE["MAX_PENDING_FRAMES"],
            on_closed=lambda: hub.detach(self.outbox),
        )
        await self.accept()
        self.outbox.start()
        hub.attach(self.outbox, events.member_info(member))

    async def disconnect(self, code):
        if self.outbox is not None:
            self.outbox.stop()
            self._detach()
        if self._counted:
            self._counted = False
            registry().address_closed(self.address)

    def _detach(self):
        self.hub.detach(self.outbox)

    def _reply(self, frame):
        if self.outbox is not None:
            self.outbox.push(events.send_message(events.encode(frame)))

    # -- frames from the client ---------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.outbox is None or self.outbox.closing:
            return
        if self._flooding():
            return
        if text_data is None:
            self._reply(events.error("bad_json", "frames must be JSON text, not binary"))
            return
        if len(text_data) > MAX_FRAME_BYTES:
            self._reply(events.error("too_large", "frames may be at most 64 KiB"))
            return
        try:
            frame = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            self._reply(events.error("bad_json", "the frame is not valid JSON"))
            return
        if type(frame) is not dict:
            self._reply(events.error("bad_json", "the frame must be a JSON object"))
            return
        kind = frame.get("type")
        if kind is None and "latitude" in frame and "longitude" in frame:
            # The Channels tutorial's LocationConsumer client: no type, long names.
            kind = "position"
            frame = {"lat": frame["latitude"], "lon": frame["longitude"]}
        if kind == "position":
            await self._position(frame)
        elif kind == "share":
            await self._share(frame)
        elif kind == "stop":
            await self._stop()
        elif kind == "ping":
            self._reply(events.pong(now_ms()))
        else:
            self._reply(events.error("unknown_type",
                                     "type must be position, share, stop or ping",
                                     field="type"))

    async def _position(self, frame):
        if not policy.may_publish(self.member):
            self._reply(events.error("forbidden", "viewers cannot share a position"))
            return
        try:
            fix = fix_from_frame(frame)
            if self.device_name is not None:
                fix = fix.from_device(self.device_name)
        except InvalidFix as exc:
            self._reply(events.error("invalid", exc.detail, field=exc.field))
            return
        state = self.hub.state
        gate = policy.share_gate(state.share_state(self.member.id, now_ms()), self.source,
                                 state.share_source(self.member.id))
        if gate == "refuse":
            self._reply(events.error(
                "not_sharing", "your share has ended: turn sharing on (a share frame) "
                "to show your position again"))
            return
        if gate == "other_source":
            self._not_the_source()
            return
        if not await self._within_budget():
            return
        try:
            if gate in ("start", "claim"):
                until = state.shares.get(self.member.id)
                if not await ashare_claim(ref=self.member, source=self.source,
                                          source_name=self.source_name,
                                          start=gate == "start", until_ms=until):
                    self._not_the_source()
                    return
                # The room hears of it through the layer; this socket's next position
                # must not start or claim it again meanwhile.
                state.apply_share(self.member.id, None if gate == "start" else until,
                                  self.source, self.source_name)
            await position_publish(ref=self.member, fix=fix)
            metrics.POSITIONS_BY_DOOR["websocket"].inc()
        except NotAllowed as exc:
            self._reply(events.error("forbidden", str(exc)))
        except Exception:
            # The channel layer (Redis) is away: say so and keep the socket; the hub
            # resyncs every client once it is back.
            metrics.LAYER_ERRORS.inc()
            log.warning("room %s: could not publish a position", self.member.room_pk)
            self._reply(events.error("unavailable", "the server could not share this "
                                     "position right now; it will resync"))

    async def _share(self, frame):
        if not policy.may_publish(self.member):
            self._reply(events.error("forbidden", "viewers do not share a position"))
            return
        until = frame.get("until")
        if until is not None:
            if type(until) is float and until.is_integer():
                until = int(until)
            if type(until) is not int or not now_ms() < until <= now_ms() + MAX_SHARE_MS:
                self._reply(events.error(
                    "invalid", "until must be epoch milliseconds in the next 30 days, "
                    "or null", field="until"))
                return
        source, source_name = self.source, self.source_name
        if frame.get("from") == "phones":
            # "Share from: my phone apps": the first of them to send claims it.
            source, source_name = sources.ANY_DEVICE, ""
        elif frame.get("from", "here") != "here":
            self._reply(events.error("invalid", "from must be here or phones",
                                     field="from"))
            return
        state = self.hub.state
        if not policy.may_take_share(state.share_state(self.member.id, now_ms()), source,
                                     state.share_source(self.member.id),
                                     take_over=frame.get("take_over") is True):
            self._not_the_source()
            return
        try:
            await ashare_start(ref=self.member, until_ms=until, source=source,
                               source_name=source_name)
            # The room hears of it through the layer; this socket's next position, in
            # the same breath, must already find the share on.
            state.apply_share(self.member.id, until, source, source_name)
        except Exception:
            log.warning("room %s: could not start a share", self.member.room_pk)
            self._reply(events.error("unavailable", "could not start sharing right now"))

    def _not_the_source(self):
        """Refuse a position or a share frame: the share runs from another source."""
        name = self.hub.state.share_source_name(self.member.id) or "another device"
        self._reply(events.error(
            "not_the_source", f"your share runs from {name}: send a share frame with "
            "take_over true to share from here instead"))

    async def _stop(self):
        if not policy.may_publish(self.member):
            self._reply(events.error("forbidden", "viewers do not share a position"))
            return
        try:
            await amember_stop_sharing(ref=self.member)
        except Exception:
            log.warning("room %s: could not announce a stop", self.member.room_pk)
            self._reply(events.error("unavailable", "could not stop right now"))

    # -- limits ---------------------------------------------------------------------------

    def _flooding(self):
        """Count every frame, of every type; close the socket past ``FLOOD_PER_S``."""
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._window_count = 0
        self._window_count += 1
        if self._window_count > self._flood:
            metrics.refused("flood")
            self.outbox.close_now(events.CLOSE_FLOOD)
            return True
        return False

    async def _within_budget(self):
        """Return whether the member's position budget has room for one more.

        The budget is the member's, shared with the HTTP doors and across processes
        (``RATE_LIMITS["positions"]``, :func:`maps.access.limits.limit_take`). The socket takes
        it in chunks of :data:`BUDGET_CHUNK`, so the cache is asked once per chunk, not
        per position. A position past it is refused (neither stored nor shown), told
        once a second with the wait.
        """
        if self._budget <= 0:
            for chunk in (BUDGET_CHUNK, 1):
                if await limits.in_cache_thread(limits.limit_take_positions, self.member.id, chunk):
                    self._budget = chunk
                    break
            else:
                now = time.monotonic()
                if now - self._warned_at >= 1.0:
                    self._warned_at = now
                    allowed, window = limits.limit("positions")
                    self._reply(events.error(
                        "rate_limited",
                        f"at most {allowed} positions per {window} s per member",
                        retry_after_ms=limits.retry_after("positions") * 1000,
                    ))
                return False
        self._budget -= 1
        return True


class WatchConsumer(LocationConsumer):
    """A "watch me" link's socket, ``/ws/watch/<token>/``: one member, nothing else.

    Gets a ``snapshot`` with only that member (no name, no room name or id), then the
    room's frames filtered to that member (docs/protocol.md, "Watch links"). Closed
    with 4404 when the link is unknown or expires (or its share ends), 4403 when the
    member revokes it. A token of no usable link counts against the address
    (``RATE_LIMITS["redeem"]``, as on ``/w/<token>/``): past the limit, 4429. The
    client may only ``ping``.
    """

    async def connect(self):
        hubs = registry()
        if not await self._count_address(hubs):
            return
        token = self.scope["url_route"]["kwargs"]["token"]
        link = await database_sync_to_async(identity.watch_link)(token)
        if link is None:
            # Guessing tokens counts against the address as on /w/<token>/ and /join/.
            allowed = await limits.in_cache_thread(limits.limit_hit, "redeem", self.address)
            await self._refuse(events.CLOSE_NO_ROOM if allowed else events.CLOSE_FLOOD)
            return
        member, room = link.member, link.member.room
        hub = await hubs.hub_for({"pk": room.pk, "public_id": room.public_id,
                                  "name": room.name})
        self.hub = hub
        self.outbox = Outbox(
            send=self.base_send, close=self.close,
            snapshot=lambda: hub.watch_snapshot_message(member.pk),
            member_id=member.pk, via_key=None, address=self.address,
            max_pending=settings.GEOSHARE["MAX_PENDING_FRAMES"],
            on_closed=lambda: hub.detach_watcher(self.outbox),
            link_id=link.pk, bound=link.bound_to_share,
        )
        await self.accept()
        self.outbox.start()
        hub.attach_watcher(self.outbox)
        if link.expires_at is not None:
            delay = max(0.0, link.expires_at.timestamp() - time.time())
            self._expiry = asyncio.get_running_loop().call_later(
                delay, self.outbox.close_now, events.CLOSE_NO_ROOM)

    def _detach(self):
        expiry = getattr(self, "_expiry", None)
        if expiry is not None:
            expiry.cancel()
        self.hub.detach_watcher(self.outbox)

    async def receive(self, text_data=None, bytes_data=None):
        if self.outbox is None or self.outbox.closing or self._flooding():
            return
        try:
            frame = orjson.loads(text_data) if text_data is not None else None
        except orjson.JSONDecodeError:
            frame = None
        if type(frame) is dict and frame.get("type") == "ping":
            self._reply(events.pong(now_ms()))
        else:
            self._reply(events.error("forbidden", "a watch link can only watch"))
