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
import contextvars
import logging
import time
import weakref

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction

from . import metrics
from .models import Member, Position, Room
from .selectors import from_ms

log = logging.getLogger(__name__)


class HistoryWriter:
    """Buffers ``(member_id, fix, received_ms)`` and writes them in batches."""

    def __init__(self):
        self.buffer = []
        # member id -> the last_seen (epoch ms) last written, within the resolution.
        self.persisted = {}
        self._handle = None
        self._flushing = None
        self._tasks = set()

    def add(self, member_id, fix, received_ms):
        """Queue one position for the history; the write happens within the interval."""
        self.buffer.append((member_id, fix, received_ms))
        if self._handle is None:
            loop = asyncio.get_running_loop()
            # A fresh context: the caller may be an HTTP request, whose thread-sensitive
            # executor Django shuts when the response is sent; a write scheduled in its
            # context would fail ("CurrentThreadExecutor already quit").
            self._handle = loop.call_later(
                settings.GEOSHARE["HISTORY_FLUSH_MS"] / 1000,
                self._start_flush,
                context=contextvars.Context(),
            )

    def _start_flush(self):
        self._handle = None
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
        self._flushing = asyncio.get_running_loop().create_future()
        try:
            started = time.perf_counter()
            await database_sync_to_async(write_batch)(batch, self.persisted)
            metrics.history_written(len(batch), time.perf_counter() - started)
        except Exception:
            metrics.HISTORY_ERRORS.inc()
            log.exception("history: could not write %d positions", len(batch))
        finally:
            done, self._flushing = self._flushing, None
            done.set_result(None)


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


def write_batch(batch, persisted=None):
    """Insert a batch of ``(member_id, fix, received_ms)`` in one transaction.

    One ``executemany`` of a plain INSERT (the ORM's ``bulk_create`` builds a model and
    prepares every field of every row, which in make bench S2 held the GIL for a
    noticeable share of each second). Datetimes are adapted by the database backend.
    Positions of members deleted meanwhile, and of rooms that keep no history (as the
    room is set now), are not written. ``persisted`` maps member id to the
    ``last_seen`` last written (epoch ms); it is updated, and entries older than
    :data:`LAST_SEEN_RESOLUTION_MS` are dropped, so it stays as small as the set of
    members who reported lately.
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
        last_seen = {}
        for member_id, fix, received_ms in batch:
            days = retention.get(member_id)
            if days is None:
                continue
            if received_ms > last_seen.get(member_id, 0):
                last_seen[member_id] = received_ms
            if days == 0:
                continue
            rows.append((
                member_id, fix.lat, fix.lon, fix.accuracy, fix.altitude, fix.speed,
                fix.heading, fix.battery,
                ops.adapt_datetimefield_value(from_ms(fix.ts)),
                ops.adapt_datetimefield_value(from_ms(received_ms)),
            ))
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows
                )
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


_writers = weakref.WeakKeyDictionary()


def history_writer():
    """Return the history writer of the running event loop."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = HistoryWriter()
    return writer
