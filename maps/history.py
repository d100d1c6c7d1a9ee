"""The history writer: positions reach the database in batches, off the hot path.

Publishing a position appends it to this process's buffer; at most
``GEOSHARE["HISTORY_FLUSH_MS"]`` later one ``executemany`` writes the whole buffer in one
transaction (and one ``bulk_update`` the members' ``last_seen``). The room's retention
is read when the batch is written, so a room set to live only stops collecting history
from the moment that is saved. A graceful stop writes what is buffered (the ASGI
lifespan shutdown in geoshare.asgi); a crash loses at most that interval of history.
The live map never waits for the database.
"""

import asyncio
import concurrent.futures
import contextvars
import logging
import time
import weakref

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from . import metrics
from .models import LivePosition, Member, Position, Room
from .selectors import from_ms

log = logging.getLogger(__name__)


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

    def __init__(self):
        self.buffer = []
        self.waiters = []
        # member id -> the last_seen (epoch ms) last written, within the resolution.
        self.persisted = {}
        self._handle = None
        self._soon = False
        self._flushing = None
        self._tasks = set()

    def add(self, member_id, fixes, received_ms, *, durable=False):
        """Queue positions of one member (``fixes``, a list of :class:`Fix`).

        Returns ``None``, or with ``durable`` a future that resolves when they are
        committed, or fails with :class:`StoreFailed`.
        """
        for fix in fixes:
            self.buffer.append((member_id, fix, received_ms))
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
        task = asyncio.get_running_loop().create_task(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self):
        """Write everything buffered now; wait for a flush already under way first."""
        while self._flushing is not None:
            await self._flushing
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        waiters, self.waiters = self.waiters, []
        loop = asyncio.get_running_loop()
        self._flushing = loop.create_future()
        try:
            started = time.perf_counter()
            await loop.run_in_executor(_executor(), _write_batch_in_thread, batch,
                                       self.persisted)
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
        finally:
            done, self._flushing = self._flushing, None
            done.set_result(None)
            if self.waiters:
                self._start_soon(loop)


# ``Member.last_seen`` in the database is for pages and for a hub that starts cold; live
# clients get last-seen times from the hubs' memory. Rewriting it for every sharing
# member on every flush would add a CASE branch per member per second, so it is written
# at this resolution.
LAST_SEEN_RESOLUTION_MS = 30_000


def _member_rooms(member_ids):
    """Return ``{member id: room retention days}`` of those of ``member_ids`` that exist.

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
                f"SELECT m.id, r.retention_days FROM {member} m JOIN {room} r "
                f"ON r.id = m.room_id WHERE m.id IN ({marks}) ORDER BY m.id{lock}",
                chunk,
            )
            found.update(cursor.fetchall())
    return found


_COLUMNS = ("member_id", "lat", "lon", "accuracy", "altitude", "speed", "heading",
            "battery", "device_time", "received")


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


def write_batch(batch, persisted=None):
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
    """
    persisted = {} if persisted is None else persisted
    ops = connection.ops
    member_ids = sorted({row[0] for row in batch})
    table = ops.quote_name(Position._meta.db_table)
    columns = ", ".join(ops.quote_name(c) for c in _COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    with transaction.atomic():
        retention = _member_rooms(member_ids)
        rows = []
        newest = {}
        last_seen = {}
        for member_id, fix, received_ms in batch:
            days = retention.get(member_id)
            if days is None:
                continue
            if received_ms > last_seen.get(member_id, 0):
                last_seen[member_id] = received_ms
            current = newest.get(member_id)
            if current is None or fix.ts >= current[0].ts:
                newest[member_id] = (fix, received_ms)
            if days == 0:
                continue
            rows.append(_row(ops, member_id, fix, received_ms))
        with connection.cursor() as cursor:
            if rows:
                cursor.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows
                )
            if newest:
                cursor.executemany(_live_upsert_sql(), [
                    (*_row(ops, member_id, fix, received_ms), member_id,
                     ops.adapt_datetimefield_value(from_ms(received_ms)))
                    for member_id, (fix, received_ms) in newest.items()
                ])
        members = [Member(pk=pk, last_seen=from_ms(ms)) for pk, ms in last_seen.items()
                   if ms - persisted.get(pk, 0) >= LAST_SEEN_RESOLUTION_MS]
        Member.objects.bulk_update(members, ["last_seen"], batch_size=500)
    for member in members:
        persisted[member.pk] = last_seen[member.pk]
    if last_seen:
        horizon = max(last_seen.values()) - LAST_SEEN_RESOLUTION_MS
        for pk in [pk for pk, ms in persisted.items() if ms < horizon]:
            del persisted[pk]
    return len(rows)


def _row(ops, member_id, fix, received_ms):
    return (
        member_id, fix.lat, fix.lon, fix.accuracy, fix.altitude, fix.speed,
        fix.heading, fix.battery,
        ops.adapt_datetimefield_value(from_ms(fix.ts)),
        ops.adapt_datetimefield_value(from_ms(received_ms)),
    )


_writer_thread = None


def _executor():
    """Return the history's own database thread, started on first use.

    Not channels' ``database_sync_to_async`` thread: an HTTP request whose sync
    middleware runs in that thread waits there for its view, and the view waits for
    this commit (the "a 200 means stored" rule); sharing the thread would deadlock.
    One thread: batches are written one after the other, never racing each other.
    """
    global _writer_thread
    if _writer_thread is None:
        _writer_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="geoshare-history")
    return _writer_thread


def _write_batch_in_thread(batch, persisted):
    # As database_sync_to_async does: no connection outlives its usefulness.
    close_old_connections()
    try:
        return write_batch(batch, persisted)
    finally:
        close_old_connections()


_writers = weakref.WeakKeyDictionary()


def history_writer():
    """Return the history writer of the running event loop."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = HistoryWriter()
    return writer
