"""The floor control: a room consumer built the way the Channels tutorial builds chat.

Every socket joins a channel-layer group on connect; every received position is one
``group_send``; the group handler JSON-encodes the message for its own recipient and
sends it at once. No tick, no coalescing, no auth: the usual design, as a baseline.

URL: ``/ws/naive/<room>/?member=<n>``. Each group message becomes one ``positions``
frame with one position (docs/protocol.md):
``{"type": "positions", "positions": [{"member", "lat", "lon", "ts"}]}``.
Its channel layer is the alias ``naive`` (:func:`configure_layer`): channels' stock
``InMemoryChannelLayer`` with its default configuration, as the tutorial's in-memory
setup has it, unless the settings' default layer is channels_redis, which it then
shares.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

LAYER_ALIAS = "naive"


def configure_layer() -> None:
    """Add the ``naive`` alias to ``settings.CHANNEL_LAYERS`` (before first use).

    geoshare's embedded layer is tuned for its hubs; the floor must be the usual
    design, so it gets channels' own in-memory layer, untuned.
    """
    from django.conf import settings  # after django.setup()

    layers = settings.CHANNEL_LAYERS
    default = layers.get("default", {})
    if "redis" in default.get("BACKEND", "").lower():
        layers[LAYER_ALIAS] = default
    else:
        layers[LAYER_ALIAS] = {"BACKEND": "channels.layers.InMemoryChannelLayer"}


class NaiveRoomConsumer(AsyncWebsocketConsumer):
    """The Channels tutorial's ``ChatConsumer``, carrying positions instead of chat."""

    channel_layer_alias = LAYER_ALIAS

    async def connect(self):
        room = self.scope["url_route"]["kwargs"]["room"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        member = (query.get("member") or ["0"])[0]
        self.member = int(member) if member.isdigit() else member
        self.group_name = f"naive.{room}"
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = json.loads(text_data or bytes_data)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("type") != "position":
            return
        ts = frame.get("ts")
        await self.channel_layer.group_send(
            self.group_name,
            {
                "type": "room.position",
                "member": self.member,
                "lat": frame.get("lat"),
                "lon": frame.get("lon"),
                "ts": ts if ts is not None else int(time.time() * 1000),
            },
        )

    async def room_position(self, event):
        position = {
            "member": event["member"],
            "lat": event["lat"],
            "lon": event["lon"],
            "ts": event["ts"],
        }
        await self.send(
            text_data=json.dumps({"type": "positions", "positions": [position]})
        )


consumer = NaiveRoomConsumer.as_asgi()


async def application(scope, receive, send):
    """ASGI app for ``/ws/naive/<room>/?member=<n>``."""
    parts = [p for p in scope["path"].split("/") if p]
    if scope["type"] != "websocket" or len(parts) != 3 or parts[:2] != ["ws", "naive"]:
        raise ValueError(f"no naive route for {scope['type']} {scope['path']}")
    scope = dict(scope, url_route={"args": (), "kwargs": {"room": parts[2]}})
    return await consumer(scope, receive, send)
