"""Per-client-address limits on guessing: invite redemption and device-key failures.

A fixed window on Django's cache (``cache.add`` then ``cache.incr``, both atomic on the
local-memory and Redis backends), so several processes share the count when the cache is
Redis. Keys hold a hash of the address, never a token or a key.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache


def client_address(scope_or_request):
    """Return the client's IP address from an ASGI scope or a Django request."""
    if isinstance(scope_or_request, dict):
        client = scope_or_request.get("client") or ("unknown", 0)
        return str(client[0])
    return scope_or_request.META.get("REMOTE_ADDR", "unknown")


def _key(bucket, address):
    digest = hashlib.sha256(address.encode()).hexdigest()[:24]
    return f"geoshare:rl:{bucket}:{digest}"


def limit(bucket):
    """Return ``(max hits, window seconds)`` of a bucket from ``GEOSHARE["RATE_LIMITS"]``."""
    return settings.GEOSHARE["RATE_LIMITS"][bucket]


def hit(bucket, address):
    """Count one event of ``bucket`` for ``address``; return ``True`` while under the limit.

    ``bucket`` is ``"redeem"`` (invite redemptions) or ``"badkey"`` (device-key failures).
    """
    allowed, window = limit(bucket)
    key = _key(bucket, address)
    if cache.add(key, 1, timeout=window):
        return True
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return True
    return count <= allowed


def blocked(bucket, address):
    """Return whether ``address`` is over the limit of ``bucket`` (without counting)."""
    allowed, _ = limit(bucket)
    return (cache.get(_key(bucket, address)) or 0) > allowed
