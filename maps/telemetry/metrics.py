"""Prometheus metrics: every metric object of geoshare, in one place.

The core counts with one cheap call where something happens (a counter's ``inc``, a
histogram's ``observe``); the gauges of open sockets and live hubs are read from the
functions the hub registers (:func:`gauge_sources`) when scraped, so the hot path does nothing for them. Labels carry only
fixed, non-personal values: ``door`` (``websocket``, ``owntracks``, ``osmand``,
``gpslogger``), ``bucket`` (a limiter bucket of ``GEOSHARE["RATE_LIMITS"]``, or
``flood``) and ``path`` (``direct`` or ``send``, :data:`SOCKET_WRITES`). Never a room
id, a member id, a name, a key or an address.

Where they are served (docs/deploy.md, "Metrics"):

- ``GEOSHARE_METRICS_PORT``: prometheus_client's own HTTP server on that port (bound to
  ``GEOSHARE_METRICS_ADDR``, default 127.0.0.1), started by the ASGI lifespan
  (:func:`start_server`); out of the proxy's reach;
- ``GEOSHARE_METRICS_TOKEN``: ``/metrics`` on the site itself, with
  ``Authorization: Bearer <token>`` (:func:`maps.web.views.metrics`);
- neither: ``/metrics`` answers 404.

Each uvicorn worker is its own process with its own registry and is scraped on its own
(its own metrics port), rather than through prometheus_client's multiprocess mode: a
geoshare worker is a separate service with its own port (systemd instance or
container), not a fork of one server, so a scrape per worker shows which worker is
unwell, its ``up`` series, and its process metrics (memory, file descriptors), with no
shared directory to wipe at each restart.
"""

import hmac
import logging

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger(__name__)

DOORS = ("websocket", "owntracks", "osmand", "gpslogger", "overland", "hauk")


OPEN_SOCKETS = Gauge(
    "geoshare_open_sockets", "WebSocket connections attached to a room hub in this process")
LIVE_HUBS = Gauge("geoshare_live_hubs", "Rooms with a live hub in this process")


def gauge_sources(*, open_sockets, live_hubs):
    """Read :data:`OPEN_SOCKETS` and :data:`LIVE_HUBS` from these functions when scraped.

    ``open_sockets()`` and ``live_hubs()`` return counts (ints). Called once by the hub
    module (maps.realtime.hub) on import: this module imports nothing of geoshare's.
    """
    OPEN_SOCKETS.set_function(open_sockets)
    LIVE_HUBS.set_function(live_hubs)


POSITIONS = Counter(
    "geoshare_positions_received", "Positions accepted and published, by door", ["door"])
#: One pre-bound child per door: ``POSITIONS_BY_DOOR["osmand"].inc(len(fixes))``.
POSITIONS_BY_DOOR = {door: POSITIONS.labels(door=door) for door in DOORS}

FRAMES_SENT = Counter(
    "geoshare_frames_sent",
    "Frames handed to sockets (a room frame counts once per socket it goes to)")
FRAME_BYTES_SENT = Counter(
    "geoshare_frame_bytes_sent", "Bytes of the frames counted by geoshare_frames_sent")

#: How a socket's outbox wrote (maps/realtime/outbox.py): ``direct``, pre-built frame
#: bytes handed to uvicorn's transport (one write carries a tick's frames), or ``send``,
#: one message through uvicorn's ASGI send (the fallback: compression on, another
#: WebSocket implementation, a paused or closing socket, or GEOSHARE_DIRECT_WRITE off,
#: the default).
WRITE_PATHS = ("direct", "send")
SOCKET_WRITES = Counter(
    "geoshare_socket_writes",
    "Socket writes by path: direct (frame bytes onto uvicorn's transport, a tick's "
    "frames in one write) or send (one message through uvicorn's ASGI send)",
    ["path"])
#: One pre-bound child per path: ``SOCKET_WRITES_BY_PATH["direct"].inc()``.
SOCKET_WRITES_BY_PATH = {path: SOCKET_WRITES.labels(path=path) for path in WRITE_PATHS}

FLUSH_SECONDS = Histogram(
    "geoshare_tick_flush_seconds",
    "Time a room hub takes to encode a tick's frames and queue them for its sockets",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
             0.25, 1.0),
)

HISTORY_BATCH = Histogram(
    "geoshare_history_batch_positions", "Positions in one history batch",
    buckets=(1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
)
HISTORY_COMMIT_SECONDS = Histogram(
    "geoshare_history_commit_seconds", "Time to write and commit one history batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
             10.0),
)
HISTORY_ERRORS = Counter(
    "geoshare_history_write_errors", "History batches that could not be written (lost)")

LAYER_ERRORS = Counter(
    "geoshare_channel_layer_errors",
    "Channel-layer (Redis) operations that failed: publish, group send, receive, heartbeat")
LAYER_RECONNECTS = Counter(
    "geoshare_channel_layer_reconnects",
    "Times a room hub found the channel layer back after failures and resynced its "
    "clients")

#: The limiter's buckets (``GEOSHARE["RATE_LIMITS"]``), the socket flood limit and the
#: export slots (maps.access.limits.ExportSlots).
BUCKETS = ("redeem", "badkey", "positions", "room", "flood", "export")
RATE_LIMITED = Counter(
    "geoshare_rate_limited",
    "Requests, frames and sockets refused by a limit, by bucket", ["bucket"])
# Every bucket's series exists from the start, at 0, so rate() sees the first refusal.
for _bucket in BUCKETS:
    RATE_LIMITED.labels(bucket=_bucket)


def text_bytes(text):
    """Return the UTF-8 size of ``text`` in bytes (cheap for ASCII, the usual frame)."""
    return len(text) if text.isascii() else len(text.encode())


def flushed(frames, size, sockets, seconds):
    """Count one hub flush: ``frames`` frames of ``size`` bytes in all, each sent to
    ``sockets`` sockets, taking ``seconds``."""
    if frames and sockets:
        FRAMES_SENT.inc(frames * sockets)
        FRAME_BYTES_SENT.inc(size * sockets)
    FLUSH_SECONDS.observe(seconds)


def sent_one(text):
    """Count one frame of ``text`` sent to one socket (a snapshot)."""
    FRAMES_SENT.inc()
    FRAME_BYTES_SENT.inc(text_bytes(text))


def history_written(positions, seconds):
    """Count one history batch of ``positions`` rows written in ``seconds``."""
    HISTORY_BATCH.observe(positions)
    HISTORY_COMMIT_SECONDS.observe(seconds)


def refused(bucket):
    """Count one refusal by the limiter ``bucket`` (``"badkey"``, ``"flood"``, ...)."""
    RATE_LIMITED.labels(bucket=bucket).inc()


def allowed(bucket, ok):
    """Return ``ok``, counting a refusal of ``bucket`` when it is false."""
    if not ok:
        refused(bucket)
    return ok


def exposition():
    """Return ``(body bytes, content type)``: this process's metrics in Prometheus'
    text format."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def token_matches(header, token):
    """Return whether an ``Authorization`` header is ``Bearer <token>`` (constant time)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip() or not token:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def start_server(port, addr):
    """Serve ``/metrics`` with prometheus_client's HTTP server on ``addr``:``port``.

    Runs in a daemon thread; returns the server (call ``shutdown()`` to stop it).
    Raises ``OSError`` when the port cannot be bound.
    """
    server, _thread = start_http_server(port, addr=addr)
    log.info("metrics: serving on %s:%d", addr, port)
    return server
