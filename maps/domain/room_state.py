"""The live state of one room, as plain data and plain methods: no asyncio, no I/O.

A :class:`RoomState` holds what a room's map shows (members, their latest positions,
who is online on which process) and turns each change into the frames to send
(Zulip's ``apply_events`` beside its event queue is the model). Changes accumulate
until :meth:`RoomState.flush`, which returns the frames of one tick; the hub
(:mod:`maps.realtime.hub`) calls it on the tick grid and moves the bytes.

Times are passed in by the caller: ``now`` is UTC epoch milliseconds, ``mono`` is a
monotonic clock in seconds (peer expiry). Shapes are :mod:`maps.protocol.events`'.
"""

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NotRequired, TypedDict, cast

from maps.domain import policy
from maps.domain.choices import HistoryVisibility
from maps.protocol import events
from maps.protocol.events import (
    MemberInfo,
    Visibility,
    WireMember,
    WirePlace,
    WirePosition,
)

#: A frame of a tick.
Frame = events.ServerFrame


class StoredMember(TypedDict):
    """One member of :func:`maps.storage.selectors.room_live_state`'s answer."""

    id: int
    info: MemberInfo
    last_seen: int | None
    stopped_at: int | None
    share: str
    sharing_until: int | None
    share_source: NotRequired[str]
    share_source_name: NotRequired[str]


class StoredRoom(TypedDict):
    """:func:`maps.storage.selectors.room_live_state`'s answer (times in epoch ms).

    ``visibility`` is the room's history visibility (a
    :class:`~maps.domain.choices.HistoryVisibility` value; ``members`` when absent).
    """

    members: list[StoredMember]
    positions: list[WirePosition]
    places: list[WirePlace]
    visibility: NotRequired[Visibility]

# Changes above this many in one tick go out as one ``members`` frame.
PRESENCE_FRAMES_MAX = 3


class RoomState:
    """Members, latest positions, stops and presence of one room.

    - ``members``: member id -> :class:`~maps.protocol.events.MemberInfo`;
    - ``latest``: member id -> live :class:`~maps.protocol.events.WirePosition`;
    - ``last_seen``, ``stopped_at``: member id -> epoch ms;
    - ``shares``: member id -> end of the running share (epoch ms, or ``None`` for
      open-ended), for members whose share is on; ``ended``: members whose share was
      ended (by them or by its end time); anyone else has never shared;
    - ``sources``: member id -> (source, name) of the running share
      (:mod:`maps.domain.sources`; ``("", "")`` when not recorded);
    - ``local``: member id -> number of sockets on this process;
    - ``remote``: peer hub id -> (set of member ids online there, expiry in ``mono`` s);
    - ``visibility``: the room's history visibility, which decides who gets which
      ``place_event`` frames (:meth:`event_reach`).
    """

    def __init__(self, room: dict[str, Any]) -> None:
        """``room`` is a dict with ``public_id``, ``name`` and the ``RoomInfo`` timings
        ``tick_ms``, ``stale_after_ms``, ``trail_ms``."""
        self.room = room
        self.members: dict[int, MemberInfo] = {}
        self.latest: dict[int, WirePosition] = {}
        # member id -> the device name the last positions frame gave for the member
        # ("" for none): a frame repeats it only when it changed (_frame_position).
        self._sent_devices: dict[int, str] = {}
        self.last_seen: dict[int, int] = {}
        self.stopped_at: dict[int, int] = {}
        self.shares: dict[int, int | None] = {}
        self.ended: set[int] = set()
        self.sources: dict[int, tuple[str, str]] = {}
        # Members whose share moved to another source: their next position is live
        # whatever its device time (two devices' clocks do not compare).
        self._new_source: set[int] = set()
        # Bumped whenever a share starts, changes or ends: the hub re-arms its timer
        # only then, not on every fix.
        self.shares_version = 0
        # Bumped whenever something is taken away (a position, a member): a snapshot
        # encoded before must not be handed out after (maps.realtime.hub.RoomHub.snapshot_message).
        self.removals = 0
        self.local: dict[int, int] = {}
        self.remote: dict[str, tuple[set[int], float]] = {}
        self._positions: dict[int, WirePosition] = {}
        self._events: list[Frame] = []
        self._changed: dict[int, bool] = {}
        # The room's places (WirePlace dicts), sent as a ``places`` frame after each
        # snapshot and whenever they change.
        self.places: list[WirePlace] = []
        self.visibility: Visibility = cast(Visibility, HistoryVisibility.MEMBERS.value)

    # -- loading -----------------------------------------------------------------------

    def load(self, stored: StoredRoom) -> None:
        """Take the stored state of :func:`maps.storage.selectors.room_live_state`."""
        for member in stored["members"]:
            member_id = member["id"]
            self.members[member_id] = member["info"]
            if member["last_seen"] is not None:
                self.last_seen[member_id] = member["last_seen"]
            if member["stopped_at"] is not None:
                self.stopped_at[member_id] = member["stopped_at"]
            if member["share"] == "on":
                self.shares[member_id] = member["sharing_until"]
                self.sources[member_id] = (member.get("share_source", ""),
                                           member.get("share_source_name", ""))
            elif member["share"] == "ended":
                self.ended.add(member_id)
        self.shares_version += 1
        for position in stored["positions"]:
            self.latest[position["member"]] = position
        self.places = stored.get("places", [])
        self.visibility = stored.get("visibility", self.visibility)

    # -- queries -------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether a flush would send anything."""
        return bool(self._positions or self._events or self._changed)

    def is_online(self, member_id: int) -> bool:
        """Return whether the member has an open socket on this or a live peer hub."""
        if self.local.get(member_id):
            return True
        return any(member_id in online for online, _ in self.remote.values())

    def share_state(self, member_id: int, now: int) -> Literal["on", "off", "ended"]:
        """Return the member's share at ``now``: ``"on"``, ``"off"`` or ``"ended"``."""
        if member_id in self.shares:
            until = self.shares[member_id]
            return "on" if until is None or until > now else "ended"
        return "ended" if member_id in self.ended else "off"

    def share_source(self, member_id: int) -> str:
        """Return the running share's source (``""``: none recorded, or no share)."""
        return self.sources.get(member_id, ("", ""))[0]

    def share_source_name(self, member_id: int) -> str:
        """Return the name of the running share's source (``""`` when unknown)."""
        return self.sources.get(member_id, ("", ""))[1]

    def next_share_end(self) -> int | None:
        """Return the earliest end (epoch ms) of a running share, or ``None``."""
        ends = [until for until in self.shares.values() if until is not None]
        return min(ends) if ends else None

    def event_reach(self, member_id: int) -> policy.HistoryReach:
        """Return whose ``place_event`` frames a socket of ``member_id`` gets:
        ``"everyone"``, ``"own"`` (only the member's own) or ``"none"``.

        The history rule (:func:`maps.domain.policy.history_reach`) with the member's
        role now and the room's visibility now; a member unknown here gets none.
        """
        info = self.members.get(member_id)
        if info is None:
            return "none"
        return policy.history_reach(info["role"], self.visibility)

    def wire_member(self, member_id: int) -> WireMember:
        """Return the :class:`~maps.protocol.events.WireMember` of ``member_id``."""
        source, source_name = self.sources.get(member_id, ("", ""))
        return {
            **self.members[member_id],
            "online": self.is_online(member_id),
            "sharing": member_id in self.shares,
            "sharing_until": self.shares.get(member_id),
            "last_seen": self.last_seen.get(member_id),
            "source": source,
            "source_name": source_name,
        }

    def snapshot(self, you: int | None, now: int) -> events.Snapshot:
        """Return the :class:`~maps.protocol.events.Snapshot` frame for member ``you``."""
        return events.snapshot(you=you, now=now, **self.snapshot_parts())

    def snapshot_parts(self) -> dict[str, Any]:
        """Return what a snapshot holds for everyone alike: ``room``, ``members`` and
        ``positions`` (:meth:`snapshot` adds whom it is for and the time)."""
        return dict(
            room={
                "id": self.room["public_id"],
                "name": self.room["name"],
                "tick_ms": self.room["tick_ms"],
                "stale_after_ms": self.room["stale_after_ms"],
                "trail_ms": self.room["trail_ms"],
            },
            members=[self.wire_member(m) for m in self.members],
            positions=list(self.latest.values()),
        )

    def sync_event(self, hub: str) -> events.RoomSync:
        """Return the ``room.sync`` event that tells a starting peer this state."""
        return events.room_sync(
            hub,
            online=list(self.local),
            positions=list(self.latest.values()),
            stopped=[[member_id, at] for member_id, at in self.stopped_at.items()],
        )

    # -- transitions ------------------------------------------------------------------------

    def apply_fix(self, position: WirePosition) -> bool:
        """Take a position; return ``False`` when its member is unknown here.

        An unknown member may have joined through another process, or been removed: the
        caller looks it up and calls :meth:`apply_member` first, or drops the fix.
        A position received before the member's last stop, or older (device time) than
        the live one (unless it is the first since the share moved to another source),
        changes nothing live: it only went to the history.
        """
        member_id = position["member"]
        if member_id not in self.members:
            return False
        stopped = self.stopped_at.get(member_id)
        if stopped is not None and position["seen"] < stopped:
            return True
        current = self.latest.get(member_id)
        if (current is not None and position["ts"] < current["ts"]
                and member_id not in self._new_source):
            return True
        self._new_source.discard(member_id)
        self.latest[member_id] = position
        self._positions[member_id] = position
        if position["seen"] > self.last_seen.get(member_id, 0):
            # Not announced: a member's ``last_seen`` is for when they have no live
            # position; the position itself carries ``seen``. A presence frame per
            # first position doubled the first second's ticks of a room whose members
            # all start at once (make bench S1 at 2,000: 84-135 ms per tick, not 30-49).
            self.last_seen[member_id] = position["seen"]
        return True

    def apply_share(self, member_id: int, until: int | None, source: str = "",
                    source_name: str = "") -> None:
        """The member's share started or changed; it ends at ``until`` (ms) or never;
        its positions come from ``source`` (named ``source_name``). When a running
        share moves to another source, that source's next position replaces the live
        one whatever its device time."""
        if member_id in self.shares and self.share_source(member_id) != source:
            self._new_source.add(member_id)
        self.shares[member_id] = until
        self.sources[member_id] = (source, source_name)
        self.shares_version += 1
        self.ended.discard(member_id)
        self._member_changed(member_id)

    def apply_stop(self, member_id: int, at: int) -> None:
        """The member's share ended at server time ``at``: drop the live position."""
        self.removals += 1
        if at > self.stopped_at.get(member_id, 0):
            self.stopped_at[member_id] = at
        self.ended.add(member_id)
        self.sources.pop(member_id, None)
        if self.shares.pop(member_id, False) is not False:
            self.shares_version += 1
            self._member_changed(member_id)
        self._positions.pop(member_id, None)
        self._sent_devices.pop(member_id, None)
        if self.latest.pop(member_id, None) is not None:
            self._events.append(events.stopped(member_id))
            self._member_changed(member_id)

    def apply_places(self, items: list[WirePlace]) -> None:
        """Take the room's places (all of them); every socket gets them at the next
        flush."""
        self.places = items
        self._events.append(events.places(items))

    def apply_place_event(self, member_id: int, place_id: int,
                          kind: Literal["enter", "leave"], ts: int) -> None:
        """Queue a ``place_event`` frame; the hub gives it only to the sockets whose
        member may see it (:func:`tick_for`)."""
        self._events.append(events.place_event(member_id, place_id, kind, ts))

    def apply_visibility(self, visibility: Visibility) -> None:
        """The room's history visibility changed: later ``place_event`` frames go by
        it (nothing else a socket sees depends on it)."""
        self.visibility = visibility

    def places_frame(self) -> events.Places:
        """Return the ``places`` frame a socket gets right after its snapshot."""
        return events.places(self.places)

    def expire_shares(self, now: int) -> list[int]:
        """End every share whose end time has come; return the members whose did."""
        ended = {m: until for m, until in self.shares.items()
                 if until is not None and until <= now}
        for member_id, until in ended.items():
            self.apply_stop(member_id, until)
        return list(ended)

    def apply_member(self, info: MemberInfo) -> None:
        """A member joined or changed (``info`` a :class:`~maps.protocol.events.MemberInfo`)."""
        self.members[info["id"]] = info
        self._member_changed(info["id"])

    def apply_kick(self, member_id: int, now: int) -> None:
        """The member was removed: no marker, no list entry."""
        self.apply_stop(member_id, now)
        self._changed.pop(member_id, None)
        if self.members.pop(member_id, None) is not None:
            self._events.append(events.removed(member_id))
        self.last_seen.pop(member_id, None)
        self.stopped_at.pop(member_id, None)
        self.ended.discard(member_id)

    def expire(self, before: int) -> None:
        """Drop live positions received before ``before`` (epoch ms): past retention."""
        self.removals += 1
        for member_id in [m for m, p in self.latest.items() if p["seen"] < before]:
            del self.latest[member_id]
            self._positions.pop(member_id, None)
            self._sent_devices.pop(member_id, None)
            self._events.append(events.stopped(member_id))
            self._member_changed(member_id)

    def socket_opened(self, member_id: int, info: MemberInfo, now: int) -> bool:
        """A local socket of the member opened; return whether the member came online."""
        if member_id not in self.members:
            self.members[member_id] = info
        came_online = not self.is_online(member_id)
        self.local[member_id] = self.local.get(member_id, 0) + 1
        self.last_seen[member_id] = now
        if came_online:
            self._member_changed(member_id)
        return came_online

    def socket_closed(self, member_id: int, now: int) -> bool:
        """A local socket closed; return whether it was the member's last one here."""
        count = self.local.get(member_id, 0) - 1
        if count > 0:
            self.local[member_id] = count
            return False
        self.local.pop(member_id, None)
        if member_id in self.members:
            self.last_seen[member_id] = now
        if not self.is_online(member_id):
            self._member_changed(member_id)
        return True

    # -- peers (other processes' hubs of the room) --------------------------------------------

    def peer_presence(self, hub: str, member_id: int, online: bool,
                      expiry: float) -> None:
        """Peer ``hub`` says the member's sockets there opened or all closed."""
        members, _ = self.remote.get(hub, (set(), expiry))
        before = self.is_online(member_id)
        if online:
            members.add(member_id)
        else:
            members.discard(member_id)
        self.remote[hub] = (members, expiry)
        if self.is_online(member_id) != before:
            self._member_changed(member_id)

    def peer_online(self, hub: str, online: Iterable[int], expiry: float) -> None:
        """Peer ``hub`` is alive with exactly ``online`` (member ids) online."""
        before, _ = self.remote.get(hub, (set(), expiry))
        now_online = set(online)
        self.remote[hub] = (now_online, expiry)
        for member_id in before ^ now_online:
            self._member_changed(member_id)

    def peer_sync(self, hub: str, online: Iterable[int], positions: Iterable[WirePosition],
                  stopped: Iterable[Iterable[int]], expiry: float) -> None:
        """Take a peer's state (``room.sync``)."""
        self.peer_online(hub, online, expiry)
        for member_id, at in stopped:
            if at > self.stopped_at.get(member_id, 0):
                self.apply_stop(member_id, at)
        for position in positions:
            self.apply_fix(position)

    def expire_peers(self, mono: float) -> None:
        """Forget peers whose last word is older than their expiry."""
        for hub, (online, expiry) in list(self.remote.items()):
            if expiry < mono:
                del self.remote[hub]
                for member_id in online:
                    self._member_changed(member_id)

    # -- the tick ---------------------------------------------------------------------------

    def flush(self) -> list[Frame]:
        """Return the frames of what changed since the last flush, and forget it.

        Order: ``stopped``/``removed`` events, then member changes (one ``presence``
        each, or one ``members`` frame above :data:`PRESENCE_FRAMES_MAX`), then one
        ``positions`` frame with the newest position of every member that moved.
        """
        frames = self._events
        self._events = []
        changed = [m for m in self._changed if m in self.members]
        self._changed = {}
        if len(changed) > PRESENCE_FRAMES_MAX:
            frames.append(events.members([self.wire_member(m) for m in changed]))
        else:
            for member_id in changed:
                frames.append(
                    events.presence(self.wire_member(member_id), self.is_online(member_id))
                )
        if self._positions:
            frames.append(events.positions(
                [self._frame_position(p) for p in self._positions.values()]))
            self._positions = {}
        return frames

    def _frame_position(self, position: WirePosition) -> WirePosition:
        """Return ``position`` as a ``positions`` frame carries it: with ``device``
        only when it differs from what the room's last frame said of the member (``""``
        when it now has none: a browser tab), else without it.

        A member's phone sends most positions, and its name took about a sixth of every
        frame (make bench S1). A client keeps the name it was last given; a snapshot,
        after which a client starts afresh, always names it, and after a ``stopped``
        the next frame does again (docs/protocol.md, "positions").
        """
        member_id = position["member"]
        device = position.get("device", "")
        if self._sent_devices.get(member_id) == device:
            if "device" not in position:
                return position
            return cast(WirePosition, {key: value for key, value in position.items()
                                       if key != "device"})
        self._sent_devices[member_id] = device
        if "device" not in position:
            return {**position, "device": ""}
        return position

    def _member_changed(self, member_id: int) -> None:
        if member_id in self.members:
            self._changed[member_id] = True


def tick_for(frames: Sequence[Frame], reach: policy.HistoryReach,
             member_id: int) -> list[int]:
    """Return the indexes of the tick's ``frames`` that a member's socket gets.

    Every frame but ``place_event``; of those, all with ``reach`` ``"everyone"``, the
    member's own (``member_id``'s) with ``"own"``, none with ``"none"``
    (:meth:`RoomState.event_reach`). The frames keep their order.
    """
    return [index for index, frame in enumerate(frames)
            if frame["type"] != "place_event" or reach == "everyone"
            or (reach == "own" and frame["member"] == member_id)]
