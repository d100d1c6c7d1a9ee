"""WebSocket URL routes."""

from django.urls import re_path

from .consumers import LocationConsumer

websocket_urlpatterns = [
    re_path(r"^ws/rooms/(?P<room_id>[A-Za-z0-9_-]{1,32})/$", LocationConsumer.as_asgi()),
]
