"""Room hubs: one subscription per room per process, one encode per tick.

Every published position travels through the channel layer exactly once, to the room's
group (:func:`maps.protocol.events.room_group`). Each process that has sockets in the room runs
one :class:`RoomHub`, the only member of that group from that process. The hub owns the
room's :class:`~maps.domain.room_state.RoomState` (pure: members, latest positions, presence)
and does the I/O around it: it feeds the state the room events it receives, and on the
next boundary of a process-wide tick grid (``GEOSHARE["TICK_MS"]``) encodes the frames
the state returns once and pushes the same text to every local socket
(:class:`~maps.realtime.outbox.Outbox`); a ``place_event`` goes only to the sockets
whose member may see it, by the room's history visibility
(:meth:`RoomHub._push_by_reach`). Channel-layer traffic is therefore O(updates x
processes), not O(updates x members), and a snapshot is built from memory, not queried.

Room events are dispatched by their ``type`` to the method of the same name, dots
replaced by underscores (``room.fix`` -> :meth:`RoomHub.room_fix`), the Channels way;
their shapes are in :mod:`maps.protocol.events`. Services send the events that change a room;
hubs send each other ``room.presence``, ``room.beat``, ``room.hello`` and ``room.sync``.

The costs behind this design are measured in docs/benchmarks.md; the ASGI WebSocket
messages are from the ASGI specification ("WebSocket" section).
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from maps.domain.room_state import RoomState, tick_for
from maps.domain.watch import WatchView
from maps.protocol import events
from maps.realtime.layers import RoomsInMemoryChannelLayer
from maps.storage.dbthread import LOOKUP_GAP_S, Batcher, reads
from maps.storage.selectors import member_info, rooms_live_state
from maps.telemetry import metrics

log = logging.getLogger(__name__)

# A hub with no local sockets lingers this long, so reconnects do not reload state.
IDLE_GRACE_S = 30.0


def geoshare_setting(name):
    """Return ``settings.GEOSHARE[name]``, read at call time so tests can override it."""
    return settings.GEOSHARE[name]


class RoomHub:
    """The live state and fan-out of one room in this process.

    ``room`` is a dict with ``pk``, ``public_id`` and ``name``. Sockets are
    :class:`~maps.realtime.outbox.Outbox` objects (``member_id``, ``via_key`` (the id of the
    device whose key opened the socket, or ``None``), ``push``,
    ``resync``, ``close_now``).

    ``clock`` returns the wall-clock time in seconds (``time.time``) that shares' ends
    are compared with; ``monotonic`` the seconds other hubs' heartbeats expire by
    (``time.monotonic``). Both default to the registry's (:class:`HubRegistry`), which
    tests replace to end a share or lose a peer without waiting.
    """

    def __init__(self, registry: "HubRegistry", room: dict, *,
                 clock: Callable[[], float] | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.registry = registry
        self.clock = clock if clock is not None else registry.clock
        self.monotonic = monotonic if monotonic is not None else registry.monotonic
        self.room_pk = room["pk"]
        self.group = events.room_group(self.room_pk)
        self.state = RoomState({
            "public_id": room["public_id"],
            "name": room["name"],
            "tick_ms": geoshare_setting("TICK_MS"),
            "stale_after_ms": geoshare_setting("STALE_AFTER_MS"),
            "trail_ms": geoshare_setting("TRAIL_MS"),
        })
        self.layer = get_channel_layer()
        self.channel = None
        self.sockets: set[Any] = set()
        # member id -> the watch links' sockets (Outbox) that see only that member.
        self.watchers: dict[int, set[Any]] = {}
        # member id -> what those sockets have been told (maps.domain.watch).
        self.watch_views: dict[int, WatchView] = {}
        self._share_handle = None
        self._share_at = None
        self._shares_seen = -1
        self._flush_handle = None
        # Where in the tick this room flushes, as a fraction: the golden ratio's
        # multiples spread consecutive room ids evenly over [0, 1).
        self._phase = (self.room_pk * 0.6180339887498949) % 1.0
        # Flushes so far; the encoded snapshot parts and places frame, with what they
        # were encoded from (snapshot_message, places_message).
        self._ticks = 0
        self._snapshot_parts = None
        self._places_message = None
        self._idle_handle = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._healthy = True
        self.closed = False
        self._handlers = {
            kind: getattr(self, kind.replace(".", "_")) for kind in events.ROOM_EVENTS
        }

    # -- life cycle -------------------------------------------------------------

    async def start(self):
        """Subscribe to the room's group, load the state, and greet the other hubs.

        The state is read on the reads thread, together with the states of the other
        hubs that start meanwhile (:data:`live_states`).
        """
        self.channel = await self.layer.new_channel("hub.")
        await self.layer.group_add(self.group, self.channel)
        self.state.load(await live_states.load(self.room_pk))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._receive_loop(), name=f"hub-receive-{self.room_pk}"),
            loop.create_task(self._heartbeat_loop(), name=f"hub-beat-{self.room_pk}"),
        ]
        await self._send_group(events.room_hello(self.channel))

    async def stop(self):
        """Leave the group and stop this hub's tasks (no sockets are left)."""
        self.closed = True
        for handle in (self._flush_handle, self._idle_handle, self._share_handle):
            if handle is not None:
                handle.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception:
            log.warning("room %s: could not leave its group", self.room_pk, exc_info=True)

    # -- sockets ----------------------------------------------------------------

    def attach_watcher(self, socket):
        """Add a watch link's socket, which sees only ``socket.member_id``."""
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self.watchers.setdefault(socket.member_id, set()).add(socket)
        self.watch_views.setdefault(socket.member_id, WatchView(socket.member_id))
        socket.push(self.watch_snapshot_message(socket.member_id))

    def detach_watcher(self, socket):
        """Remove a watch link's socket; go idle when nothing is left."""
        watching = self.watchers.get(socket.member_id)
        if watching is None or socket not in watching:
            return
        watching.discard(socket)
        if not watching:
            del self.watchers[socket.member_id]
            self.watch_views.pop(socket.member_id, None)
        self._idle_if_empty()

    def watch_snapshot_message(self, member_id):
        """Return the ASGI send message of a watch link's ``snapshot``."""
        view = self.watch_views.get(member_id) or WatchView(member_id)
        frame = view.snapshot(self.state, self._now_ms())
        return events.send_message(events.encode(frame))

    def _close_watchers(self, member_id, code, only=None):
        for socket in list(self.watchers.get(member_id, ())):
            if only is None or only(socket):
                socket.close_now(code)

    def local_sockets(self, member_id):
        """Return how many sockets the member has open on this process."""
        return self.state.local.get(member_id, 0)

    def attach(self, socket, member_info):
        """Add a local socket: queue its snapshot first, then count it online.

        Synchronous on purpose: nothing can reach the room between the snapshot and
        the socket joining the fan-out, so the socket misses no update.
        """
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        member_id = socket.member_id
        came_online = self.state.socket_opened(member_id, member_info, self._now_ms())
        self.sockets.add(socket)
        self._changed()
        # One write: a reconnect storm is thousands of these at once.
        socket.push_all((self.snapshot_message(member_id), self.places_message()))
        if came_online and not self._alone():
            self._spawn(self._send_group(events.room_presence(self.channel, member_id,
                                                              True)))

    def detach(self, socket):
        """Remove a local socket; go idle when it was the last."""
        if socket not in self.sockets:
            return
        self.sockets.discard(socket)
        if self.state.socket_closed(socket.member_id, self._now_ms()):
            self._changed()
            if not self._alone():
                self._spawn(self._send_group(
                    events.room_presence(self.channel, socket.member_id, False)))
        self._idle_if_empty()

    def _idle_if_empty(self):
        if not self.sockets and not self.watchers and not self.closed:
            if self._idle_handle is None:
                loop = asyncio.get_running_loop()
                self._idle_handle = loop.call_later(self.registry.idle_grace_s,
                                                    self._idle_timeout)

    def _idle_timeout(self):
        self._idle_handle = None
        if not self.sockets and not self.watchers:
            self.registry.retire(self)

    def snapshot_message(self, member_id):
        """Return the ASGI send message of a ``snapshot`` frame for ``member_id``.

        The room's state is encoded once per tick for every socket that joins in it
        (a reconnect storm: 2,000 sockets of a 2,000-member room encoded it 2,000
        times); only ``you`` and ``now`` are per socket. A snapshot encoded earlier in
        the tick may miss changes made since: those are in the tick's frames, which
        every socket attached by then gets at the flush. Nothing taken away (a stopped
        share, a removed member, expired positions) is handed out after it went: that
        drops the encoded state at once.
        """
        key = (self._ticks, self.state.removals)
        if self._snapshot_parts is None or self._snapshot_parts[0] != key:
            self._snapshot_parts = (key, events.snapshot_tail(self.state.snapshot_parts()))
        text = events.snapshot_text(member_id, self._now_ms(), self._snapshot_parts[1])
        metrics.sent_one(text)
        return events.send_message(text)

    def places_message(self):
        """Return the ASGI send message of the ``places`` frame sent after a snapshot
        (encoded once per change of the places)."""
        places = self.state.places
        if self._places_message is None or self._places_message[0] is not places:
            text = events.encode(self.state.places_frame())
            self._places_message = (places, events.send_message(text))
        message = self._places_message[1]
        metrics.sent_one(message["text"])
        return message

    def resync_all(self):
        """Send every local socket a fresh snapshot (after the layer came back)."""
        for socket in list(self.sockets):
            socket.resync()

    def _close_member(self, member_id, code, only_keyed=False):
        for socket in [s for s in self.sockets if s.member_id == member_id]:
            if socket.via_key or not only_keyed:
                socket.close_now(code)

    # -- room events (dispatched by type) ------------------------------------------------

    def handle(self, message):
        """Apply one channel-layer message: call the method named after its type."""
        kind = message.get("type", "")
        handler = self._handlers.get(kind)
        if handler is None:
            log.warning("room %s: unknown message type %r", self.room_pk, kind)
            return
        handler(message)
        self._changed()

    def room_fix(self, message):
        self._apply_fix(message["p"])

    def _apply_fix(self, position):
        if not self.state.apply_fix(position):
            # Unknown here: joined through another process, or removed. Look it up; a
            # removed member's fix must not show.
            self._spawn(self._reload_member(position))

    def room_stop(self, message):
        self.state.apply_stop(message["member"], message["at"])
        # Links that ended with the share end now (the service revoked them).
        self._close_watchers(message["member"], events.CLOSE_NO_ROOM,
                             only=lambda socket: socket.bound)

    def room_share(self, message):
        self.state.apply_share(message["member"], message["until"],
                               message.get("source", ""), message.get("source_name", ""))

    def room_unwatch(self, message):
        for watching in self.watchers.values():
            for socket in list(watching):
                if socket.link_id == message["link"]:
                    socket.close_now(events.CLOSE_FORBIDDEN)

    def room_member(self, message):
        self.state.apply_member(message["member"])

    def room_kick(self, message):
        self.state.apply_kick(message["member"], self._now_ms())
        self._close_member(message["member"], events.CLOSE_FORBIDDEN)
        self._close_watchers(message["member"], events.CLOSE_NO_ROOM)

    def room_rekey(self, message):
        # Only the sockets opened with that device's key: Outbox.via_key is the id of
        # the device whose key opened the socket (None: a browser session).
        device = message["device"]
        for socket in [s for s in self.sockets if s.member_id == message["member"]]:
            if socket.via_key == device:
                socket.close_now(events.CLOSE_NOT_AUTHENTICATED)

    def room_deleted(self, message):
        for socket in list(self.sockets):
            socket.close_now(events.CLOSE_NO_ROOM)
        for member_id in list(self.watchers):
            self._close_watchers(member_id, events.CLOSE_NO_ROOM)

    def room_retention(self, message):
        self.state.expire(message["before"])

    def room_places(self, message):
        self.state.apply_places(message["places"])

    def room_place_event(self, message):
        self.state.apply_place_event(message["member"], message["place"],
                                     message["kind"], message["ts"])

    def room_visibility(self, message):
        self.state.apply_visibility(message["visibility"])

    def room_presence(self, message):
        if message["hub"] != self.channel:
            self.state.peer_presence(message["hub"], message["member"], message["online"],
                                     self._peer_expiry())

    def room_beat(self, message):
        if message["hub"] != self.channel:
            self.state.peer_online(message["hub"], message["online"], self._peer_expiry())

    def room_hello(self, message):
        if message["hub"] != self.channel:
            self.state.peer_online(message["hub"], (), self._peer_expiry())
            self._spawn(self._answer_hello(message["hub"]))

    def room_sync(self, message):
        if message["hub"] != self.channel:
            self.state.peer_sync(message["hub"], message["online"], message["positions"],
                                 message["stopped"], self._peer_expiry())

    def _now_ms(self):
        return int(self.clock() * 1000)

    def _peer_expiry(self):
        return self.monotonic() + 3 * geoshare_setting("HEARTBEAT_MS") / 1000

    async def _reload_member(self, position):
        info = await database_sync_to_async(member_info)(self.room_pk, position["member"])
        if info is None:
            return
        if position["member"] not in self.state.members:
            self.state.apply_member(info)
        self.state.apply_fix(position)
        self._changed()

    # -- fan-out ------------------------------------------------------------------

    def _changed(self):
        self._arm_share_end()
        if self._flush_handle is None and not self.closed and self.state.dirty:
            # Flush at the next boundary of the room's tick grid, not a full tick after
            # the first change: a quiet room's update then waits half a tick on average
            # instead of a whole one. Each room's grid is offset by its own phase, so
            # the rooms of a process flush spread over the tick instead of all at one
            # instant: a burst of every room's writes at once held the loop for about
            # 25 ms per tick at make bench S2 10,000 (docs/benchmarks.md).
            loop = asyncio.get_running_loop()
            tick = geoshare_setting("TICK_MS") / 1000
            phase = self._phase * tick
            now = loop.time() - phase
            self._flush_handle = loop.call_at(now - now % tick + tick + phase, self.flush)

    def flush(self):
        """Encode what changed since the last tick once; push it to every local socket.

        A ``place_event`` reaches only the sockets whose member may see it
        (:meth:`_push_by_reach`); the frames are still encoded once.

        Watch links' sockets get what changed of their member
        (:class:`~maps.domain.watch.WatchView`), encoded once per watched member.
        """
        self._flush_handle = None
        self._ticks += 1
        started = time.perf_counter()
        frames = self.state.flush()
        # One list for every socket: an idle one gets the tick's frames in one write.
        messages = [events.send_message(events.encode(frame)) for frame in frames]
        if any(frame["type"] == "place_event" for frame in frames):
            self._push_by_reach(frames, messages)
        elif messages:
            for socket in self.sockets:
                socket.push_all(messages)
        size = sum(metrics.text_bytes(message["text"]) for message in messages)
        metrics.flushed(len(messages), size, len(self.sockets),
                        time.perf_counter() - started)
        for member_id, watching in self.watchers.items():
            view = self.watch_views[member_id]
            mine = [events.send_message(events.encode(frame))
                    for frame in view.frames(self.state, frames)]
            if mine:
                for socket in watching:
                    socket.push_all(mine)

    def _push_by_reach(self, frames: list[events.ServerFrame],
                       messages: list[dict[str, str]]) -> None:
        """Push a tick that holds ``place_event`` frames: each socket gets those its
        member may see (:meth:`~maps.domain.room_state.RoomState.event_reach`, read
        now: the room's visibility and the member's role as they are).

        Every frame is encoded once (``messages``); sockets are grouped by what they
        may see, so there is one list for "everyone", one for "none", and one per
        member with events of their own in this tick under "own" (a member with none
        sees what "none" sees).
        """
        movers = {frame["member"] for frame in frames if frame["type"] == "place_event"}
        lists: dict[int | str, list[dict[str, str]]] = {}
        for socket in self.sockets:
            member_id = socket.member_id
            reach = self.state.event_reach(member_id)
            if reach == "own" and member_id not in movers:
                reach = "none"
            key = member_id if reach == "own" else reach
            mine = lists.get(key)
            if mine is None:
                mine = lists[key] = [messages[index]
                                     for index in tick_for(frames, reach, member_id)]
            if mine:
                socket.push_all(mine)

    # -- shares that end by themselves -----------------------------------------------

    def _arm_share_end(self):
        """Keep one timer at the earliest end of a running share.

        Looked at only when the shares changed (``RoomState.shares_version``): a fix
        must not cost a walk over every member's share.
        """
        if self.state.shares_version == self._shares_seen:
            return
        self._shares_seen = self.state.shares_version
        at = self.state.next_share_end()
        if at == self._share_at or self.closed:
            return
        if self._share_handle is not None:
            self._share_handle.cancel()
            self._share_handle = None
        self._share_at = at
        if at is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, (at - self._now_ms()) / 1000)
            self._share_handle = loop.call_later(delay, self._shares_end)

    def _shares_end(self):
        self._share_handle = None
        self._share_at = None
        self._shares_seen = -1
        ended = self.state.expire_shares(self._now_ms())
        for member_id in ended:
            self._close_watchers(member_id, events.CLOSE_NO_ROOM,
                                 only=lambda socket: socket.bound)
        # Every process's hub ends the share at the same time by itself; the
        # maintenance loop writes it down (maps.services.shares.shares_expire): the hub
        # never writes to the database.
        self._changed()

    # -- channel layer --------------------------------------------------------------

    def _spawn(self, coroutine):
        task = asyncio.get_running_loop().create_task(coroutine)
        self.registry.keep(task)

    def _alone(self):
        """Return whether no other hub can hear the room's group.

        The in-memory layer lives in one process, which has one hub per room: its
        group holds this hub alone, and a message to the other hubs (``presence``,
        ``hello``) would come back only to be ignored (a copy, a queue and a wake-up
        per socket opened or closed: make bench's reconnect storm, docs/benchmarks.md).
        On channels_redis other processes' hubs may be in the group: always sent.
        """
        if not isinstance(self.layer, RoomsInMemoryChannelLayer):
            return False
        return self.layer.group_channels(self.group) == {self.channel}

    async def _send_group(self, message):
        """Send ``message`` to the other hubs of the room (none: nothing is sent)."""
        if self._alone():
            return
        try:
            await self.layer.group_send(self.group, message)
        except Exception:
            self._healthy = False
            metrics.LAYER_ERRORS.inc()
            log.warning("room %s: channel layer unavailable", self.room_pk)

    async def _receive_loop(self):
        backoff = 0.1
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._healthy = False
                metrics.LAYER_ERRORS.inc()
                log.warning("room %s: channel layer receive failed", self.room_pk)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            try:
                self.handle(message)
            except Exception:
                # One bad message must not stop the room, let alone other rooms.
                log.exception("room %s: could not handle a %r message", self.room_pk,
                              message.get("type"))

    async def _answer_hello(self, hub):
        try:
            await self.layer.send(hub, self.state.sync_event(self.channel))
        except Exception:
            self._healthy = False
            metrics.LAYER_ERRORS.inc()

    async def _heartbeat_loop(self):
        while True:
            await asyncio.sleep(geoshare_setting("HEARTBEAT_MS") / 1000)
            self.state.expire_peers(self.monotonic())
            self._changed()
            try:
                # Re-joining refreshes the group's expiry and, after the layer's
                # server restarted empty, subscribes the room again.
                await self.layer.group_add(self.group, self.channel)
                await self.layer.group_send(
                    self.group, events.room_beat(self.channel, list(self.state.local))
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                self._healthy = False
                metrics.LAYER_ERRORS.inc()
                log.warning("room %s: heartbeat failed; will retry", self.room_pk)
                continue
            if not self._healthy:
                # Back after an outage: whatever was missed, resync everyone.
                self._healthy = True
                metrics.LAYER_RECONNECTS.inc()
                log.info("room %s: channel layer back; resyncing", self.room_pk)
                await self._send_group(events.room_hello(self.channel))
                self.resync_all()


# Hubs that start at once (a restart's reconnect storm) load their rooms together.
live_states = Batcher(reads, rooms_live_state, max_batch=200, gap=LOOKUP_GAP_S)


class HubRegistry:
    """This process's (this event loop's) room hubs, started on first use.

    The clocks its hubs start with: ``clock`` (wall-clock seconds, ``time.time``) for
    shares' ends, ``monotonic`` (``time.monotonic``) for peers' heartbeats; and
    ``idle_grace_s``, how long a hub with no sockets lingers (:data:`IDLE_GRACE_S`).
    Tests set them to drive time instead of waiting for it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 idle_grace_s: float = IDLE_GRACE_S) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.idle_grace_s = idle_grace_s
        self.hubs: dict[int, RoomHub] = {}
        self._starting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.addresses: dict[str, int] = {}

    def get(self, room_pk):
        """Return the running hub of a room, or ``None``."""
        return self.hubs.get(room_pk)

    def address_open(self, address):
        """Count a socket from ``address``; return ``False`` (uncounted) past the limit.

        ``GEOSHARE["MAX_SOCKETS_PER_ADDRESS"]`` per process; 0 is no limit.
        """
        allowed = geoshare_setting("MAX_SOCKETS_PER_ADDRESS")
        count = self.addresses.get(address, 0)
        if allowed and count >= allowed:
            return False
        self.addresses[address] = count + 1
        return True

    def address_closed(self, address):
        """Uncount a socket counted by :meth:`address_open`."""
        count = self.addresses.get(address, 0) - 1
        if count > 0:
            self.addresses[address] = count
        else:
            self.addresses.pop(address, None)

    async def hub_for(self, room):
        """Return the room's hub, starting it once however many callers ask at once.

        ``room`` is a dict with ``pk``, ``public_id`` and ``name``.
        """
        hub = self.hubs.get(room["pk"])
        if hub is not None and not hub.closed:
            return hub
        starting = self._starting.get(room["pk"])
        if starting is None:
            starting = asyncio.get_running_loop().create_task(self._start(room))
            self._starting[room["pk"]] = starting
        return await asyncio.shield(starting)

    async def _start(self, room):
        try:
            hub = RoomHub(self, room)
            await hub.start()
            self.hubs[room["pk"]] = hub
            return hub
        finally:
            self._starting.pop(room["pk"], None)

    def retire(self, hub):
        """Stop an idle hub."""
        if self.hubs.get(hub.room_pk) is hub:
            del self.hubs[hub.room_pk]
        self.keep(asyncio.get_running_loop().create_task(hub.stop()))

    def keep(self, task):
        """Hold a reference to a background task until it finishes."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self):
        """Stop every hub (tests; process shutdown)."""
        hubs = list(self.hubs.values())
        self.hubs.clear()
        for hub in hubs:
            await hub.stop()


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HubRegistry] = (
    weakref.WeakKeyDictionary())


def registry():
    """Return the hub registry of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _registries.get(loop)
    if found is None:
        found = _registries[loop] = HubRegistry()
    return found


def registries():
    """Return the hub registries of every event loop of this process (for metrics)."""
    return list(_registries.values())


def _open_sockets():
    return sum(len(hub.sockets) for r in registries() for hub in list(r.hubs.values()))


def _live_hubs():
    return sum(len(r.hubs) for r in registries())


metrics.gauge_sources(open_sockets=_open_sockets, live_hubs=_live_hubs)
