"""Reads that several callers share. All synchronous: call through
``database_sync_to_async`` from async code."""

import base64
import binascii
import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast, overload

from django.contrib.sessions.backends.base import SessionBase
from django.db import connections
from django.db.models import BigIntegerField, F, Func, Q, QuerySet
from django.utils import timezone

from maps.domain.room_state import StoredRoom
from maps.domain.tracks import Track
from maps.models import (
    Device,
    Invite,
    LivePosition,
    Member,
    Place,
    Position,
    Role,
    Room,
    Share,
    hash_key,
)
from maps.protocol import events
from maps.protocol.events import MemberInfo, Visibility, WirePosition


@overload
def to_ms(value: datetime) -> int: ...
@overload
def to_ms(value: None) -> None: ...
@overload
def to_ms(value: datetime | None) -> int | None: ...
def to_ms(value: datetime | None) -> int | None:
    """Return an aware datetime as UTC epoch milliseconds (``None`` stays ``None``)."""
    return None if value is None else int(value.timestamp() * 1000)


def from_ms(value: float) -> datetime:
    """Return UTC epoch milliseconds as an aware ``datetime``."""
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def position_wire(position: Position | LivePosition) -> WirePosition:
    """Return a stored :class:`Position` as a :class:`~maps.protocol.events.WirePosition`."""
    return events.wire_position(position.member_id, position,
                                to_ms(position.device_time), to_ms(position.received))


def live_positions(members: QuerySet[Member],
                   now: datetime | None = None) -> list[LivePosition]:
    """Return the live position of each sharing member among ``members``, as stored.

    A member's live position is their :class:`LivePosition`, shown while their share is
    on (:meth:`Member.share_state`) and within their room's retention (a room that keeps
    history for N days shows nothing older). ``members`` is a Member queryset of one
    room; the result a list of LivePositions, by member id.
    """
    now = now or timezone.now()
    sharing = [m.pk for m in members.only("pk", "share", "sharing_until")
               if m.share_state(now) == Share.ON]
    live = LivePosition.objects.filter(member_id__in=sharing).order_by("member_id")
    room = Room.objects.filter(members__in=members[:1]).only("retention_days").first()
    if room is not None and room.retention_days:
        live = live.filter(received__gte=now - room.retention())
    return list(live)


def members_last_seen(room: Room) -> dict[int, datetime]:
    """Return member id -> when the server last received a position of theirs.

    One answer for every page: the newest of the member's ``last_seen`` (written in
    batches by the history writer), their live position's receive time (written at
    once) and their devices' ``last_seen``; a member with none is absent. Aware UTC
    datetimes.
    """
    seen: dict[int, datetime] = {}

    def newer(member_id: int, when: datetime | None) -> None:
        if when is not None and (member_id not in seen or when > seen[member_id]):
            seen[member_id] = when

    for pk, when in Member.objects.filter(room=room).values_list("pk", "last_seen"):
        newer(pk, when)
    for pk, when in LivePosition.objects.filter(member__room=room).values_list(
            "member_id", "received"):
        newer(pk, when)
    for pk, when in Device.objects.filter(member__room=room).values_list(
            "member_id", "last_seen"):
        newer(pk, when)
    return seen


def room_live_state(room_pk: int) -> StoredRoom:
    """Return what a room hub starts from: its members, shares and live positions.

    Shape: ``{"members": [{"id", "info", "last_seen", "stopped_at", "share",
    "sharing_until", "share_source", "share_source_name"}], "positions": [wire position, ...], "places": [WirePlace],
    "visibility": the room's history visibility}``; times in epoch ms,
    ``share`` as :meth:`Member.share_state` says now.
    """
    return rooms_live_state([room_pk])[0]


# Rooms whose starting state is read in one set of queries at most.
ROOMS_PER_QUERY = 200


def rooms_live_state(room_pks: Sequence[int]) -> list[StoredRoom]:
    """Return :func:`room_live_state` of each room of ``room_pks``, in that order.

    Three queries per :data:`ROOMS_PER_QUERY` rooms (members, live positions, places)
    plus one for the rooms' retention and history visibility, instead of five per room: when hundreds of
    hubs start at once (a restart's reconnect storm) their loads go together
    (:class:`maps.storage.dbthread.Batcher`). A room that does not exist (any more) gets the
    state of an empty room.
    """
    states: dict[int, StoredRoom] = {}
    now = timezone.now()
    wanted = list(dict.fromkeys(room_pks))
    for start in range(0, len(wanted), ROOMS_PER_QUERY):
        states.update(_rooms_live_state(wanted[start:start + ROOMS_PER_QUERY], now))
    return [states[pk] for pk in room_pks]


def _rooms_live_state(room_pks: Sequence[int], now: datetime) -> dict[int, StoredRoom]:
    states: dict[int, StoredRoom] = {
        pk: {"members": [], "positions": [], "places": []} for pk in room_pks}
    sharing: dict[int, int] = {}
    for member in Member.objects.filter(room_id__in=room_pks).order_by("pk"):
        share = member.share_state(now)
        states[member.room_id]["members"].append(
            {
                "id": member.pk,
                "info": events.member_info(member),
                "last_seen": to_ms(member.last_seen),
                "stopped_at": to_ms(member.stopped_at),
                "share": share,
                "sharing_until": to_ms(member.sharing_until),
                "share_source": member.share_source,
                "share_source_name": member.share_source_name,
            }
        )
        if share == Share.ON:
            sharing[member.pk] = member.room_id
    # As live_positions: nothing older than the room's retention, when it has one.
    floors = {}
    for room in Room.objects.filter(pk__in=room_pks).only("retention_days",
                                                          "history_visibility"):
        states[room.pk]["visibility"] = cast(Visibility, room.history_visibility)
        if room.retention_days:
            floors[room.pk] = now - room.retention()
    live = (LivePosition.objects.filter(member__room_id__in=room_pks)
            .order_by("member_id"))
    for position in live:
        room_pk = sharing.get(position.member_id)
        if room_pk is None:  # not sharing now
            continue
        floor = floors.get(room_pk)
        if floor is None or position.received >= floor:
            states[room_pk]["positions"].append(position_wire(position))
    for place in Place.objects.filter(room_id__in=room_pks).order_by("room_id", "pk"):
        states[place.room_id]["places"].append(place.to_dict())
    return states


def room_friends(
    room_pk: int, now: datetime | None = None,
) -> tuple[list[tuple[int, str, LivePosition]], datetime | None]:
    """Return ``([(member id, name, LivePosition)], until)``: what OwnTracks shows of
    room ``room_pk``'s sharing members, and when that changes by the clock alone.

    Every member of the room whose share is on and who has a live position within the
    room's retention (:func:`live_positions`), ordered by member id; the caller leaves
    out whoever asks (maps.ingest.friends). ``until`` is the earliest aware UTC datetime at
    which one of them drops out with no event (a timed share ends, a position passes
    the room's retention), or ``None`` when none will.
    """
    now = now or timezone.now()
    positions = live_positions(Member.objects.filter(room_id=room_pk), now)
    members = {pk: (name, until) for pk, name, until in Member.objects.filter(
        pk__in=[p.member_id for p in positions]).values_list("pk", "name", "sharing_until")}
    retention_days = Room.objects.filter(pk=room_pk).values_list(
        "retention_days", flat=True).first()
    ends = [members[p.member_id][1] for p in positions if p.member_id in members]
    if retention_days:
        ends += [p.received + timedelta(days=retention_days) for p in positions]
    known = [end for end in ends if end is not None]
    friends = [(p.member_id, members[p.member_id][0], p)
               for p in sorted(positions, key=lambda p: p.member_id) if p.member_id in members]
    return friends, min(known, default=None)


def member_info(room_pk: int, member_id: int) -> MemberInfo | None:
    """Return one member's info dict, or ``None`` when not (or no longer) in the room."""
    member = Member.objects.filter(room_id=room_pk, pk=member_id).first()
    return None if member is None else events.member_info(member)


def member_for_key(key: str | None = None, *, key_hash: str | None = None) -> Member | None:
    """Return the member whose device key is ``key`` (with its room), or ``None``.

    One indexed query on the devices. The member's ``device`` attribute is the
    :class:`~maps.models.Device` the key belongs to. ``key_hash`` looks the device
    up by the stored hash instead (a Hauk session, which carries the hash).
    """
    if key_hash is None:
        key_hash = hash_key(key)
    return members_for_keys([key_hash]).get(key_hash)


# Key hashes looked up in one query at most (SQLite allows 32,766 parameters; a
# PostgreSQL plan for a few hundred is still an index scan per hash).
KEYS_PER_QUERY = 500


def members_for_keys(key_hashes: Iterable[str]) -> dict[str, Member]:
    """Return ``{key hash: member}`` for the device key hashes (hex text) that exist.

    The batched form of :func:`member_for_key` (same members, each with its room and
    ``device`` loaded): one indexed query per :data:`KEYS_PER_QUERY` distinct hashes.
    Hashes of no device are absent from the result.
    """
    if _KEY_QUERY.get("sql") is None:
        _key_query_build()
    connection = connections["default"]
    wanted = list(dict.fromkeys(key_hashes))
    found = {}
    for start in range(0, len(wanted), KEYS_PER_QUERY):
        chunk = wanted[start:start + KEYS_PER_QUERY]
        marks = ", ".join(["%s"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(_KEY_QUERY["sql"] + f" WHERE d.key_hash IN ({marks})", chunk)
            rows = cursor.fetchall()
        for row in rows:
            member = _key_row_member(connection, row)
            found[member.device.key_hash] = member
    return found


def _key_row_member(connection, row):
    row = list(row)
    for i, converters, expression in _KEY_QUERY["converters"]:
        for converter in converters:
            row[i] = converter(row[i], expression, connection)
    models = []
    start = 0
    for model, names in _KEY_QUERY["models"]:
        models.append(model.from_db("default", names, row[start:start + len(names)]))
        start += len(names)
    device, member, room = models
    member.room = room
    device.member = member
    member.device = device
    return member


# The device-key lookup as one plain query over the three tables (maps.access.keycache loads
# keys with it): the ORM's select_related built the same query in far more time than
# the database took to answer it (make bench, phone ingest). Its columns come from the
# models' own field lists, so it follows the models.
_KEY_QUERY = {}


def _key_query_build():
    connection = connections["default"]
    ops = connection.ops
    parts = [(Device, "d"), (Member, "m"), (Room, "r")]
    columns, models, converters = [], [], []
    for model, alias in parts:
        names = [f.attname for f in model._meta.concrete_fields]
        for field in model._meta.concrete_fields:
            columns.append(f"{alias}.{ops.quote_name(field.column)}")
            # The backend's and the field's converters, as the ORM applies them
            # (SQLite's text timestamps to aware datetimes, 0/1 to booleans, ...).
            expression = field.get_col(alias)
            found = ops.get_db_converters(expression) + field.get_db_converters(
                connection)
            if found:
                converters.append((len(columns) - 1, found, expression))
        models.append((model, names))
    _KEY_QUERY["converters"] = converters
    table = {model: ops.quote_name(model._meta.db_table) for model, _ in parts}
    _KEY_QUERY["models"] = models
    _KEY_QUERY["sql"] = (
        f"SELECT {', '.join(columns)} FROM {table[Device]} d "
        f"JOIN {table[Member]} m ON m.id = d.member_id "
        f"JOIN {table[Room]} r ON r.id = m.room_id"
    )


def member_devices(member: Member) -> list[Device]:
    """Return the member's devices, oldest first."""
    return list(Device.objects.filter(member=member).order_by("created", "pk"))


def session_member(session: SessionBase, room: Room) -> Member | None:
    """Return the member the browser ``session`` holds for ``room``, or ``None``."""
    member_id = session.get("members", {}).get(room.public_id)
    if member_id is None:
        return None
    return Member.objects.select_related("room").filter(pk=member_id, room=room).first()


def usable_invite(token: str) -> Invite | None:
    """Return the invite with this token if it admits people now, else ``None``."""
    invite = Invite.objects.select_related("room").filter(token=token).first()
    if invite is None or not invite.is_usable():
        return None
    return invite


def rooms_for_session(session: SessionBase) -> list[tuple[Room, Member]]:
    """Return ``(room, member)`` pairs of the rooms this browser session is in."""
    ids = list(session.get("members", {}).values())
    members = Member.objects.select_related("room").filter(pk__in=ids).order_by("-created")
    return [(m.room, m) for m in members]


def room_by_public_id(public_id: str) -> Room | None:
    """Return the room with this public id, or ``None``."""
    return Room.objects.filter(public_id=public_id).first()


def usable_invites(room: Room | int, *, now: datetime | None = None) -> QuerySet[Invite]:
    """Return the invites of ``room`` (a Room or its pk) that admit people now.

    The database form of :meth:`maps.models.Invite.is_usable`: not revoked, not
    expired, not used up. A queryset, oldest first.
    """
    now = now or timezone.now()
    return (
        Invite.objects.filter(room=room, revoked=False)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
        .order_by("pk")
    )


def map_invite(room: Room | int) -> Invite | None:
    """Return the invite link the room's map offers its members, or ``None``.

    The oldest usable member invite: usually the one made with the room. Viewers are
    never shown it (it would let them join again as members).
    """
    return usable_invites(room).filter(role=Role.MEMBER).first()


# -- history ---------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ONE_US = timedelta(microseconds=1)
# Rows read from the database at a time when a whole range is read.
HISTORY_CHUNK = 10_000

def exact_ms(value: datetime) -> int:
    """Return an aware datetime as whole UTC epoch milliseconds (floor), exactly."""
    return (value - _EPOCH) // _ONE_MS


def _history(member_ids, *, since, until, floor):
    """The positions of ``member_ids`` in ``[since, until)`` of device time, after
    ``floor`` in both device and receive time (the retention)."""
    since = max(since, floor)
    return Position.objects.filter(
        member_id__in=member_ids, device_time__gte=since, device_time__lt=until,
        received__gte=floor,
    )


class EpochUs(Func):
    """An aware datetime column as whole UTC epoch microseconds, computed by the database.

    Reading 86,400 ``timestamptz`` values as Python datetimes took half of a day's
    history request (make bench, history); integers come back for a fraction of it.
    """

    output_field = BigIntegerField()
    arity = 1

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(EXTRACT(EPOCH FROM {sql}) * 1000000)::bigint", params

    def as_sqlite(self, compiler, connection, **extra):
        # Stored as UTC text with microseconds: the date's days and the time's parts.
        sql, params = compiler.compile(self.source_expressions[0])
        return (f"(CAST(strftime('%%s', substr({sql}, 1, 19)) AS INTEGER) * 1000000"
                f" + CAST(substr(substr({sql}, 21) || '000000', 1, 6) AS INTEGER))",
                params * 2)


_TRACK_FIELDS = ("lat", "lon", "altitude", "speed", "heading", "accuracy", "battery",
                 "charging")


def history_tracks(members: Iterable[Member], *, since: datetime, until: datetime,
                   floor: datetime, full: bool = True) -> list[Track]:
    """Return a :class:`maps.domain.tracks.Track` per member of ``members`` (models), in order.

    Positions with ``since <= device_time < until`` (aware datetimes) that are newer
    than ``floor`` (:attr:`maps.access.scope.HistoryScope.floor`) by device and receive time,
    oldest first (device time, then id). ``full``: with altitude, speed, heading,
    accuracy, battery and charging; else positions and times only (for drawing). Read
    as :func:`history_chunks` reads them, joined: the whole range is in memory (the
    history view; the exports stream the chunks instead).
    """
    tracks = []
    for member in members:
        track = Track(events.member_info(member))
        for chunk in history_chunks(member, since=since, until=until, floor=floor,
                                    full=full):
            for name in _TRACK_FIELDS + ("ts",):
                getattr(track, name).extend(getattr(chunk, name))
        tracks.append(track)
    return tracks


def history_chunks(member: Member, *, since: datetime, until: datetime, floor: datetime,
                   full: bool = True, chunk: int | None = None) -> Iterator[Track]:
    """Yield one member's positions as :class:`~maps.domain.tracks.Track` chunks.

    The positions of :func:`history_tracks` (same range, floor, order and ``full``),
    at most ``chunk`` (default :data:`HISTORY_CHUNK`) per chunk, each read when the
    previous one has been taken: a keyset query per chunk on the (member,
    device_time, id) index, times as integers (:class:`EpochUs`), so memory holds one
    chunk's rows, never model instances nor the whole range. Empty ranges yield
    nothing.
    """
    size = chunk or HISTORY_CHUNK
    fields = _TRACK_FIELDS if full else _TRACK_FIELDS[:2]
    info = events.member_info(member)
    rows = _history([member.pk], since=since, until=until, floor=floor).annotate(
        us=EpochUs("device_time"))
    after = None
    while True:
        query = rows
        if after is not None:
            query = query.filter(device_time__gte=after[0]).filter(
                Q(device_time__gt=after[0]) | Q(id__gt=after[1]))
        # The annotation last: raw rows come in the SQL's order, which puts
        # annotations after the model's columns.
        batch = _fetch(query.order_by("device_time", "id")
                       .values_list("id", *fields, "us")[:size])
        if not batch:
            return
        track = Track(info)
        columns = list(zip(*batch))
        track.ts.extend(us // 1000 for us in columns[-1])
        for name, values in zip(fields, columns[1:-1]):
            if name == "charging":
                # Raw rows: SQLite gives its booleans as 0 and 1.
                values = tuple(None if v is None else bool(v) for v in values)
            getattr(track, name).extend(values)
        if not full:
            for name in _TRACK_FIELDS[2:]:
                getattr(track, name).extend([None] * len(batch))
        after = (_EPOCH + batch[-1][-1] * _ONE_US, batch[-1][0])
        last = len(batch) < size
        # Let the rows go before the chunk is handed on, and the chunk before the
        # next rows are read: one chunk in memory at a time.
        del batch, columns
        yield track
        del track
        if last:
            return


def history_count(member_ids: Iterable[int], *, since: datetime, until: datetime,
                  floor: datetime) -> int:
    """Return how many positions :func:`history_tracks` would give for ``member_ids``.

    One ``COUNT`` on the (member, device_time, id) index: what an export checks
    against its cap before it starts.
    """
    return _history(list(member_ids), since=since, until=until, floor=floor).count()


def _fetch(queryset):
    """Return the rows of a ``values_list`` queryset as tuples, in one ``fetchall``.

    The same SQL the ORM would run; iterating the queryset instead fetches 100 rows
    at a time and passes each through the ORM, a third of a day's history request
    (make bench, history). For querysets whose columns need no converters; the
    columns come in the SQL's order (annotations after the model's fields).
    """
    sql, params = queryset.query.get_compiler(queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def encode_cursor(device_time: datetime, pk: int) -> str:
    """Return the opaque cursor after the position ``(device_time, pk)``."""
    raw = f"{(device_time - _EPOCH) // _ONE_US}.{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[datetime, int]:
    """Return ``(device_time, pk)`` of a cursor, or raise ``ValueError``."""
    if not isinstance(cursor, str) or len(cursor) > 64:
        raise ValueError("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, pk = raw.split(".")
        if not (micros.lstrip("-").isdigit() and pk.isdigit()):
            raise ValueError("not a cursor")
        return _EPOCH + int(micros) * _ONE_US, int(pk)
    except (binascii.Error, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError("not a cursor") from exc


_PAGE_FIELDS = ("id", "member_id", "us", "seen_us", "lat", "lon", "accuracy",
                "altitude", "speed", "heading", "battery", "charging", "device")


def history_page(
    member_ids: Iterable[int], *, since: datetime, until: datetime, floor: datetime,
    after: tuple[datetime, int] | None = None, limit: int = 1000,
) -> tuple[list[WirePosition], str | None]:
    """Return ``(positions, next cursor or None)``: one page of the track API.

    ``positions`` are :class:`~maps.protocol.events.WirePosition` dicts ordered by device time,
    then id, over every member of ``member_ids``; ``after`` is a decoded cursor
    ``(device_time, id)``: the page starts after it (keyset pagination, never OFFSET).
    Each member's rows come from the (member, device_time, id) index, at most
    ``limit + 1`` of them, and are merged here: a page costs the same at the start
    and at the end of a long history.
    """
    streams = []
    for member_id in member_ids:
        rows = _history([member_id], since=since, until=until, floor=floor)
        if after is not None:
            rows = rows.filter(device_time__gte=after[0]).filter(
                Q(device_time__gt=after[0]) | Q(id__gt=after[1]))
        rows = rows.annotate(us=EpochUs("device_time"), seen_us=EpochUs("received"))
        streams.append(list(rows.order_by("device_time", "id")
                            .values_list(*_PAGE_FIELDS)[:limit + 1]))
    merged = list(itertools.islice(
        heapq.merge(*streams, key=lambda row: (row[2], row[0])), limit + 1))
    page = merged[:limit]
    cursor = None
    if len(merged) > limit:
        cursor = encode_cursor(_EPOCH + page[-1][2] * _ONE_US, page[-1][0])
    positions: list[WirePosition] = []
    for _pk, member_id, us, seen_us, lat, lon, *optional in page:
        data: dict[str, Any] = {"member": member_id, "lat": lat, "lon": lon}
        for name, value in zip(_PAGE_FIELDS[6:], optional):
            if value is not None:
                data[name] = value
        data["ts"] = us // 1000
        data["seen"] = seen_us // 1000
        positions.append(cast(WirePosition, data))
    return positions, cursor
