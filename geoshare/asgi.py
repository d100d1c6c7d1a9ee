"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Browser WebSockets must come from an allowed host (``AllowedHostsOriginValidator``,
docs/security.md); a client with a device key (``?key=``) sends no Origin header and
authenticates with its key instead.
"""

import asyncio
import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "geoshare.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels.sessions import CookieMiddleware  # noqa: E402

from maps.history import history_writer  # noqa: E402
from maps.maintenance import maintenance_loop  # noqa: E402
from maps.routing import websocket_urlpatterns  # noqa: E402


async def lifespan(scope, receive, send):
    """ASGI lifespan: start the maintenance loop; on shutdown, write buffered history.

    uvicorn closes the sockets first, then sends ``lifespan.shutdown``; the history
    still buffered is written then, so a graceful stop loses nothing.
    """
    maintenance = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            maintenance = asyncio.get_running_loop().create_task(maintenance_loop())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if maintenance is not None:
                maintenance.cancel()
            await history_writer().flush()
            await send({"type": "lifespan.shutdown.complete"})
            return


def origin_checked(inner):
    """Check the Origin of browser handshakes; let keyed, Origin-less clients through.

    Browsers always send Origin on a WebSocket handshake, so a request without one is
    not a cross-site page; it must then carry a device key to get anywhere.
    """
    validated = AllowedHostsOriginValidator(inner)

    async def app(scope, receive, send):
        headers = dict(scope.get("headers", ()))
        if b"origin" not in headers:
            return await inner(scope, receive, send)
        return await validated(scope, receive, send)

    return app


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
        "http": django_asgi_app,
        "lifespan": lifespan,
        # Cookies only: the consumer reads the session once, to authenticate, and never
        # writes it, so Channels' session middleware (which wraps every send) is not used.
        "websocket": origin_checked(CookieMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
