"""geoshare's ASGI application with the garbage collector off and a probe (tests only).

Served by tests/test_memory.py as ``tests.gc_probe_asgi:application`` in a uvicorn
subprocess: with ``gc`` disabled, whatever a closed socket leaves in a reference cycle
stays, so the probe's counts show it (issue 31 item 1). Production code is untouched:
the consumers and outboxes are counted by wrapping their ``__init__`` here, into
``weakref.WeakSet``s, which keep nothing alive.

``GET /_gc/`` answers JSON: ``consumers`` and ``outboxes`` (live
:class:`~maps.realtime.consumers.LocationConsumer` and
:class:`~maps.realtime.outbox.Outbox` instances, by weak reference), ``objects``
(``len(gc.get_objects())``, the objects the collector tracks, the frozen ones left out)
and ``enabled`` (``gc.isenabled()``). ``GET /_gc/collect`` runs one full collection
first (the test's baseline). ``GET /_gc/garbage`` collects with ``gc.DEBUG_SAVEALL`` and
answers what was in cycles, by type, most first (for finding the cycles, not for the
test's assertions).
"""

import collections
import gc
import weakref

import orjson

from geoshare.asgi import application as geoshare_application
from maps.realtime.consumers import LocationConsumer
from maps.realtime.outbox import Outbox

CONSUMERS: "weakref.WeakSet[LocationConsumer]" = weakref.WeakSet()
OUTBOXES: "weakref.WeakSet[Outbox]" = weakref.WeakSet()

_consumer_init = LocationConsumer.__init__
_outbox_init = Outbox.__init__


def _tracked_consumer_init(self, *args, **kwargs):
    _consumer_init(self, *args, **kwargs)
    CONSUMERS.add(self)


def _tracked_outbox_init(self, *args, **kwargs):
    _outbox_init(self, *args, **kwargs)
    OUTBOXES.add(self)


LocationConsumer.__init__ = _tracked_consumer_init  # type: ignore[method-assign]
Outbox.__init__ = _tracked_outbox_init  # type: ignore[method-assign]

# geoshare.asgi collected and froze what it imported; from here on nothing is collected.
gc.disable()


def counts():
    """Return the probe's counts (see the module's docstring)."""
    return {
        "consumers": len(CONSUMERS),
        "outboxes": len(OUTBOXES),
        "objects": len(gc.get_objects()),
        "enabled": gc.isenabled(),
    }


def garbage(top=40):
    """Collect once, keeping what was found in cycles; return ``{type name: count}``."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    return {"total": sum(found.values()), "types": dict(found.most_common(top))}


async def _answer(send, body):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


async def application(scope, receive, send):
    """geoshare's application, but ``/_gc/...`` (HTTP) answers the probe."""
    path = scope.get("path", "")
    if scope["type"] == "http" and path.startswith("/_gc/"):
        if path == "/_gc/garbage":
            return await _answer(send, garbage())
        if path == "/_gc/collect":
            gc.collect()
        return await _answer(send, counts())
    return await geoshare_application(scope, receive, send)
