"""A database thread of geoshare's own, whose connection stays open between calls.

channels' ``database_sync_to_async`` closes the thread's connection around every call
(``CONN_MAX_AGE = 0``, the default: persistent connections leak under Django's ASGI
handler, which gives each request a thread of its own). On the phone path that meant a
new connection per key lookup and per history batch (SQLite: a file open and two
pragmas; PostgreSQL: a new backend). A :class:`DatabaseThread` is one long-lived thread
that keeps one connection, checked as Django's ``CONN_HEALTH_CHECKS`` would check it:
after an error, and before a call that follows a long idle spell (a server restart or an
idle timeout may have closed it meanwhile). A :class:`Batcher` puts the reads that
arrive while one is under way into one call (a reconnect storm's handshakes and hub
starts: docs/benchmarks.md, issue 16).
"""

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import time
import weakref

from django.db import connection

log = logging.getLogger(__name__)

# A connection idle this long is checked before it is used again (seconds).
IDLE_CHECK_S = 30
# The gap of the handshakes' and hub starts' Batchers (seconds): a lookup under load
# waits at most this long to start (Batcher).
LOOKUP_GAP_S = 0.005


class DatabaseThread:
    """One thread with its own kept connection; ``await run(function, *args)``.

    ``nice``: a function returning the niceness (0-19) the thread takes when it starts,
    or ``None``/0 to keep the process's. On Linux the scheduler weighs each thread by
    its own niceness (``setpriority(2)``: ``PRIO_PROCESS`` with a thread id), so a
    background writer sharing the event loop's core yields the core to the loop
    whenever both could run, and still has every moment the loop leaves idle.
    Elsewhere, or where it is refused, the thread keeps the process's priority.
    """

    def __init__(self, name, nice=None):
        self.name = name
        self.nice = nice
        self._executor = None
        self._last = 0.0

    def executor(self):
        """Return the thread (a one-worker executor), started on first use."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=self.name, initializer=self._started)
        return self._executor

    def _started(self):
        nice = self.nice() if self.nice is not None else 0
        if not nice or not hasattr(os, "setpriority"):
            return
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid,
                           max(os.getpriority(os.PRIO_PROCESS, tid), min(nice, 19)))
        except OSError as exc:
            log.warning("%s: could not lower the thread's priority (%s)", self.name, exc)

    async def run(self, function, *args, **kwargs):
        """Call ``function(*args, **kwargs)`` on the thread; return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor(), functools.partial(self.call, function, *args, **kwargs))

    def call(self, function, *args, **kwargs):
        """Call ``function`` here (on the thread) with the kept connection."""
        now = time.monotonic()
        if connection.connection is not None and (
                connection.errors_occurred or now - self._last > IDLE_CHECK_S):
            if not connection.is_usable():
                connection.close()
            connection.errors_occurred = False
        self._last = now
        try:
            return function(*args, **kwargs)
        except Exception:
            if connection.connection is not None and not connection.is_usable():
                connection.close()
            raise


# The thread the event loop's common reads go to: device keys (maps.access.keycache), the
# WebSocket handshake's authentication, a hub's starting state. Like channels'
# thread-sensitive thread, one at a time; unlike it, on a kept connection.
reads = DatabaseThread("geoshare-reads")


class Batcher:
    """Concurrent loads coalesced into one call of ``function`` on a database thread.

    ``await batcher.load(item)`` returns ``function(items)[i]`` for the ``item`` it was
    given, where ``function`` is synchronous, takes a list of items and returns a list
    of results in the same order (one query per chunk, typically ``... IN (...)``).
    The first load when nothing is under way starts a call at once (with what arrived
    in the same turn of the event loop); loads that arrive while a call is under way
    wait for it and go together in the next call, at most ``max_batch`` items a call.
    Under no load a lookup costs what it did alone; in a reconnect storm thousands of
    handshakes cost a few dozen queries instead of one each.

    ``gap`` (seconds) is the least time from the end of one call to the start of the
    next: a load that arrives sooner waits for the rest of it, with everything else that
    arrives meanwhile. Handshakes arrive one by one as the loop gets to them, so without
    it a call carried what came in during the one before (in make bench's reconnect
    storm, 10,000 keys took 3,674 calls, each a thread hop and a query); a lone load,
    after a quiet spell, still starts at once.

    An exception raised by ``function`` is raised in every load of that call. State is
    kept per event loop (tests run several loops in turn).
    """

    def __init__(self, thread, function, max_batch=500, gap=0.0):
        self.thread = thread
        self.function = function
        self.max_batch = max_batch
        self.gap = gap
        self.calls = 0  # calls made so far (tests, metrics)
        # loop -> [pending, running task, loop time the last call ended]
        self._loops = weakref.WeakKeyDictionary()

    async def load(self, item):
        """Return the result of ``item`` from the next call of ``function``."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = [[], None, float("-inf")]
        future = loop.create_future()
        state[0].append((item, future))
        if state[1] is None:
            state[1] = loop.create_task(self._drain(state))
        return await future

    async def _drain(self, state):
        batch = []
        loop = asyncio.get_running_loop()
        try:
            while state[0]:
                wait = state[2] + self.gap - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                batch = [(item, future) for item, future in state[0][: self.max_batch]
                         if not future.cancelled()]
                del state[0][: self.max_batch]
                if not batch:
                    continue
                self.calls += 1
                try:
                    results = await self.thread.run(self.function,
                                                    [item for item, _ in batch])
                except Exception as exc:
                    state[2] = loop.time()
                    for _item, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                state[2] = loop.time()
                for (_item, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            state[1] = None
            # Cancelled (the loop is closing): nothing will answer what still waits.
            for _item, future in batch + state[0]:
                if not future.done():
                    future.cancel()
            state[0].clear()
