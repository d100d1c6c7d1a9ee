"""A database thread of geoshare's own, whose connection stays open between calls.

channels' ``database_sync_to_async`` closes the thread's connection around every call
(``CONN_MAX_AGE = 0``, the default: persistent connections leak under Django's ASGI
handler, which gives each request a thread of its own). On the phone path that meant a
new connection per key lookup and per history batch (SQLite: a file open and two
pragmas; PostgreSQL: a new backend). A :class:`DatabaseThread` is one long-lived thread
that keeps one connection, checked as Django's ``CONN_HEALTH_CHECKS`` would check it:
after an error, and before a call that follows a long idle spell (a server restart or an
idle timeout may have closed it meanwhile).
"""

import asyncio
import concurrent.futures
import functools
import time

from django.db import connection

# A connection idle this long is checked before it is used again (seconds).
IDLE_CHECK_S = 30


class DatabaseThread:
    """One thread with its own kept connection; ``await run(function, *args)``."""

    def __init__(self, name):
        self.name = name
        self._executor = None
        self._last = 0.0

    def executor(self):
        """Return the thread (a one-worker executor), started on first use."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=self.name)
        return self._executor

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


# The thread the event loop's common reads go to: device keys (maps.keycache), the
# WebSocket handshake's authentication, a hub's starting state. Like channels'
# thread-sensitive thread, one at a time; unlike it, on a kept connection.
reads = DatabaseThread("geoshare-reads")
