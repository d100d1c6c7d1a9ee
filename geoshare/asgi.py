"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Browser WebSockets must come from this site itself (:func:`origin_allowed`,
docs/security.md); a client with a device key (``?key=``) sends no Origin header and
authenticates with its key instead.
"""

import asyncio
import gc
import os
from urllib.parse import urlsplit

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "geoshare.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402

from geoshare import uvicorn_upgrade  # noqa: E402
from maps.access.keycache import listen as keys_listen  # noqa: E402
from maps.ingest.front import front  # noqa: E402
from maps.ops.demo import demo_walker  # noqa: E402
from maps.ops.maintenance import maintenance_loop  # noqa: E402
from maps.realtime.routing import websocket_urlpatterns  # noqa: E402
from maps.storage.history import history_writer  # noqa: E402
from maps.telemetry import metrics  # noqa: E402


def start_metrics_server():
    """Start the metrics server on ``GEOSHARE_METRICS_PORT`` if set; return it or ``None``.

    Raises ``OSError`` when the port cannot be bound.
    """
    port = settings.GEOSHARE["METRICS_PORT"]
    if not port:
        return None
    return metrics.start_server(port, settings.GEOSHARE["METRICS_ADDR"])


async def lifespan(scope, receive, send):
    """ASGI lifespan: start the maintenance loop and the key cache's listener
    (maps.access.keycache) (and the metrics server, if asked for;
    and the demo walker, maps.ops.demo, unless ``GEOSHARE_DEMO_WALKER=0``); on shutdown,
    write buffered history.

    uvicorn closes the sockets first, then sends ``lifespan.shutdown``; the history
    still buffered is written then, so a graceful stop loses nothing. A metrics port
    that cannot be bound fails the start (``lifespan.startup.failed``): uvicorn then
    exits instead of serving without the metrics it was asked for.
    """
    maintenance = keys = walker = metrics_server = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                metrics_server = start_metrics_server()
            except OSError as exc:
                await send({"type": "lifespan.startup.failed", "message":
                            f"cannot serve metrics on port "
                            f"{settings.GEOSHARE['METRICS_PORT']}: {exc}"})
                return
            maintenance = asyncio.get_running_loop().create_task(maintenance_loop())
            keys = asyncio.get_running_loop().create_task(keys_listen())
            if settings.GEOSHARE["DEMO_WALKER"]:
                walker = asyncio.get_running_loop().create_task(demo_walker())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for task in (maintenance, keys, walker):
                if task is not None:
                    task.cancel()
            await history_writer().flush()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            await send({"type": "lifespan.shutdown.complete"})
            return


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_parts(origin):
    """Return ``(scheme, host, port)`` of a serialized origin, or ``None`` if not one.

    ``origin`` is ``scheme://host[:port]`` (RFC 6454 section 6.2); the scheme and host
    are lowercased and a missing port is the scheme's default, so that
    ``http://h`` and ``http://h:80`` compare equal. ``"null"``, paths, user
    information and schemes other than http and https are not origins here.
    """
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:  # a port that is not a number, an unbalanced "["
        return None
    scheme = parts.scheme.lower()
    if (scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None
            or parts.path or parts.query or parts.fragment):
        return None
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme]


def _trusted(origin):
    """Return whether ``origin`` (parts) is listed in ``CSRF_TRUSTED_ORIGINS``.

    Entries are read as Django's CSRF check reads them: ``https://*.example.org``
    admits the subdomains of example.org on the same scheme and port.
    """
    scheme, host, port = origin
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        wildcard = "://*." in entry
        parts = _origin_parts(entry.replace("://*.", "://", 1) if wildcard else entry)
        if parts is None:
            continue
        if parts == origin or (wildcard and (parts[0], parts[2]) == (scheme, port)
                               and host.endswith("." + parts[1])):
            return True
    return False


def origin_allowed(scope):
    """Return whether a WebSocket handshake (an ASGI ``scope``) may go on.

    A handshake without an Origin header does not come from a browser page (browsers
    always send one), and goes on: it must then carry a device key to get anywhere.
    A browser's must come from the site it connects to: its Host header must be
    allowed by ``ALLOWED_HOSTS``, and its Origin must equal ``scheme://Host`` (http
    for ``ws``, https for ``wss``, default ports normalised) or be listed in
    ``CSRF_TRUSTED_ORIGINS``. Another port or scheme is another origin (RFC 6454).
    Not channels' ``OriginValidator``: it compares the Origin with a fixed list, not
    with each handshake's Host (docs/security.md).
    """
    headers = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.lower(), value)
    if b"origin" not in headers:
        return True
    origin = _origin_parts(headers[b"origin"].decode("latin-1").strip())
    host = headers.get(b"host", b"").decode("latin-1").strip()
    domain, _ = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:  # as Django's HttpRequest.get_host()
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    if origin is None or not domain or not validate_host(domain, allowed_hosts):
        return False
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return origin == _origin_parts(f"{scheme}://{host}") or _trusted(origin)


async def _refuse(scope, receive, send):
    """Refuse the handshake: close before accepting, which servers answer with 403."""
    await receive()  # websocket.connect
    await send({"type": "websocket.close"})


def origin_checked(inner):
    """Wrap the WebSocket app: handshakes that fail :func:`origin_allowed` are refused."""

    async def app(scope, receive, send):
        if not origin_allowed(scope):
            return await _refuse(scope, receive, send)
        return await inner(scope, receive, send)

    return app


# A closed WebSocket is freed by reference counting: uvicorn's HTTP protocol would keep
# every upgraded connection in a cycle (geoshare/uvicorn_upgrade.py, issue 31).
uvicorn_upgrade.install()

# Each open socket keeps a few hundred long-lived objects (its consumer, tasks, queues,
# protocol state); with thousands of sockets the collector's full passes over them
# stalled the event loop for hundreds of milliseconds (make bench S2). Everything
# imported so far lives as long as the process: move it out of the collector's way, and
# collect the young generation less often.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 100)

application = ProtocolTypeRouter(
    {
        # The phone doors skip Django's request handler (maps/ingest/front.py).
        "http": front(django_asgi_app),
        "lifespan": lifespan,
        # Cookies only: the consumer reads the session once, to authenticate, and never
        # writes it, so Channels' session middleware (which wraps every send) is not used.
        "websocket": origin_checked(CookieMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
