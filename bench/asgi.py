"""One ASGI app serving geoshare and both benchmark controls from one uvicorn.

Routes by path:

- ``/ws/naive/<room>/?member=<n>``: the floor, ``bench.naive`` (Channels tutorial design);
- ``/ws/bare/<room>/?member=<n>``: the ceiling, ``bench.bare`` (no Django, no Channels);
- ``/bare/ingest/osmand/``, ``/bare/ingest/owntracks/``: the phone doors' ceiling,
  ``bench.bare.http_application`` (parse the request, answer 200, nothing else);
- everything else: geoshare itself, ``geoshare.asgi:application``
  (``/ws/rooms/<room_id>/?key=<device key>``).

Run it as ``uvicorn bench.asgi:application``. ``DJANGO_SETTINGS_MODULE`` defaults to
``geoshare.settings``; the naive control gets its own channel layer (see
``bench.naive.configure_layer``). With
``BENCH_NO_GEOSHARE=1`` geoshare is not imported and Django is configured with only
what the naive control needs (the in-memory layer): for working on the controls alone.
"""

from __future__ import annotations

import os

from bench import bare

if os.environ.get("BENCH_NO_GEOSHARE"):
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["channels"],
            DATABASES={},
            CHANNEL_LAYERS={
                "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
            },
        )
    django.setup()
    geoshare_application = None
else:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "geoshare.settings")
    from geoshare.asgi import application as geoshare_application

from bench import naive  # noqa: E402 - needs Django set up first

naive.configure_layer()


async def application(scope, receive, send):
    """Dispatch on the path: naive, bare, or geoshare."""
    path = scope.get("path", "")
    if scope["type"] == "websocket":
        if path.startswith("/ws/naive/"):
            return await naive.application(scope, receive, send)
        if path.startswith("/ws/bare/"):
            return await bare.application(scope, receive, send)
    elif scope["type"] == "http" and path.startswith("/bare/ingest/"):
        return await bare.http_application(scope, receive, send)
    if geoshare_application is None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raise ValueError(f"geoshare is not loaded (BENCH_NO_GEOSHARE): {path}")
    return await geoshare_application(scope, receive, send)
