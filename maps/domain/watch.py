"""What a watch-me link's socket is told, pure: no asyncio, no I/O.

A watcher is a stranger with a URL. They get a constant id, the member's position and
its accuracy, when the server received it, and whether and until when the member
shares; nothing of the room, the member's name, id, device, battery, speed, altitude,
heading, presence or last-seen time (docs/protocol.md, "Watch-me links"). A watch frame
is sent only when something of that changed, so that its timing does not tell either
(a member coming online changes nothing a watcher sees).
"""

from collections.abc import Iterable

from maps.domain.room_state import RoomState
from maps.protocol import events
from maps.protocol.events import ServerFrame, WatchFrame, WatchMember, WatchSnapshot


class WatchView:
    """What the watch links of one member have been told, and what to tell them next.

    One per watched member in a hub, shared by all that member's watching sockets: they
    get the same frames each tick (encoded once).
    """

    def __init__(self, member_id: int) -> None:
        self.member_id = member_id
        # The share the sockets were last told of (None: nothing yet); whether the
        # next flush must tell it again (a snapshot handed out differed from it).
        self.sent: WatchMember | None = None
        self.force = False

    def member(self, state: RoomState) -> WatchMember:
        """Return the :class:`~maps.protocol.events.WatchMember` of the state now."""
        sharing = self.member_id in state.shares
        return {"id": events.WATCH_ID, "sharing": sharing,
                "sharing_until": state.shares.get(self.member_id) if sharing else None}

    def snapshot(self, state: RoomState, now: int) -> WatchSnapshot:
        """Return the snapshot a watching socket starts (or restarts) with at ``now``
        (epoch ms).

        A snapshot taken between two flushes may know of a change the other sockets
        are told of only at the next flush; that flush then tells everyone the share
        again, so that no socket keeps an older one.
        """
        member = self.member(state)
        if self.sent is None:
            self.sent = member
        elif member != self.sent:
            self.force = True
        latest = state.latest.get(self.member_id)
        return events.watch_snapshot(
            now=now, stale_after_ms=state.room["stale_after_ms"],
            trail_ms=state.room["trail_ms"], member=member,
            position=events.watch_position(latest) if latest is not None else None)

    def frames(self, state: RoomState, tick: Iterable[ServerFrame]) -> list[WatchFrame]:
        """Return what the watching sockets get of a tick's room ``frames``.

        Order: ``stopped`` (the marker goes), then ``share`` when the share changed,
        then ``positions``.
        """
        out: list[WatchFrame] = []
        moved: list[events.WatchPosition] = []
        for frame in tick:
            # Compared on frame["type"] itself, which tells the frame's shape to mypy.
            if frame["type"] == "stopped":
                if frame["member"] == self.member_id:
                    out.append(events.stopped(events.WATCH_ID))
                    moved = []
            elif frame["type"] == "positions":
                moved.extend(events.watch_position(p) for p in frame["positions"]
                             if p["member"] == self.member_id)
        member = self.member(state)
        if self.force or member != self.sent:
            out.append(events.watch_share(member))
            self.sent = member
            self.force = False
        if moved:
            out.append(events.watch_positions(moved[-1:]))
        return out
