"""Room hubs: one subscription per room per process, one encode per tick.

Every published position travels through the channel layer exactly once, to the room's
group (``room.<pk>``). Each process that has sockets in the room runs one
:class:`RoomHub`, the only member of that group from that process. The hub keeps the
room's live state in memory (members, their latest positions, who is online where) and,
one tick after the first change (``GEOSHARE["TICK_MS"]``), encodes one frame and pushes
the same text to every local socket. Channel-layer traffic is therefore O(updates x
processes), not O(updates x members), and a snapshot is built from memory, not queried.

Messages between hubs (``type`` values on the layer):

- ``room.fix`` ``{"p": <wire position>}``: a member's position (maps.services publishes).
- ``room.stop`` ``{"member", "at"}``: a member stopped sharing at server time ``at`` (ms).
- ``room.member`` ``{"member": <member dict>}``: a member joined or changed.
- ``room.kick`` ``{"member"}``: a member was removed or revoked; close their sockets.
- ``room.rekey`` ``{"member"}``: the member's device key changed; close sockets opened
  with the old one.
- ``room.deleted``: the room is gone; close every socket.
- ``room.presence`` ``{"hub", "member", "online"}``: a member's sockets on hub ``hub``.
- ``room.beat`` ``{"hub", "online"}``: a hub is alive with these members online.
- ``room.hello`` ``{"hub"}``: a hub started; the others answer ``room.sync`` directly.
- ``room.sync`` ``{"hub", "online", "positions", "stopped"}``: a hub's live state.

Sources: the costs behind this design are in ../shared/notes/fanout.md; the ASGI
WebSocket messages are from the ASGI spec ("WebSocket" section).
"""

import asyncio
import logging
import time
import uuid
import weakref

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from . import protocol
from .fixes import now_ms

log = logging.getLogger(__name__)

# A hub with no local sockets lingers this long, so reconnects do not reload state.
IDLE_GRACE_S = 30.0
# Changes above this many in one tick go out as one ``members`` frame.
PRESENCE_FRAMES_MAX = 3


def geoshare_setting(name):
    """Return ``settings.GEOSHARE[name]``, read at call time so tests can override it."""
    return settings.GEOSHARE[name]


class RoomHub:
    """The live state and fan-out of one room in this process.

    Shapes: ``members`` maps member id to a member dict (``id``, ``name``, ``color``,
    ``role``); ``latest`` maps member id to its live wire position (``Fix.to_wire``);
    times are epoch milliseconds. Sockets are objects with ``member_id``,
    ``member_info`` (a member dict), ``via_key`` (opened with a device key) and the
    methods ``push(message)`` and ``close_now(code)`` (see maps.consumers).
    """

    def __init__(self, registry, room):
        self.registry = registry
        self.room_pk = room["pk"]
        self.room = room
        self.group = f"room.{self.room_pk}"
        self.layer = get_channel_layer()
        self.channel = None
        self.sockets = set()
        self.members = {}
        self.latest = {}
        self.last_seen = {}
        self.stopped_at = {}
        self.local_counts = {}
        self.remote = {}  # hub channel -> (set of member ids, expiry in monotonic s)
        self.pending_positions = {}
        self.pending_events = []
        self.pending_members = {}
        self._flush_handle = None
        self._idle_handle = None
        self._tasks = []
        self._healthy = True
        self.closed = False

    # -- life cycle -------------------------------------------------------------

    async def start(self):
        """Subscribe to the room's group, load the state, and greet the other hubs."""
        from .selectors import room_live_state

        self.channel = await self.layer.new_channel("hub.")
        await self.layer.group_add(self.group, self.channel)
        state = await database_sync_to_async(room_live_state)(self.room_pk)
        for member in state["members"]:
            self.members[member["id"]] = member["info"]
            if member["last_seen"] is not None:
                self.last_seen[member["id"]] = member["last_seen"]
            if member["stopped_at"] is not None:
                self.stopped_at[member["id"]] = member["stopped_at"]
        for position in state["positions"]:
            self.latest[position["member"]] = position
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._receive_loop(), name=f"hub-receive-{self.room_pk}"),
            loop.create_task(self._heartbeat_loop(), name=f"hub-beat-{self.room_pk}"),
        ]
        await self._send_group({"type": "room.hello", "hub": self.channel})

    async def stop(self):
        """Leave the group and stop this hub's tasks (no sockets are left)."""
        self.closed = True
        for handle in (self._flush_handle, self._idle_handle):
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

    def attach(self, socket):
        """Add a local socket: queue its snapshot first, then count it online.

        Synchronous on purpose: nothing can reach the room between the snapshot and
        the socket joining the fan-out, so the socket misses no update.
        """
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        member_id = socket.member_id
        if member_id not in self.members:
            # Joined after this hub loaded the room (another process created it).
            self.members[member_id] = socket.member_info
        now = now_ms()
        was_online = self.is_online(member_id)
        self.local_counts[member_id] = self.local_counts.get(member_id, 0) + 1
        self.last_seen[member_id] = now
        self.sockets.add(socket)
        if not was_online:
            self._member_changed(member_id)
        socket.push(self.snapshot_message(member_id))
        if not was_online:
            self._spawn(self._announce(member_id, True))

    def detach(self, socket):
        """Remove a local socket; go idle when it was the last."""
        if socket not in self.sockets:
            return
        self.sockets.discard(socket)
        member_id = socket.member_id
        count = self.local_counts.get(member_id, 0) - 1
        if count > 0:
            self.local_counts[member_id] = count
        else:
            self.local_counts.pop(member_id, None)
            self.last_seen[member_id] = now_ms()
            if not self.is_online(member_id):
                self._member_changed(member_id)
            self._spawn(self._announce(member_id, False))
        if not self.sockets and not self.closed:
            loop = asyncio.get_running_loop()
            self._idle_handle = loop.call_later(IDLE_GRACE_S, self._idle_timeout)

    def _idle_timeout(self):
        self._idle_handle = None
        if not self.sockets:
            self.registry.retire(self)

    async def _announce(self, member_id, online):
        await self._send_group(
            {"type": "room.presence", "hub": self.channel, "member": member_id,
             "online": online}
        )

    # -- state --------------------------------------------------------------------

    def is_online(self, member_id):
        """Return whether the member has an open socket on any live hub."""
        if self.local_counts.get(member_id):
            return True
        return any(member_id in online for online, _ in self.remote.values())

    def member_dict(self, member_id):
        """Return the member as the protocol shows it (a ``snapshot`` member)."""
        info = self.members[member_id]
        return {
            **info,
            "online": self.is_online(member_id),
            "sharing": member_id in self.latest,
            "last_seen": self.last_seen.get(member_id),
        }

    def snapshot_message(self, member_id):
        """Return the ASGI send message of a ``snapshot`` frame for ``member_id``."""
        frame = protocol.snapshot(
            you=member_id,
            now=now_ms(),
            room={
                "id": self.room["public_id"],
                "name": self.room["name"],
                "tick_ms": geoshare_setting("TICK_MS"),
                "stale_after_ms": geoshare_setting("STALE_AFTER_MS"),
                "trail_ms": geoshare_setting("TRAIL_MS"),
            },
            members=[self.member_dict(m) for m in self.members],
            positions=list(self.latest.values()),
        )
        return protocol.send_message(protocol.encode(frame))

    def _member_changed(self, member_id):
        if member_id in self.members:
            self.pending_members[member_id] = True
            self._schedule_flush()

    def _apply_fix(self, position):
        member_id = position["member"]
        if member_id not in self.members:
            # Unknown here: joined through another process, or removed. Look it up; a
            # removed member's fix must not show.
            self._spawn(self._reload_member(member_id, position))
            return
        stopped = self.stopped_at.get(member_id)
        if stopped is not None and position["seen"] < stopped:
            return
        current = self.latest.get(member_id)
        if current is not None and position["ts"] < current["ts"]:
            # Late or out of order: history only, the marker never moves backwards.
            return
        self.latest[member_id] = position
        self.pending_positions[member_id] = position
        seen = position["seen"]
        if seen > self.last_seen.get(member_id, 0):
            self.last_seen[member_id] = seen
        if current is None:
            self._member_changed(member_id)
        self._schedule_flush()

    def _apply_stop(self, member_id, at):
        if at > self.stopped_at.get(member_id, 0):
            self.stopped_at[member_id] = at
        self.pending_positions.pop(member_id, None)
        if self.latest.pop(member_id, None) is not None:
            self.pending_events.append(protocol.stopped(member_id))
            self._member_changed(member_id)

    def _apply_kick(self, member_id):
        self._apply_stop(member_id, now_ms())
        self.pending_members.pop(member_id, None)
        if self.members.pop(member_id, None) is not None:
            self.pending_events.append(protocol.removed(member_id))
            self._schedule_flush()
        for socket in [s for s in self.sockets if s.member_id == member_id]:
            socket.close_now(protocol.CLOSE_FORBIDDEN)

    async def _reload_member(self, member_id, position):
        from .selectors import member_info

        info = await database_sync_to_async(member_info)(self.room_pk, member_id)
        if info is None:
            return
        if member_id not in self.members:
            self.members[member_id] = info
            self._member_changed(member_id)
        self._apply_fix(position)

    # -- fan-out ------------------------------------------------------------------

    def _schedule_flush(self):
        if self._flush_handle is None and not self.closed:
            # Flush at the next boundary of a process-wide tick grid, not a full tick
            # after the first change: a quiet room's update then waits half a tick on
            # average instead of a whole one, and rooms flush together.
            loop = asyncio.get_running_loop()
            tick = geoshare_setting("TICK_MS") / 1000
            now = loop.time()
            self._flush_handle = loop.call_at(now - now % tick + tick, self.flush)

    def flush(self):
        """Encode what changed since the last tick once; push it to every local socket."""
        self._flush_handle = None
        frames = list(self.pending_events)
        self.pending_events.clear()
        changed = [m for m in self.pending_members if m in self.members]
        self.pending_members.clear()
        if len(changed) > PRESENCE_FRAMES_MAX:
            frames.append(protocol.members([self.member_dict(m) for m in changed]))
        else:
            for member_id in changed:
                frames.append(
                    protocol.presence(self.member_dict(member_id), self.is_online(member_id))
                )
        if self.pending_positions:
            frames.append(protocol.positions(list(self.pending_positions.values())))
            self.pending_positions.clear()
        for frame in frames:
            message = protocol.send_message(protocol.encode(frame))
            for socket in self.sockets:
                socket.push(message)

    def resync_all(self):
        """Send every local socket a fresh snapshot (after the layer came back)."""
        for socket in list(self.sockets):
            socket.resync()

    # -- channel layer --------------------------------------------------------------

    def _spawn(self, coroutine):
        task = asyncio.get_running_loop().create_task(coroutine)
        self.registry.keep(task)

    async def _send_group(self, message):
        try:
            await self.layer.group_send(self.group, message)
        except Exception:
            self._healthy = False
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

    def handle(self, message):
        """Apply one channel-layer message (see the module docstring for the types)."""
        kind = message.get("type")
        if kind == "room.fix":
            self._apply_fix(message["p"])
        elif kind == "room.stop":
            self._apply_stop(message["member"], message["at"])
            self._schedule_flush()
        elif kind == "room.member":
            info = message["member"]
            self.members[info["id"]] = info
            self._member_changed(info["id"])
        elif kind == "room.kick":
            self._apply_kick(message["member"])
        elif kind == "room.rekey":
            for socket in [s for s in self.sockets
                           if s.member_id == message["member"] and s.via_key]:
                socket.close_now(protocol.CLOSE_NOT_AUTHENTICATED)
        elif kind == "room.deleted":
            for socket in list(self.sockets):
                socket.close_now(protocol.CLOSE_NO_ROOM)
        elif kind in ("room.presence", "room.beat", "room.hello", "room.sync"):
            if message.get("hub") != self.channel:
                self._handle_peer(kind, message)
        else:
            log.warning("room %s: unknown message type %r", self.room_pk, kind)

    def _handle_peer(self, kind, message):
        hub = message["hub"]
        expiry = time.monotonic() + 3 * geoshare_setting("HEARTBEAT_MS") / 1000
        if kind == "room.presence":
            online, _ = self.remote.get(hub, (set(), expiry))
            before = self.is_online(message["member"])
            if message["online"]:
                online.add(message["member"])
            else:
                online.discard(message["member"])
            self.remote[hub] = (online, expiry)
            if self.is_online(message["member"]) != before:
                self._member_changed(message["member"])
        elif kind == "room.beat":
            self._set_remote(hub, set(message["online"]), expiry)
        elif kind == "room.hello":
            self._set_remote(hub, set(), expiry)
            self._spawn(self._answer_hello(hub))
        elif kind == "room.sync":
            self._set_remote(hub, set(message["online"]), expiry)
            for member_id, at in message["stopped"]:
                if at > self.stopped_at.get(member_id, 0):
                    self._apply_stop(member_id, at)
            for position in message["positions"]:
                self._apply_fix(position)

    def _set_remote(self, hub, online, expiry):
        before, _ = self.remote.get(hub, (set(), expiry))
        self.remote[hub] = (online, expiry)
        for member_id in before ^ online:
            self._member_changed(member_id)

    async def _answer_hello(self, hub):
        message = {
            "type": "room.sync",
            "hub": self.channel,
            "online": list(self.local_counts),
            "positions": list(self.latest.values()),
            "stopped": list(self.stopped_at.items()),
        }
        try:
            await self.layer.send(hub, message)
        except Exception:
            self._healthy = False

    async def _heartbeat_loop(self):
        while True:
            await asyncio.sleep(geoshare_setting("HEARTBEAT_MS") / 1000)
            self._expire_peers()
            try:
                # Re-joining refreshes the group's expiry and, after the layer's
                # server restarted empty, subscribes the room again.
                await self.layer.group_add(self.group, self.channel)
                await self.layer.group_send(
                    self.group,
                    {"type": "room.beat", "hub": self.channel,
                     "online": list(self.local_counts)},
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                self._healthy = False
                log.warning("room %s: heartbeat failed; will retry", self.room_pk)
                continue
            if not self._healthy:
                # Back after an outage: whatever was missed, resync everyone.
                self._healthy = True
                log.info("room %s: channel layer back; resyncing", self.room_pk)
                await self._send_group({"type": "room.hello", "hub": self.channel})
                self.resync_all()

    def _expire_peers(self):
        now = time.monotonic()
        for hub, (online, expiry) in list(self.remote.items()):
            if expiry < now:
                del self.remote[hub]
                for member_id in online:
                    self._member_changed(member_id)


class HubRegistry:
    """This process's (this event loop's) room hubs, started on first use."""

    def __init__(self):
        self.hubs = {}
        self._starting = {}
        self._tasks = set()
        self.process_id = uuid.uuid4().hex[:8]

    def get(self, room_pk):
        """Return the running hub of a room, or ``None``."""
        return self.hubs.get(room_pk)

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


_registries = weakref.WeakKeyDictionary()


def registry():
    """Return the hub registry of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _registries.get(loop)
    if found is None:
        found = _registries[loop] = HubRegistry()
    return found
