"""Every message geoshare passes: channel-layer room events and WebSocket wire frames.

One place names them all, as TypedDicts, each with one builder (Zulip's
``zerver/lib/event_schema.py`` is the model). ``docs/protocol.md`` documents the wire
frames; ``tests/test_events.py`` checks that every frame the server sends, and every JSON
example in that document, matches the shapes here (:func:`check_frame`).

Room events travel on the channel layer to the room's group, named by
:func:`room_group`, never by user input. Only :mod:`maps.services` sends the events that
change a room (``room.fix`` to ``room.visibility``); the hubs' own bookkeeping between
processes (``room.presence`` to ``room.sync``) is sent by :mod:`maps.realtime.hub`.

Units everywhere: degrees (WGS84), metres, m/s, degrees clockwise from true north,
percent, UTC epoch milliseconds. Frames are encoded with orjson, which writes strict
JSON (positions are validated finite before they get here, :mod:`maps.domain.fixes`).
"""

import types
import typing
from typing import Any, Literal, NotRequired, Protocol, TypedDict, cast

import orjson

# WebSocket close codes (docs/protocol.md, "Connecting").
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NO_ROOM = 4404
CLOSE_FLOOD = 4429


#: The channel-layer group every process's key cache listens to for ``keys.forget``
#: (maps.access.keycache.listen; sent only by maps.services.publish).
KEYS_GROUP = "geoshare.keys"


def room_group(room_pk: int) -> str:
    """Return the channel-layer group of the room with primary key ``room_pk``.

    Channels allows ``[A-Za-z0-9._-]`` under 100 characters; the pk is an integer.
    """
    return f"room.{int(room_pk)}"


# -- shapes shared by frames ---------------------------------------------------------


class WirePosition(TypedDict):
    """One position as clients see it; unknown optional fields are absent."""

    member: int
    lat: float
    lon: float
    accuracy: NotRequired[float]
    altitude: NotRequired[float]
    speed: NotRequired[float]
    heading: NotRequired[float]
    battery: NotRequired[float]
    charging: NotRequired[bool]
    device: NotRequired[str]
    ts: int
    seen: int


class MemberInfo(TypedDict):
    """The fixed part of a member."""

    id: int
    name: str
    color: str
    role: Literal["owner", "member", "viewer"]


class WireMember(MemberInfo):
    """A member with their live state, as ``snapshot``, ``presence``, ``members`` show it."""

    online: bool
    sharing: bool
    sharing_until: int | None
    last_seen: int | None
    # The running share's source (docs/protocol.md, "One source per share"):
    # "device:<pk>", "browser:<id>", "device:*" (the member's next phone app) or ""
    # (none recorded, or not sharing); and its name (a device's, a browser's label).
    source: str
    source_name: str


class RoomInfo(TypedDict):
    """The room part of a ``snapshot``."""

    id: str
    name: str
    tick_ms: int
    stale_after_ms: int
    trail_ms: int


class WirePlace(TypedDict):
    """A place: a circle members arrive at and leave (radius in metres)."""

    id: int
    name: str
    lat: float
    lon: float
    radius: float
    created_by: int | None


class PositionSource(Protocol):
    """What :func:`wire_position` reads: a :class:`maps.domain.fixes.Fix` or a stored
    :class:`maps.models.Reading` (read-only attributes, ``None`` unknown)."""

    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def accuracy(self) -> float | None: ...
    @property
    def altitude(self) -> float | None: ...
    @property
    def speed(self) -> float | None: ...
    @property
    def heading(self) -> float | None: ...
    @property
    def battery(self) -> float | None: ...
    @property
    def charging(self) -> bool | None: ...
    @property
    def device(self) -> str | None: ...


class HasMemberFields(Protocol):
    """What :func:`member_info` reads of a :class:`maps.models.Member`."""

    @property
    def pk(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def color(self) -> str: ...
    @property
    def role(self) -> str: ...


_OPTIONAL_POSITION_FIELDS = ("accuracy", "altitude", "speed", "heading", "battery",
                             "charging", "device")


def wire_position(member_id: int, source: PositionSource, ts: int,
                  seen: int) -> WirePosition:
    """Return the :class:`WirePosition` of ``member_id``.

    ``source`` is anything with ``lat``, ``lon`` and the optional fields as attributes
    (a :class:`maps.domain.fixes.Fix` or a stored :class:`maps.models.Position`); ``ts`` is the
    device time and ``seen`` the server's receive time, both epoch ms.
    """
    data: dict[str, Any] = {"member": member_id, "lat": source.lat, "lon": source.lon}
    for field in _OPTIONAL_POSITION_FIELDS:
        value = getattr(source, field)
        if value is not None:
            data[field] = value
    data["ts"] = ts
    data["seen"] = seen
    # Built key by key (the optional fields by name, in the wire's order).
    return cast(WirePosition, data)


def member_info(member: HasMemberFields) -> MemberInfo:
    """Return the :class:`MemberInfo` of a :class:`maps.models.Member`."""
    # ``role`` is a Role value, one of MemberInfo's literals.
    return cast(MemberInfo, {"id": member.pk, "name": member.name, "color": member.color,
                             "role": member.role})


# -- wire frames, server to client -----------------------------------------------------


class Snapshot(TypedDict):
    type: Literal["snapshot"]
    you: int | None
    now: int
    room: RoomInfo
    members: list[WireMember]
    positions: list[WirePosition]


class Positions(TypedDict):
    type: Literal["positions"]
    positions: list[WirePosition]


class Presence(TypedDict):
    type: Literal["presence"]
    member: WireMember
    online: bool


class Members(TypedDict):
    type: Literal["members"]
    members: list[WireMember]


class Stopped(TypedDict):
    type: Literal["stopped"]
    member: int


class Removed(TypedDict):
    type: Literal["removed"]
    member: int


ErrorCode = Literal["bad_json", "unknown_type", "invalid", "forbidden", "too_large",
                    "rate_limited", "unavailable", "not_sharing",
                    "not_the_source"]


class Error(TypedDict):
    type: Literal["error"]
    code: ErrorCode
    detail: str
    field: NotRequired[str]
    retry_after_ms: NotRequired[int]


class Pong(TypedDict):
    type: Literal["pong"]
    now: int


class Places(TypedDict):
    type: Literal["places"]
    places: list[WirePlace]


class PlaceEvent(TypedDict):
    type: Literal["place_event"]
    member: int
    place: int
    kind: Literal["enter", "leave"]
    ts: int


#: Any frame the server sends.
ServerFrame = (Snapshot | Positions | Presence | Members | Stopped | Removed | Error
               | Pong | Places | PlaceEvent)

SERVER_FRAMES = {
    "snapshot": Snapshot,
    "positions": Positions,
    "presence": Presence,
    "members": Members,
    "stopped": Stopped,
    "removed": Removed,
    "error": Error,
    "pong": Pong,
    "places": Places,
    "place_event": PlaceEvent,
}


# -- watch-me links' frames (docs/protocol.md, "Watch-me links") ----------------------

#: The id a watch-me link's frames give its member: the same for every link, so that
#: nothing in them tells one member from another.
WATCH_ID = 1


class WatchMember(TypedDict):
    """The watched member as a watch-me link sees them: a constant id and the share."""

    id: int
    sharing: bool
    sharing_until: int | None


class WatchPosition(TypedDict):
    """A position as a watch-me link sees it: where, how accurate (metres), when the
    server received it (epoch ms); nothing of the device."""

    member: int
    lat: float
    lon: float
    accuracy: NotRequired[float]
    seen: int


class WatchSnapshot(TypedDict):
    type: Literal["snapshot"]
    now: int
    stale_after_ms: int
    trail_ms: int
    member: WatchMember
    position: WatchPosition | None


class WatchPositions(TypedDict):
    type: Literal["positions"]
    positions: list[WatchPosition]


class WatchShare(TypedDict):
    type: Literal["share"]
    member: WatchMember


#: Any frame a watch-me link's socket gets.
WatchFrame = WatchSnapshot | WatchPositions | WatchShare | Stopped | Error | Pong

WATCH_FRAMES = {
    "snapshot": WatchSnapshot,
    "positions": WatchPositions,
    "share": WatchShare,
    "stopped": Stopped,
    "error": Error,
    "pong": Pong,
}


def watch_position(position: WirePosition) -> WatchPosition:
    """Return what a watch-me link sees of a room's :class:`WirePosition`."""
    out: dict[str, Any] = {"member": WATCH_ID, "lat": position["lat"],
                           "lon": position["lon"]}
    if "accuracy" in position:
        out["accuracy"] = position["accuracy"]
    out["seen"] = position["seen"]
    return cast(WatchPosition, out)


def watch_snapshot(*, now: int, stale_after_ms: int, trail_ms: int, member: WatchMember,
                   position: WatchPosition | None) -> WatchSnapshot:
    """Return a :class:`WatchSnapshot`: all a watch-me link's socket starts with."""
    return {"type": "snapshot", "now": now, "stale_after_ms": stale_after_ms,
            "trail_ms": trail_ms, "member": member, "position": position}


def watch_positions(items: list[WatchPosition]) -> WatchPositions:
    """Return a :class:`WatchPositions` frame."""
    return {"type": "positions", "positions": items}


def watch_share(member: WatchMember) -> WatchShare:
    """Return a :class:`WatchShare` frame: the share started, changed its end, or ended."""
    return {"type": "share", "member": member}


def snapshot(*, you: int | None, now: int, room: RoomInfo, members: list[WireMember],
             positions: list[WirePosition]) -> Snapshot:
    """Return a :class:`Snapshot`: the whole room state for one member."""
    return {"type": "snapshot", "you": you, "now": now, "room": room,
            "members": members, "positions": positions}


def snapshot_tail(parts: dict[str, Any]) -> str:
    """Return the text :func:`snapshot_text` completes: :func:`encode` of the
    snapshot's shared parts (``room``, ``members``, ``positions``) without its ``{``."""
    return encode(parts)[1:]


def snapshot_text(you: int | None, now: int, tail: str) -> str:
    """Return the JSON text of a :class:`Snapshot` for ``you`` at ``now`` (epoch ms).

    ``tail`` is :func:`snapshot_tail` of the shared parts: encoded once for every
    socket that joins in a tick, only ``you`` and ``now`` are written per socket, and
    the room's text is copied once. The same object as :func:`snapshot` gives.
    """
    head = orjson.dumps({"type": "snapshot", "you": you, "now": now}).decode()
    return head[:-1] + "," + tail


def positions(items: list[WirePosition]) -> Positions:
    """Return a :class:`Positions` frame of :class:`WirePosition` dicts."""
    return {"type": "positions", "positions": items}


def presence(member: WireMember, online: bool) -> Presence:
    """Return a :class:`Presence` frame for a :class:`WireMember`."""
    return {"type": "presence", "member": member, "online": online}


def members(items: list[WireMember]) -> Members:
    """Return a :class:`Members` frame: several members that changed in one tick."""
    return {"type": "members", "members": items}


def stopped(member_id: int) -> Stopped:
    """Return a :class:`Stopped` frame: remove that member's marker."""
    return {"type": "stopped", "member": member_id}


def removed(member_id: int) -> Removed:
    """Return a :class:`Removed` frame: drop that member from the list."""
    return {"type": "removed", "member": member_id}


def error(code: ErrorCode, detail: str, field: str | None = None,
          retry_after_ms: int | None = None) -> Error:
    """Return an :class:`Error` frame; ``field`` names the offending field, if any."""
    frame: Error = {"type": "error", "code": code, "detail": detail}
    if field is not None:
        frame["field"] = field
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return frame


def pong(now: int) -> Pong:
    """Return a :class:`Pong`, the answer to a ``ping``."""
    return {"type": "pong", "now": now}


def places(items: list[WirePlace]) -> Places:
    """Return a :class:`Places` frame: every place of the room (all of them, each time)."""
    return {"type": "places", "places": items}


def place_event(member_id: int, place_id: int, kind: Literal["enter", "leave"],
                ts: int) -> PlaceEvent:
    """Return a :class:`PlaceEvent` frame: ``member_id`` arrived at (``"enter"``) or
    left (``"leave"``) place ``place_id`` at device time ``ts`` (epoch ms)."""
    return {"type": "place_event", "member": member_id, "place": place_id, "kind": kind,
            "ts": ts}


def encode(frame: object) -> str:
    """Return ``frame`` as strict JSON text."""
    return orjson.dumps(frame).decode()


def send_message(text: str) -> dict[str, str]:
    """Return the ASGI ``websocket.send`` message carrying ``text``.

    One message object is shared by every socket a frame goes to: servers only read it.
    """
    return {"type": "websocket.send", "text": text}


# -- channel-layer room events ---------------------------------------------------------


class RoomFix(TypedDict):
    """A member's newest accepted position (sent by ``maps.services.publish.position_announce``)."""

    type: Literal["room.fix"]
    p: WirePosition


class RoomStop(TypedDict):
    """A member's share ended at server time ``at`` (they stopped, or it ran out)."""

    type: Literal["room.stop"]
    member: int
    at: int


class RoomShare(TypedDict):
    """A member's share started or changed; ``until`` is its end (epoch ms) or null;
    ``source`` and ``source_name`` where its positions come from
    (:mod:`maps.domain.sources`)."""

    type: Literal["room.share"]
    member: int
    until: int | None
    source: str
    source_name: str


class RoomUnwatch(TypedDict):
    """Watch link ``link`` was revoked: close the sockets watching through it."""

    type: Literal["room.unwatch"]
    link: int


class RoomMember(TypedDict):
    """A member joined or changed."""

    type: Literal["room.member"]
    member: MemberInfo


class RoomKick(TypedDict):
    """A member was removed: close their sockets, drop them."""

    type: Literal["room.kick"]
    member: int


class RoomRekey(TypedDict):
    """Device ``device`` of ``member`` got a new key or was removed: close the sockets
    opened with its old key (the member's other devices and browser tabs stay)."""

    type: Literal["room.rekey"]
    member: int
    device: int


class RoomDeleted(TypedDict):
    """The room is gone: close every socket."""

    type: Literal["room.deleted"]


class RoomRetention(TypedDict):
    """Positions received before ``before`` (epoch ms) are past the room's retention."""

    type: Literal["room.retention"]
    before: int


class RoomPlaces(TypedDict):
    """The room's places changed: here are all of them."""

    type: Literal["room.places"]
    places: list[WirePlace]


class RoomPlaceEvent(TypedDict):
    """A member arrived at or left a place (stored once, maps.storage.history)."""

    type: Literal["room.place_event"]
    member: int
    place: int
    kind: Literal["enter", "leave"]
    ts: int


#: Whose history (and place events) a room shows: a
#: :class:`~maps.domain.choices.HistoryVisibility` value.
Visibility = Literal["everyone", "members", "own"]


class RoomVisibility(TypedDict):
    """The room's history visibility changed: the hubs filter ``place_event`` frames
    by it from now on (:func:`maps.domain.policy.history_reach`)."""

    type: Literal["room.visibility"]
    visibility: Visibility


class RoomPresence(TypedDict):
    """The member's sockets on hub ``hub`` opened (``online``) or all closed."""

    type: Literal["room.presence"]
    hub: str
    member: int
    online: bool


class RoomBeat(TypedDict):
    """Hub ``hub`` is alive with these members online."""

    type: Literal["room.beat"]
    hub: str
    online: list[int]


class RoomHello(TypedDict):
    """Hub ``hub`` started; the others answer it with ``room.sync``."""

    type: Literal["room.hello"]
    hub: str


class RoomSync(TypedDict):
    """Hub ``hub``'s live state, sent directly to a hub that said hello."""

    type: Literal["room.sync"]
    hub: str
    online: list[int]
    positions: list[WirePosition]
    stopped: list[list[int]]


class KeysForget(TypedDict):
    """Every process forgets the device keys it keeps of member ``member`` of room
    ``room``, or with no ``member`` of the whole room (maps.access.keycache).

    Sent to the group ``geoshare.keys``, not to the room's.
    """

    type: Literal["keys.forget"]
    room: int
    member: NotRequired[int]


ROOM_EVENTS = {
    "room.fix": RoomFix,
    "room.stop": RoomStop,
    "room.share": RoomShare,
    "room.unwatch": RoomUnwatch,
    "room.member": RoomMember,
    "room.kick": RoomKick,
    "room.rekey": RoomRekey,
    "room.deleted": RoomDeleted,
    "room.retention": RoomRetention,
    "room.places": RoomPlaces,
    "room.place_event": RoomPlaceEvent,
    "room.visibility": RoomVisibility,
    "room.presence": RoomPresence,
    "room.beat": RoomBeat,
    "room.hello": RoomHello,
    "room.sync": RoomSync,
}
# Channel-layer messages that are not for a room's hubs.
PROCESS_EVENTS = {"keys.forget": KeysForget}


def room_fix(position: WirePosition) -> RoomFix:
    return {"type": "room.fix", "p": position}


def room_stop(member_id: int, at: int) -> RoomStop:
    return {"type": "room.stop", "member": member_id, "at": at}


def room_share(member_id: int, until: int | None, source: str = "",
               source_name: str = "") -> RoomShare:
    return {"type": "room.share", "member": member_id, "until": until,
            "source": source, "source_name": source_name}


def room_unwatch(link_id: int) -> RoomUnwatch:
    return {"type": "room.unwatch", "link": link_id}


def room_member(info: MemberInfo) -> RoomMember:
    return {"type": "room.member", "member": info}


def room_kick(member_id: int) -> RoomKick:
    return {"type": "room.kick", "member": member_id}


def room_rekey(member_id: int, device_id: int) -> RoomRekey:
    return {"type": "room.rekey", "member": member_id, "device": device_id}


def room_deleted() -> RoomDeleted:
    return {"type": "room.deleted"}


def room_retention(before: int) -> RoomRetention:
    return {"type": "room.retention", "before": before}


def room_places(items: list[WirePlace]) -> RoomPlaces:
    return {"type": "room.places", "places": items}


def room_place_event(member_id: int, place_id: int, kind: Literal["enter", "leave"],
                     ts: int) -> RoomPlaceEvent:
    return {"type": "room.place_event", "member": member_id, "place": place_id,
            "kind": kind, "ts": ts}


def room_visibility(visibility: Visibility) -> RoomVisibility:
    return {"type": "room.visibility", "visibility": visibility}


def room_presence(hub: str, member_id: int, online: bool) -> RoomPresence:
    return {"type": "room.presence", "hub": hub, "member": member_id, "online": online}


def room_beat(hub: str, online: list[int]) -> RoomBeat:
    return {"type": "room.beat", "hub": hub, "online": online}


def room_hello(hub: str) -> RoomHello:
    return {"type": "room.hello", "hub": hub}


def room_sync(hub: str, online: list[int], positions: list[WirePosition],
              stopped: list[list[int]]) -> RoomSync:
    return {"type": "room.sync", "hub": hub, "online": online, "positions": positions,
            "stopped": stopped}


def keys_forget(room_pk: int, member_pk: int | None = None) -> KeysForget:
    if member_pk is None:
        return {"type": "keys.forget", "room": room_pk}
    return {"type": "keys.forget", "room": room_pk, "member": member_pk}


# -- shape checking (tests) -----------------------------------------------------------------


class ShapeError(ValueError):
    """A message does not have its documented shape; the text says where."""


def check_frame(frame: object) -> None:
    """Check a decoded server frame against its TypedDict; raise :class:`ShapeError`."""
    kind = frame.get("type") if type(frame) is dict else None
    # A type that is not a string (a list: unhashable) is unknown too, not a TypeError.
    if type(kind) is not str or kind not in SERVER_FRAMES:
        raise ShapeError(f"unknown frame type {kind!r}")
    _check(SERVER_FRAMES[kind], frame, kind)


def check_watch_frame(frame: object) -> None:
    """Check a decoded frame of a watch-me link's socket; raise :class:`ShapeError`."""
    kind = frame.get("type") if type(frame) is dict else None
    if type(kind) is not str or kind not in WATCH_FRAMES:
        raise ShapeError(f"unknown watch frame type {kind!r}")
    _check(WATCH_FRAMES[kind], frame, kind)


def check_room_event(message: object) -> None:
    """Check a channel-layer room event against its TypedDict; raise :class:`ShapeError`."""
    kind = message.get("type") if type(message) is dict else None
    expected = (ROOM_EVENTS.get(kind) or PROCESS_EVENTS.get(kind)
                if type(kind) is str else None)
    if kind is None or expected is None:
        raise ShapeError(f"unknown room event {kind!r}")
    _check(expected, message, kind)


def _check(expected: Any, value: Any, where: str) -> None:
    if typing.is_typeddict(expected):
        if type(value) is not dict:
            raise ShapeError(f"{where}: expected an object, got {value!r}")
        hints = typing.get_type_hints(expected)
        unknown = set(value) - set(hints)
        if unknown:
            raise ShapeError(f"{where}: unexpected keys {sorted(unknown)}")
        missing = expected.__required_keys__ - set(value)
        if missing:
            raise ShapeError(f"{where}: missing keys {sorted(missing)}")
        for key, hint in hints.items():
            if key in value:
                _check(hint, value[key], f"{where}.{key}")
        return
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin is Literal:
        if value not in args:
            raise ShapeError(f"{where}: {value!r} is not one of {args}")
    elif origin is list:
        if type(value) is not list:
            raise ShapeError(f"{where}: expected a list, got {value!r}")
        for index, item in enumerate(value):
            _check(args[0], item, f"{where}[{index}]")
    elif origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                _check(option, value, where)
                return
            except ShapeError:
                continue
        raise ShapeError(f"{where}: {value!r} is none of {args}")
    elif expected is type(None):
        if value is not None:
            raise ShapeError(f"{where}: expected null, got {value!r}")
    elif expected is float:
        # JSON has one number type: 8 and 8.0 are the same number.
        if type(value) not in (int, float):
            raise ShapeError(f"{where}: expected a number, got {value!r}")
    elif expected in (int, str, bool):
        if type(value) is not expected:
            raise ShapeError(f"{where}: expected {expected.__name__}, got {value!r}")
    else:  # pragma: no cover - a shape this checker does not know
        raise ShapeError(f"{where}: cannot check {expected!r}")
