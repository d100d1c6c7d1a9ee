"""The history writer: positions reach the database in batches, off the hot path.

Publishing a position appends it to this process's buffer; at most
``GEOSHARE["HISTORY_FLUSH_MS"]`` later one ``bulk_create`` writes the whole buffer in one
transaction (and one ``bulk_update`` the members' ``last_seen``). A graceful stop writes
what is buffered (the ASGI lifespan shutdown in geoshare.asgi); a crash loses at most
that interval of history. The live map never waits for the database.
"""

import asyncio
import contextvars
import logging
import weakref

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction

from .models import Member, Position
from .selectors import from_ms

log = logging.getLogger(__name__)


class HistoryWriter:
    """Buffers ``(member_id, fix, received_ms)`` and writes them in batches."""

    def __init__(self):
        self.buffer = []
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

    def forget(self, member_ids):
        """Drop buffered positions of these members (they erased their data)."""
        member_ids = set(member_ids)
        self.buffer = [row for row in self.buffer if row[0] not in member_ids]

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
            await database_sync_to_async(write_batch)(batch)
        except Exception:
            log.exception("history: could not write %d positions", len(batch))
        finally:
            done, self._flushing = self._flushing, None
            done.set_result(None)


# ``Member.last_seen`` in the database is for pages and for a hub that starts cold; live
# clients get last-seen times from the hubs' memory. Rewriting it for every sharing
# member on every flush would add a CASE branch per member per second, so it is written
# at this resolution.
LAST_SEEN_RESOLUTION_MS = 30_000
_persisted_last_seen = {}


def existing_member_ids(member_ids):
    """Return the subset of ``member_ids`` still in the database.

    Plain SQL in chunks: the ORM's ``pk__in`` prepares every value through the field,
    which for a batch of thousands of members held the GIL long enough to stall the
    event loop (make bench S2, 10,000 sockets: about a fifth of the server's samples).
    """
    table = connection.ops.quote_name(Member._meta.db_table)
    present = set()
    with connection.cursor() as cursor:
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start:start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT id FROM {table} WHERE id IN ({marks})", chunk)
            present.update(row[0] for row in cursor.fetchall())
    return present


_COLUMNS = ("member_id", "lat", "lon", "accuracy", "altitude", "speed", "heading",
            "battery", "device_time", "received")


def write_batch(batch):
    """Insert a batch of ``(member_id, fix, received_ms)`` in one transaction.

    One ``executemany`` of a plain INSERT (the ORM's ``bulk_create`` builds a model and
    prepares every field of every row, which in make bench S2 held the GIL for a
    noticeable share of each second). Datetimes are adapted by the database backend.
    Positions of members deleted meanwhile are dropped, not written: a removed or erased
    member must leave nothing behind.
    """
    ops = connection.ops
    member_ids = list({row[0] for row in batch})
    table = ops.quote_name(Position._meta.db_table)
    columns = ", ".join(ops.quote_name(c) for c in _COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    with transaction.atomic():
        present = existing_member_ids(member_ids)
        rows = []
        last_seen = {}
        for member_id, fix, received_ms in batch:
            if member_id not in present:
                continue
            rows.append((
                member_id, fix.lat, fix.lon, fix.accuracy, fix.altitude, fix.speed,
                fix.heading, fix.battery,
                ops.adapt_datetimefield_value(from_ms(fix.ts)),
                ops.adapt_datetimefield_value(from_ms(received_ms)),
            ))
            if received_ms > last_seen.get(member_id, 0):
                last_seen[member_id] = received_ms
        if rows:
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows
                )
        members = [Member(pk=pk, last_seen=from_ms(ms)) for pk, ms in last_seen.items()
                   if ms - _persisted_last_seen.get(pk, 0) >= LAST_SEEN_RESOLUTION_MS]
        Member.objects.bulk_update(members, ["last_seen"], batch_size=500)
    for member in members:
        _persisted_last_seen[member.pk] = last_seen[member.pk]


_writers = weakref.WeakKeyDictionary()


def history_writer():
    """Return the history writer of the running event loop."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = HistoryWriter()
    return writer
