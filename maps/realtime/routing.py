"""WebSocket URL routes.

``/ws/rooms/<room_id>/`` is a member's socket, ``/ws/watch/<token>/`` a watch link's.
Every other path is accepted and closed with 4404 (no such room,
docs/protocol.md): without a route Channels' URLRouter raises, and the server answers
the handshake with a 500 and logs a traceback.
"""

from django.urls import re_path

from maps.protocol.events import CLOSE_NO_ROOM
from maps.realtime.consumers import LocationConsumer, WatchConsumer


async def not_found(scope, receive, send):
    """Accept the handshake and close at once with 4404 (an ASGI app, no consumer)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": CLOSE_NO_ROOM})


websocket_urlpatterns = [
    re_path(r"^ws/rooms/(?P<room_id>[A-Za-z0-9_-]{1,32})/$", LocationConsumer.as_asgi()),
    re_path(r"^ws/watch/(?P<token>[A-Za-z0-9_-]{1,64})/$", WatchConsumer.as_asgi()),
    re_path(r"", not_found),
]
