"""The limiter: fixed windows aligned to the clock, in this process or on Redis.

Counts are kept per bucket (``GEOSHARE["RATE_LIMITS"]``: ``redeem``, ``badkey``,
``positions``, ``room``, ``flood``, ...) and per identity: a hash of the address or a
member id, never a token or a key. With ``REDIS_URL`` the ``limits`` library's
``FixedWindowRateLimiter`` counts on its ``RedisStorage`` (the Redis geoshare already
uses), so processes share the counts; without it, a dict in this process counts (the
embedded default: ``limits``' ``MemoryStorage`` cost the phone doors more than 10 % of
their CPU per request, docs/benchmarks.md). Every limit is listed with its number in
docs/security.md.

The window is geoshare's on both: its index, read from :data:`clock`, is part of each
counter's key, so windows are aligned to the clock (every process agrees on when one
ends, and :func:`retry_after` can say so) and a test moves to the next window by setting
the clock.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache

from asgiref.sync import sync_to_async
from django.conf import settings
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from maps.access.address import geoshare_setting
from maps.telemetry import metrics

#: The limiter's clock: epoch seconds. Tests replace it (``monkeypatch.setattr(limits,
#: "clock", ...)``) instead of waiting for a window to begin.
clock: Callable[[], float] = time.time


def limit(bucket: str) -> tuple[int, int]:
    """Return ``(max events, window seconds)`` of a bucket (``GEOSHARE["RATE_LIMITS"]``)."""
    return geoshare_setting("RATE_LIMITS")[bucket]


def retry_after(bucket: str) -> int:
    """Return the whole seconds until the current window of ``bucket`` ends (>= 1)."""
    _, window = limit(bucket)
    return max(1, int(window - clock() % window + 0.999))


class _LocalCounts:
    """This process's counters (no ``REDIS_URL``): ``(bucket, ident)`` -> ``(window
    index, count)`` in a dict under a lock, a count of past windows read as none."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, object], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()

    def add(self, bucket: str, ident: object, window: int, count: int) -> int:
        """Add ``count`` (may be negative) to the current window; return its total."""
        index = int(clock() // window)
        key = (bucket, ident)
        with self._lock:
            found = self._counts.get(key)
            total = count + (found[1] if found is not None and found[0] == index else 0)
            if found is None and len(self._counts) >= _LOCAL_COUNTS_PRUNE_AT:
                self._prune()
            self._counts[key] = (index, total)
        return total

    def peek(self, bucket: str, ident: object, window: int) -> int:
        """Return the current window's total without counting."""
        found = self._counts.get((bucket, ident))
        return found[1] if found is not None and found[0] == int(clock() // window) else 0

    def _prune(self) -> None:
        now = clock()
        windows = {bucket: window for bucket, (_allowed, window)
                   in geoshare_setting("RATE_LIMITS").items()}
        for key, (index, _count) in list(self._counts.items()):
            window = windows.get(key[0])
            if window is None or index != int(now // window):
                del self._counts[key]


# Past this many counters in memory, those of past windows are dropped.
_LOCAL_COUNTS_PRUNE_AT = 50_000

_local = _LocalCounts()


@lru_cache(maxsize=4)
def _limiter_for(redis_url: str, prefix: str) -> FixedWindowRateLimiter:
    return FixedWindowRateLimiter(RedisStorage(redis_url, key_prefix=f"{prefix}:rl"))


def _limiter() -> FixedWindowRateLimiter:
    """Return the Redis limiter of the current settings (``REDIS_URL``, ``REDIS_PREFIX``)."""
    return _limiter_for(settings.REDIS_URL, settings.REDIS_PREFIX)


@lru_cache(maxsize=64)
def _item(bucket: str, allowed: int, window: int) -> RateLimitItem:
    return RateLimitItemPerSecond(allowed, window, namespace=f"geoshare/{bucket}")


def _counter(bucket: str, ident: object) -> tuple[RateLimitItem, str]:
    """Return the ``limits`` item of ``bucket`` and the identifier of ``ident``'s
    counter in the current window: ``"<hash of ident>.<window index>"``."""
    allowed, window = limit(bucket)
    digest = hashlib.sha256(str(ident).encode()).hexdigest()[:24]
    return _item(bucket, allowed, window), f"{digest}.{int(clock() // window)}"


class _Counts:
    """The counters, for tests and checks: forget them all, or read one."""

    def clear(self) -> None:
        """Forget every count (tests start from none)."""
        _local.clear()
        if not _in_process():
            _limiter().storage.reset()

    def peek(self, bucket: str, ident: object, window: int | None = None) -> int:
        """Return the number counted for ``ident`` in ``bucket``'s current window.

        ``window`` (seconds) is accepted for the callers that name it; it must be the
        bucket's.
        """
        _, bucket_window = limit(bucket)
        assert window is None or window == bucket_window
        if _in_process():
            return _local.peek(bucket, ident, bucket_window)
        item, identifier = _counter(bucket, ident)
        return _limiter().storage.get(item.key_for(identifier))


counts = _Counts()


def _in_process() -> bool:
    """Return whether the counters live in this process (no I/O to wait for)."""
    return not settings.REDIS_URL


def limit_hit(bucket: str, ident: object, count: int = 1) -> bool:
    """Count ``count`` events of ``bucket`` for ``ident``; return whether still allowed.

    Windows are aligned to the clock, so every process agrees on when one ends. An
    event refused for the limit is counted too (wrong keys, redemptions): trying harder
    does not help. Redis errors (``redis.RedisError``) are raised.
    """
    if _in_process():
        allowed, window = limit(bucket)
        ok = _local.add(bucket, ident, window, count) <= allowed
    else:
        item, identifier = _counter(bucket, ident)
        ok = _limiter().hit(item, identifier, cost=count)
    return metrics.allowed(bucket, ok)


def limit_take(bucket: str, ident: object, count: int = 1) -> bool:
    """Take ``count`` events from ``ident``'s budget if they all fit; return ``True``.

    Unlike :func:`limit_hit`, a refused take is not counted: a phone that is told to
    retry later can send the same positions again. On Redis, ``limits``' ``test``
    decides without counting, then ``hit`` counts; a take that a concurrent one (another
    process) pushes over the limit between the two is refused and stays counted, so the
    budget is never exceeded. In this process, a take that does not fit is taken back.
    """
    allowed, window = limit(bucket)
    if _in_process():
        ok = count <= allowed and _local.add(bucket, ident, window, count) <= allowed
        if not ok and count <= allowed:
            _local.add(bucket, ident, window, -count)
    else:
        item, identifier = _counter(bucket, ident)
        limiter = _limiter()
        ok = limiter.test(item, identifier, cost=count) and limiter.hit(
            item, identifier, cost=count)
    if not ok:
        metrics.refused(bucket)
    return ok


def limit_blocked(bucket: str, ident: object) -> bool:
    """Return whether ``ident`` is over the limit of ``bucket`` (without counting)."""
    allowed, _ = limit(bucket)
    return counts.peek(bucket, ident) > allowed


async def in_cache_thread(function: Callable, *args: object) -> object:
    """Call a limiter ``function`` from the event loop: directly when the counters are in
    this process (a dict and a lock: microseconds), else in a worker thread (Redis)."""
    if _in_process():
        return function(*args)
    return await sync_to_async(function, thread_sensitive=False)(*args)


def limit_take_positions(member_id: int, count: int) -> bool:
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
