"""The history writer: positions reach the database in batches, off the hot path.

Publishing a position appends it to this process's buffer; at most
``GEOSHARE["HISTORY_FLUSH_MS"]`` later one ``executemany`` writes the whole buffer in one
transaction (and one ``executemany`` the members' ``last_seen``). The room's retention
is read when the batch is written, so a room set to live only stops collecting history
from the moment that is saved. A graceful stop writes what is buffered (the ASGI
lifespan shutdown in geoshare.asgi); a crash loses at most that interval of history.
The live map never waits for the database. Arrivals at places and departures are
computed in the same transaction (:func:`evaluate_places`) and announced after it.
"""

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction

from maps.domain import places
from maps.domain.fixes import Fix
from maps.models import (
    Device,
    LivePosition,
    Member,
    Place,
    PlaceEvent,
    PlaceState,
    Position,
    Room,
)
from maps.storage.dbthread import Batcher, DatabaseThread
from maps.storage.selectors import from_ms, to_ms
from maps.telemetry import metrics

log = logging.getLogger(__name__)

#: One buffered position: ``(member id, fix, received ms)``.
BatchItem = tuple[int, Fix, int]
#: A stored arrival or departure: ``(room id, member id, place id, kind, device time ms)``.
PlaceEventRow = tuple[int, int, int, str, int]
#: :func:`_member_rooms`' answer: member id -> (room retention days, room id).
MemberRooms = dict[int, tuple[int, int]]
#: :func:`time_param`'s ``stamp``: epoch ms -> the query parameter of that time.
Stamp = Callable[[int], Any]


class StoreFailed(Exception):
    """A batch of positions could not be committed; the caller's positions are not stored."""


class HistoryWriter:
    """Buffers ``(member_id, fix, received_ms)`` and writes them in batches.

    Two speeds. Positions from the WebSocket (at most once, docs/protocol.md) wait up
    to ``HISTORY_FLUSH_MS`` for the next batch. Positions a phone must not lose are
    added ``durable``: the caller gets a future that resolves once they are committed,
    and a batch starts at once, or right after the one under way, with everything
    that arrived meanwhile: requests arriving together share one commit (group
    commit), so a "200" to a phone means stored without a transaction per request.
    """

    def __init__(self) -> None:
        self.buffer: list[BatchItem] = []
        self.waiters: list[asyncio.Future[None]] = []
        # member id -> the last_seen (epoch ms) last written, within the resolution.
        self.persisted: dict[int, int] = {}
        # device id -> the newest receive time (epoch ms) of the buffered positions,
        # and the last_seen last written per device.
        self.devices: dict[int, int] = {}
        self.devices_persisted: dict[int, int] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._soon = False
        self._flushing: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, member_id: int, fixes: Sequence[Fix], received_ms: int, *,
            durable: bool = False,
            device_id: int | None = None) -> asyncio.Future[None] | None:
        """Queue positions of one member (``fixes``, a list of :class:`Fix`).

        ``device_id``: the device that sent them, whose ``last_seen`` the batch writes
        (at :data:`DEVICE_SEEN_RESOLUTION_MS`). Returns ``None``, or with ``durable`` a
        future that resolves when they are committed, or fails with
        :class:`StoreFailed`. The positions were announced by the caller when accepted
        (maps.services.publish); the writer reports only what a commit computed (the
        place events) to the callback of :func:`on_commit`.
        """
        for fix in fixes:
            self.buffer.append((member_id, fix, received_ms))
        if device_id is not None and received_ms > self.devices.get(device_id, 0):
            self.devices[device_id] = received_ms
        loop = asyncio.get_running_loop()
        if durable:
            future = loop.create_future()
            self.waiters.append(future)
            self._start_soon(loop)
            return future
        if self._handle is None:
            # A fresh context: the caller may be an HTTP request, whose thread-sensitive
            # executor Django shuts when the response is sent; a write scheduled in its
            # context would fail ("CurrentThreadExecutor already quit").
            self._handle = loop.call_later(
                settings.GEOSHARE["HISTORY_FLUSH_MS"] / 1000,
                self._start_flush,
                context=contextvars.Context(),
            )
        return None

    def _start_soon(self, loop):
        # A flush under way starts the next one itself when it ends (see flush).
        if self._flushing is None and not self._soon:
            self._soon = True
            loop.call_soon(self._start_flush, context=contextvars.Context())

    def _start_flush(self):
        self._handle = None
        self._soon = False
        self._spawn(asyncio.get_running_loop(), self.flush())

    def _spawn(self, loop, coroutine):
        # Held until done: the loop keeps only weak references to tasks.
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write everything buffered now; wait for a flush already under way first."""
        while self._flushing is not None:
            await self._flushing
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        waiters, self.waiters = self.waiters, []
        devices, self.devices = self.devices, {}
        loop = asyncio.get_running_loop()
        self._flushing = loop.create_future()
        try:
            started = time.perf_counter()
            place_events: list[PlaceEventRow] = []
            await _thread.run(write_batch, batch, self.persisted, place_events,
                              devices=devices, devices_persisted=self.devices_persisted)
            metrics.history_written(len(batch), time.perf_counter() - started)
        except Exception:
            metrics.HISTORY_ERRORS.inc()
            log.exception("history: could not write %d positions", len(batch))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(StoreFailed("the positions could not be stored"))
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if place_events and _committed:
                self._spawn(loop, _committed[0](place_events))
            if connection.vendor == "sqlite":
                # Off the durable path: nobody waits for it (CHECKPOINT_EVERY_S).
                self._spawn(loop, checkpoints.load(None))
        finally:
            done, self._flushing = self._flushing, None
            done.set_result(None)
            if self.waiters:
                self._start_soon(loop)


# The callback of :func:`on_commit` (at most one: maps.services.publish's).
_committed: list[Callable[[list[PlaceEventRow]], Awaitable[None]]] = []


def on_commit(callback: Callable[[list[PlaceEventRow]], Awaitable[None]]) -> None:
    """Register ``await callback(place_events)``, called after each commit that stored
    arrivals or departures (``[(room id, member id, place id, kind, device time ms)]``).

    The writer never sends on the channel layer itself: the one publisher
    (:func:`maps.services.publish.install`) registers here at start-up. A second
    registration replaces the first.
    """
    _committed[:] = [callback]


# ``Member.last_seen`` in the database is for pages and for a hub that starts cold; live
# clients get last-seen times from the hubs' memory. Rewriting it for every sharing
# member on every flush would add a CASE branch per member per second, so it is written
# at this resolution.
LAST_SEEN_RESOLUTION_MS = 30_000


def _member_rooms(member_ids):
    """Return ``{member id: (room retention days, room id)}`` of those of ``member_ids``
    that exist.

    Plain SQL in chunks: the ORM's ``pk__in`` prepares every value through the field,
    which for a batch of thousands of members held the GIL long enough to stall the
    event loop (make bench S2, 10,000 sockets: about a fifth of the server's samples).
    On PostgreSQL the member rows are locked ``FOR KEY SHARE`` until the batch commits:
    a member deleted between this check and the insert would otherwise fail the
    insert's foreign key, and with it the whole batch, other rooms' history included.
    The lock lets concurrent batches through and makes a delete wait for the commit.
    SQLite needs no lock: its write transactions are serial (``IMMEDIATE``).
    """
    quote = connection.ops.quote_name
    member = quote(Member._meta.db_table)
    room = quote(Room._meta.db_table)
    lock = " FOR KEY SHARE OF m" if connection.vendor == "postgresql" else ""
    found = {}
    with connection.cursor() as cursor:
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start:start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT m.id, r.retention_days, r.id FROM {member} m JOIN {room} r "
                f"ON r.id = m.room_id WHERE m.id IN ({marks}) ORDER BY m.id{lock}",
                chunk,
            )
            found.update((row[0], (row[1], row[2])) for row in cursor.fetchall())
    return found


_COLUMNS = ("member_id", "lat", "lon", "accuracy", "altitude", "speed", "heading",
            "battery", "charging", "device", "device_time", "received")


def _statement(name, build):
    """Return ``build()``, made once per database vendor (the quoted names and the
    statement's text do not change; building them was a few dozen calls per batch)."""
    key = (name, connection.vendor)
    sql = _STATEMENTS.get(key)
    if sql is None:
        sql = _STATEMENTS[key] = build()
    return sql


_STATEMENTS: dict[tuple[str, str], str] = {}


def _position_insert_sql():
    """Return the INSERT of one history row (:data:`_COLUMNS`)."""
    ops = connection.ops
    table = ops.quote_name(Position._meta.db_table)
    columns = ", ".join(ops.quote_name(c) for c in _COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})"


def _live_upsert_sql():
    """Return the statement that makes a fix its member's :class:`LivePosition`.

    Only when it is newer (device time) than the one stored, and only when it was
    received after the member's last stop: a position already in flight when the member
    stopped must not bring the marker back. ``INSERT ... ON CONFLICT DO UPDATE`` is
    understood alike by SQLite (3.24+) and PostgreSQL.
    """
    quote = connection.ops.quote_name
    live = quote(LivePosition._meta.db_table)
    member = quote(Member._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in _COLUMNS[1:])
    return (
        f"INSERT INTO {live} ({columns}) SELECT {marks} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {member} WHERE id = %s AND stopped_at >= %s) "
        f"ON CONFLICT ({quote('member_id')}) DO UPDATE SET {updates} "
        f"WHERE excluded.{quote('device_time')} >= {live}.{quote('device_time')}"
    )


def write_batch(batch: Sequence[BatchItem], persisted: dict[int, int] | None = None,
                place_events: list[PlaceEventRow] | None = None, *,
                devices: dict[int, int] | None = None,
                devices_persisted: dict[int, int] | None = None) -> int:
    """Insert a batch of ``(member_id, fix, received_ms)`` in one transaction.

    Each member's newest fix of the batch becomes their :class:`LivePosition` (in every
    room: a live-only room keeps exactly that one), and every fix becomes a history
    row unless the room keeps no history (as it is set now). One ``executemany`` of a
    plain INSERT each (the ORM's ``bulk_create`` builds a model and prepares every
    field of every row, which in make bench S2 held the GIL for a noticeable share of
    each second). Positions of members deleted meanwhile are not written.
    ``persisted`` maps member id to the ``last_seen`` last written (epoch ms); it is
    updated, and entries older than :data:`LAST_SEEN_RESOLUTION_MS` are dropped, so it
    stays as small as the set of members who reported lately. Returns the number of
    history rows written.

    ``devices`` maps device id to the newest receive time (epoch ms) of its positions
    in the batch: their ``last_seen`` is written in the same transaction, when it moved
    by :data:`DEVICE_SEEN_RESOLUTION_MS` since ``devices_persisted`` (updated).

    In the same transaction every fix is held against its room's places
    (:func:`evaluate_places`), live-only rooms included; the arrivals and departures
    found (stored, except in a live-only room) are appended to ``place_events`` (a
    list, when given) as
    ``(room id, member id, place id, kind, device time ms)``, for the caller to
    announce once the transaction has committed.
    """
    persisted = {} if persisted is None else persisted
    _autocheckpoint_off()
    stamp = time_param()
    member_ids = sorted({row[0] for row in batch})
    with transaction.atomic():
        retention = _member_rooms(member_ids)
        rows = []
        # member id -> (device time, received, the row's parameters)
        newest: dict[int, tuple[int, int, tuple[Any, ...]]] = {}
        last_seen: dict[int, int] = {}
        for member_id, fix, received_ms in batch:
            found = retention.get(member_id)
            if found is None:
                continue
            if received_ms > last_seen.get(member_id, 0):
                last_seen[member_id] = received_ms
            row = _row(stamp, member_id, fix, received_ms)
            current = newest.get(member_id)
            if current is None or fix.ts >= current[0]:
                newest[member_id] = (fix.ts, received_ms, row)
            if found[0] != 0:
                rows.append(row)
        with connection.cursor() as cursor:
            if rows:
                cursor.executemany(_statement("insert", _position_insert_sql), rows)
            if newest:
                cursor.executemany(_statement("live", _live_upsert_sql), [
                    (*row, member_id, stamp(received_ms))
                    for member_id, (_ts, received_ms, row) in newest.items()
                ])
        members = [pk for pk, ms in last_seen.items()
                   if ms - persisted.get(pk, 0) >= LAST_SEEN_RESOLUTION_MS]
        _last_seen_update(Member, [(pk, stamp(last_seen[pk])) for pk in members])
        seen = _devices_seen(devices or {}, devices_persisted, stamp)
        created = evaluate_places(batch, retention)
    if place_events is not None:
        place_events.extend(created)
    if devices_persisted is not None:
        devices_persisted.update(seen)
        if len(devices_persisted) > 10_000:
            horizon = max(seen.values(), default=0) - DEVICE_SEEN_RESOLUTION_MS
            for pk in [pk for pk, ms in devices_persisted.items() if ms < horizon]:
                del devices_persisted[pk]
    for pk in members:
        persisted[pk] = last_seen[pk]
    if last_seen:
        horizon = max(last_seen.values()) - LAST_SEEN_RESOLUTION_MS
        for pk in [pk for pk, ms in persisted.items() if ms < horizon]:
            del persisted[pk]
    return len(rows)


# A device's last report ("Connect a phone") is shown to the minute: it is written at
# most this often per device.
DEVICE_SEEN_RESOLUTION_MS = 5_000


def _devices_seen(devices, persisted, stamp):
    """Write the ``last_seen`` of ``devices`` ({id: epoch ms}) that moved enough;
    return ``{id: ms}`` of those written. Devices deleted meanwhile match no row.
    ``stamp`` is :func:`time_param`'s."""
    persisted = persisted if persisted is not None else {}
    due = {pk: ms for pk, ms in devices.items()
           if ms - persisted.get(pk, 0) >= DEVICE_SEEN_RESOLUTION_MS}
    _last_seen_update(Device, [(pk, stamp(ms)) for pk, ms in due.items()])
    return due


def _last_seen_update(model, rows):
    """Set ``last_seen`` of ``model`` rows: ``rows`` is ``[(pk, time parameter)]``,
    the time as :func:`time_param`'s ``stamp`` gives it.

    One ``executemany`` of a plain UPDATE: the ORM's ``bulk_update`` builds a ``CASE``
    with a branch per row, which for the 2,000 members of a room that just started
    held the history thread for most of a second (make bench S2).
    """
    if not rows:
        return

    def build():
        ops = connection.ops
        table = ops.quote_name(model._meta.db_table)
        return f"UPDATE {table} SET {ops.quote_name('last_seen')} = %s WHERE id = %s"

    with connection.cursor() as cursor:
        cursor.executemany(_statement(f"seen {model._meta.db_table}", build),
                           [(at, pk) for pk, at in rows])


def evaluate_places(batch: Sequence[BatchItem], rooms: MemberRooms) -> list[PlaceEventRow]:
    """Hold ``batch``'s fixes against their rooms' places; store what changes.

    ``rooms`` is :func:`_member_rooms`' answer. Each member's fixes are taken in
    device-time order through :func:`maps.domain.places.step`, from the stored
    :class:`PlaceState` (a missing one is "outside, nothing decided"). Called inside
    the batch's transaction: the state rows are created if missing (``ON CONFLICT DO
    NOTHING``, so two processes creating one do not fail each other) and then read
    ``SELECT ... FOR UPDATE`` on PostgreSQL, so another process's batch for the same
    member and place waits for this commit and then sees the state this one wrote;
    SQLite's write transactions are serial. A fix not newer than the state's
    ``checked`` time changes nothing, so a late or repeated batch, or one replayed
    after a restart, gives no second event; the unique constraint on
    :class:`PlaceEvent` is the last guard (an OwnTracks ``transition`` may have
    stored the same crossing). Returns ``[(room id, member id, place id, kind, ts ms)]``
    of the events inserted.

    A live-only room (retention 0 days, as it is set now) keeps no events: its
    crossings are returned, to be announced live like its positions, but no
    :class:`PlaceEvent` is stored. Its :class:`PlaceState` is still written: it is
    where the member is now, not history (the live map shows as much), and without it
    the next fix would find the member "outside, nothing decided" and report the same
    arrival again, or never report the departure.
    """
    room_ids = sorted({found[1] for found in rooms.values()})
    if not room_ids:
        return []
    circles: dict[int, list[tuple[int, places.Circle]]] = {}
    for pk, room_id, lat, lon, radius in _room_places(room_ids):
        circles.setdefault(room_id, []).append((pk, places.Circle(lat, lon, radius)))
    if not circles:
        return []
    fixes: dict[int, list[tuple[float, float, float | None, int]]] = {}
    for member_id, fix, _received in batch:
        found = rooms.get(member_id)
        if found is not None and found[1] in circles:
            fixes.setdefault(member_id, []).append(
                (fix.lat, fix.lon, fix.accuracy, fix.ts))
    if not fixes:
        return []
    pairs = [(member_id, pk) for member_id in sorted(fixes)
             for pk, _circle in circles[rooms[member_id][1]]]
    states = _lock_place_states(pairs)
    created: list[PlaceEventRow] = []
    changed = []
    for member_id in sorted(fixes):
        room_id = rooms[member_id][1]
        for pk, circle in circles[room_id]:
            row = states[(member_id, pk)]
            before = places.PlaceState(row.inside, to_ms(row.since), to_ms(row.checked))
            after, crossings = places.run(circle, before, fixes[member_id])
            if after == before:
                continue
            row.inside, row.since, row.checked = (
                after.inside, from_ms(after.since) if after.since is not None else None,
                # A state that changed has decided a fix: ``checked`` is its time.
                from_ms(cast(int, after.checked)))
            changed.append(row)
            for kind, ts in crossings:
                created.append((room_id, member_id, pk, kind, ts))
    PlaceState.objects.bulk_update(changed, ["inside", "since", "checked"])
    if not created:
        return []
    live_only = {room_id for days, room_id in rooms.values() if days == 0}
    kept = [item for item in created if item[0] not in live_only]
    return place_events_insert(kept) + [item for item in created
                                        if item[0] in live_only]


def _room_places(room_ids):
    """Return ``[(place id, room id, lat, lon, radius)]`` of the rooms ``room_ids``.

    Plain SQL: it runs for every batch, and most rooms have no places; the ORM's
    query building cost more than the query (make bench, phone ingest).
    """
    quote = connection.ops.quote_name
    table = quote(Place._meta.db_table)
    found = []
    with connection.cursor() as cursor:
        for start in range(0, len(room_ids), 500):
            chunk = room_ids[start:start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT id, room_id, lat, lon, radius FROM {table} "
                           f"WHERE room_id IN ({marks})", chunk)
            found.extend(cursor.fetchall())
    return found


def place_events_insert(created: Sequence[PlaceEventRow]) -> list[PlaceEventRow]:
    """Insert ``[(room id, member id, place id, kind, ts ms)]`` as :class:`PlaceEvent`
    rows unless already stored; return those inserted.

    Called with the member's :class:`PlaceState` rows locked (:func:`_lock_place_states`),
    so nobody else inserts the same event between the check and the insert; the
    unique constraint stays the guard of last resort (``ignore_conflicts``).
    """
    fresh = []
    for item in created:
        _room_id, member_id, pk, kind, ts = item
        if not PlaceEvent.objects.filter(member_id=member_id, place_id=pk, kind=kind,
                                         device_time=from_ms(ts)).exists():
            fresh.append(item)
    PlaceEvent.objects.bulk_create(
        [PlaceEvent(room_id=room_id, member_id=member_id, place_id=pk, kind=kind,
                    device_time=from_ms(ts))
         for room_id, member_id, pk, kind, ts in fresh],
        ignore_conflicts=True)
    return fresh


def place_transition(room_id: int, member_id: int, place_id: int, kind: str,
                     ts: int, *, keep: bool = True) -> list[PlaceEventRow]:
    """Record that the member's phone reported entering or leaving a place itself.

    An OwnTracks ``transition`` is the same crossing the server finds in the fixes, so
    it goes through the same stored state, under the same lock: when the state already
    says so (the server saw it first), or the state was decided by a newer fix, nothing
    is written; otherwise the state flips and one :class:`PlaceEvent` is stored, and
    the fixes that follow find the state already flipped. Returns the events inserted,
    as :func:`evaluate_places` does. ``keep`` false (a live-only room) flips the
    state and returns the event without storing it, as :func:`evaluate_places` does
    for such a room.
    """
    with transaction.atomic():
        row = _lock_place_states([(member_id, place_id)])[(member_id, place_id)]
        if row.checked is not None and ts <= to_ms(row.checked):
            return []
        inside = kind == "enter"
        row.checked = from_ms(ts)
        if row.inside == inside:
            row.save(update_fields=["checked"])
            return []
        row.inside, row.since = inside, from_ms(ts)
        row.save(update_fields=["inside", "since", "checked"])
        event = (room_id, member_id, place_id, kind, ts)
        return place_events_insert([event]) if keep else [event]


def _lock_place_states(pairs):
    """Return ``{(member id, place id): PlaceState}`` for ``pairs``, locked.

    Missing rows are inserted first, skipping rows another transaction made meanwhile.
    """
    PlaceState.objects.bulk_create(
        [PlaceState(member_id=m, place_id=p) for m, p in pairs], ignore_conflicts=True)
    member_ids = sorted({m for m, _p in pairs})
    place_ids = sorted({p for _m, p in pairs})
    # Locked in a fixed order (member, place), so two batches never deadlock.
    rows = (PlaceState.objects.filter(member_id__in=member_ids, place_id__in=place_ids)
            .order_by("member_id", "place_id").select_for_update())
    return {(row.member_id, row.place_id): row for row in rows}


def _row(stamp, member_id, fix, received_ms):
    return (
        member_id, fix.lat, fix.lon, fix.accuracy, fix.altitude, fix.speed,
        fix.heading, fix.battery, fix.charging, fix.device,
        stamp(fix.ts), stamp(received_ms),
    )


_EPOCH = datetime(1970, 1, 1)


def _sqlite_utc_text(ms):
    # What SQLite's adapt_datetimefield_value makes of from_ms(ms) with a UTC
    # connection: the naive UTC time as str(), without its make_naive round trip.
    return str(_EPOCH + timedelta(milliseconds=ms))


def time_param() -> Stamp:
    """Return ``stamp(ms)``: the query parameter of a ``DateTimeField`` value given as
    UTC epoch milliseconds, for this thread's connection.

    The same value the ORM would send (``adapt_datetimefield_value``); on SQLite with
    a UTC connection computed directly, since a batch adapts two times per row and
    Django's way (an aware datetime, ``make_naive``, ``str``) was a tenth of the
    history thread's time in ``make bench``'s phone ingest. Within one batch each
    distinct millisecond is adapted once (a request's rows share their receive time).
    """
    zone = connection.timezone
    if (connection.vendor == "sqlite" and settings.USE_TZ and zone is not None
            and zone.utcoffset(None) == timedelta(0)):
        adapt: Callable[[int], Any] = _sqlite_utc_text
    else:
        ops = connection.ops

        def adapt(ms: int) -> Any:
            return ops.adapt_datetimefield_value(from_ms(ms))

    seen: dict[int, Any] = {}

    def stamp(ms: int) -> Any:
        value = seen.get(ms)
        if value is None:
            value = seen[ms] = adapt(ms)
        return value

    return stamp


# The history's own database thread (maps.storage.dbthread), not channels'
# ``database_sync_to_async`` thread: an HTTP request whose sync middleware runs in that
# thread waits there for its view, and the view waits for this commit (the "a 200 means
# stored" rule); sharing the thread would deadlock. One thread: batches are written one
# after the other, never racing each other, on one kept connection. At a lower
# priority (``GEOSHARE["HISTORY_NICE"]``): on the event loop's core, a batch of a
# second's positions (SQLite's work, done without the GIL) took the core from the loop
# for tens of milliseconds, in the middle of ticks (docs/benchmarks.md, issue 16).
def _history_nice():
    return settings.GEOSHARE.get("HISTORY_NICE", 0)


_thread = DatabaseThread("geoshare-history", nice=_history_nice)

# SQLite in WAL mode copies the log back into the database (a checkpoint, with an
# fsync of each file) in the commit that takes the log past 1,000 pages: with the
# history connection's commits that was every ten or so batches of phone positions, and
# each such batch's phones waited for the disk (make bench, phone ingest: a batch of 50
# positions 1,120 us of wall time without it, 1,468 us with it; docs/benchmarks.md). The
# history connection commits without checkpointing (``wal_autocheckpoint=0``), and a
# thread of its own runs a PASSIVE checkpoint after a batch (:data:`checkpoints`: one
# for every batch committed since the last, at most every CHECKPOINT_EVERY_S seconds,
# one after the last batch too): the same work and the same durability (the WAL's frames are
# synced before they are copied, as SQLite's own checkpoint does), but no phone's answer
# waits for it. PASSIVE never blocks a writer or a reader. Other connections keep
# SQLite's automatic checkpoint, which also catches up if this thread ever stalls.
CHECKPOINT_EVERY_S = 0.25

_checkpointer = DatabaseThread("geoshare-checkpoint", nice=_history_nice)

def _autocheckpoint_off():
    """Turn SQLite's automatic checkpoint off on this thread's connection, once per
    connection (it is the history writer's: :data:`CHECKPOINT_EVERY_S`)."""
    if connection.vendor != "sqlite":
        return
    connection.ensure_connection()
    # Marked on the thread's own DatabaseWrapper: a new connection is turned off again.
    if getattr(connection, "geoshare_autocheckpoint_off", None) is not connection.connection:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        connection.geoshare_autocheckpoint_off = connection.connection


def wal_checkpoint() -> tuple[int, int, int]:
    """Run SQLite's ``PRAGMA wal_checkpoint(PASSIVE)`` on this thread's connection.

    Returns its row ``(busy, frames in the log, frames checkpointed)``; ``-1`` frames
    when the database is not in WAL mode (https://sqlite.org/pragma.html#pragma_wal_checkpoint).
    """
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return cursor.fetchone()


def _checkpoint_for(batches):
    """Checkpoint once for ``batches`` (the committed batches that asked since the last
    call; a :class:`~maps.storage.dbthread.Batcher`'s function). A failure is logged, not
    raised: the next batch asks again."""
    try:
        wal_checkpoint()
    except Exception:
        log.warning("history: the WAL checkpoint failed; the next batch tries again",
                    exc_info=True)
    return [None] * len(batches)


checkpoints = Batcher(_checkpointer, _checkpoint_for, gap=CHECKPOINT_EVERY_S)


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HistoryWriter] = (
    weakref.WeakKeyDictionary())


def history_writer() -> HistoryWriter:
    """Return the history writer of the running event loop."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = HistoryWriter()
    return writer
