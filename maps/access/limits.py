"""The limiter: fixed windows on Django's cache, or this process's memory.

Counts are kept per bucket (``GEOSHARE["RATE_LIMITS"]``: ``redeem``, ``badkey``,
``positions``, ``room``, ``flood``, ...) and per identity: a hash of the address or a
member id, never a token or a key. With ``REDIS_URL`` the cache is Redis, so processes
share the counts. Every limit is listed with its number in docs/security.md.
"""

import hashlib
import threading
import time
from collections.abc import Callable, Sequence

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from maps.access.address import geoshare_setting
from maps.telemetry import metrics


def _limit_key(bucket, ident, window):
    digest = hashlib.sha256(str(ident).encode()).hexdigest()[:24]
    return f"geoshare:rl:{bucket}:{digest}:{int(time.time() // window)}"


def limit(bucket):
    """Return ``(max events, window seconds)`` of a bucket (``GEOSHARE["RATE_LIMITS"]``)."""
    return geoshare_setting("RATE_LIMITS")[bucket]


def retry_after(bucket):
    """Return the whole seconds until the current window of ``bucket`` ends (>= 1)."""
    _, window = limit(bucket)
    return max(1, int(window - time.time() % window + 0.999))


class _Counts:
    """The limiter's counters: Django's cache, or this process's memory when that is
    what the cache is anyway (``LocMemCache``, one process: the embedded default).

    Both count per ``(bucket, ident)`` in windows of ``window`` seconds aligned to the
    clock. The in-process counters skip the cache's key hashing, validation and
    pickling, which on the phone doors cost more than the rest of the limiter.
    """

    def __init__(self):
        self._local = {}  # (bucket, ident) -> (window index, count)
        self._lock = threading.Lock()

    def clear(self):
        """Forget every count (tests start from none)."""
        with self._lock:
            self._local.clear()

    def add(self, bucket, ident, window, count):
        """Add ``count`` (may be negative) to the current window; return its total."""
        if not _cache_in_process():
            return self._cache_add(bucket, ident, window, count)
        index = int(time.time() // window)
        key = (bucket, ident)
        with self._lock:
            found = self._local.get(key)
            total = count + (found[1] if found is not None and found[0] == index else 0)
            if found is None and len(self._local) >= _LOCAL_COUNTS_PRUNE_AT:
                self._prune()
            self._local[key] = (index, total)
        return total

    def peek(self, bucket, ident, window):
        """Return the current window's total without counting."""
        if not _cache_in_process():
            return cache.get(_limit_key(bucket, ident, window)) or 0
        found = self._local.get((bucket, ident))
        return found[1] if found is not None and found[0] == int(time.time() // window) else 0

    def _prune(self):
        now = time.time()
        windows = {bucket: window for bucket, (_allowed, window)
                   in geoshare_setting("RATE_LIMITS").items()}
        for key, (index, _count) in list(self._local.items()):
            window = windows.get(key[0])
            if window is None or index != int(now // window):
                del self._local[key]

    @staticmethod
    def _cache_add(bucket, ident, window, count):
        key = _limit_key(bucket, ident, window)
        if count > 0 and cache.add(key, count, timeout=window + 1):
            return count
        try:
            return cache.incr(key, count)
        except ValueError:  # expired between add and incr
            if count <= 0:
                return 0
            cache.add(key, count, timeout=window + 1)
            return count


# Past this many counters in memory, those of past windows are dropped.
_LOCAL_COUNTS_PRUNE_AT = 50_000


counts = _Counts()


def _cache_in_process():
    """Return whether Django's default cache lives in this process (no I/O to wait for)."""
    return settings.CACHES["default"]["BACKEND"] == (
        "django.core.cache.backends.locmem.LocMemCache")


def limit_hit(bucket, ident, count=1):
    """Count ``count`` events of ``bucket`` for ``ident``; return whether still allowed.

    Windows are aligned to the clock, so every process agrees on when one ends. An
    event refused for the limit is counted too (wrong keys, redemptions): trying harder
    does not help.
    """
    allowed, window = limit(bucket)
    return metrics.allowed(bucket, counts.add(bucket, ident, window, count) <= allowed)


def limit_take(bucket, ident, count=1):
    """Take ``count`` events from ``ident``'s budget if they all fit; return ``True``.

    Unlike :func:`limit_hit`, a refused take is not counted: a phone that is told to
    retry later can send the same positions again.
    """
    allowed, window = limit(bucket)
    if count > allowed:
        metrics.refused(bucket)
        return False
    if counts.add(bucket, ident, window, count) > allowed:
        counts.add(bucket, ident, window, -count)
        metrics.refused(bucket)
        return False
    return True


def limit_blocked(bucket, ident):
    """Return whether ``ident`` is over the limit of ``bucket`` (without counting)."""
    allowed, window = limit(bucket)
    return counts.peek(bucket, ident, window) > allowed


async def in_cache_thread(function, *args):
    """Call a limiter ``function`` from the event loop: directly when the cache is in
    this process (a dict and a lock: microseconds), else in a worker thread (Redis)."""
    if _cache_in_process():
        return function(*args)
    return await sync_to_async(function, thread_sensitive=False)(*args)


def limit_take_positions(member_id, count):
    """Take ``count`` positions from the member's budget; return whether they fit."""
    return limit_take("positions", member_id, count)


class ExportSlots:
    """Exports (GPX, GeoJSON, "download my data") running in this process.

    At most ``GEOSHARE["EXPORTS_PER_MEMBER"]`` at once per member and
    ``GEOSHARE["EXPORTS_PER_PROCESS"]`` in all (docs/security.md): each holds a
    database chunk and a piece of text in memory for as long as its client reads.
    Counted in this process's memory, not the cache: a slot is released when its
    stream ends or its client goes away, which a crashed process could never do for a
    shared count.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[int, int] = {}
        self._total = 0

    def clear(self) -> None:
        """Forget every running export (tests start from none)."""
        with self._lock:
            self._members.clear()
            self._total = 0

    def running(self, member_id: int | None = None) -> int:
        """Return how many exports run: for ``member_id``, or in all."""
        with self._lock:
            return self._total if member_id is None else self._members.get(member_id, 0)

    def take(self, member_ids: Sequence[int]) -> Callable[[], None] | None:
        """Take a slot for an export on behalf of ``member_ids`` (one slot each).

        Returns the function that releases them (safe to call more than once), or
        ``None``, taking nothing, when one of the members or the process is at its
        limit.
        """
        per_member = geoshare_setting("EXPORTS_PER_MEMBER")
        per_process = geoshare_setting("EXPORTS_PER_PROCESS")
        ids = sorted(set(member_ids))
        with self._lock:
            if (self._total >= per_process
                    or any(self._members.get(i, 0) >= per_member for i in ids)):
                metrics.refused("export")
                return None
            self._total += 1
            for i in ids:
                self._members[i] = self._members.get(i, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._total -= 1
                for i in ids:
                    left = self._members[i] - 1
                    if left:
                        self._members[i] = left
                    else:
                        del self._members[i]

        return release


# Seconds a client refused an export slot is told to wait before it asks again.
EXPORT_RETRY_AFTER_S = 5

export_slots = ExportSlots()
