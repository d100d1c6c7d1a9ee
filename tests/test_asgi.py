"""The WebSocket entrance (geoshare.asgi, maps.realtime.routing): origin check, unknown paths."""

import pytest
from channels.testing import WebsocketCommunicator

from geoshare.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def _handshake(path, headers, scheme="ws"):
    """Return ``(accepted, close code)`` of a handshake and close the socket."""
    communicator = WebsocketCommunicator(application, path, headers=headers)
    communicator.scope["scheme"] = scheme
    try:
        connected, code = await communicator.connect(timeout=3)
        if connected:
            code = (await communicator.receive_output(3)).get("code")
        return connected, code
    finally:
        await communicator.disconnect()


def _headers(origin, host="127.0.0.1:8000"):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return headers


# -- origin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://127.0.0.1:9999", "127.0.0.1:8000", "ws"),  # another port
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "ws"),  # another scheme
        ("http://localhost:8000", "127.0.0.1:8000", "ws"),  # another allowed host
        ("http://evil.example", "127.0.0.1:8000", "ws"),
        ("http://127.0.0.1:8000.evil.example", "127.0.0.1:8000", "ws"),
        ("null", "127.0.0.1:8000", "ws"),
        ("", "127.0.0.1:8000", "ws"),
        ("http://127.0.0.1", "127.0.0.1:8000", "ws"),
        ("http://localhost", "localhost", "wss"),  # ws origin for a wss socket
        # The origin matches the Host, but the Host is not ours (DNS rebinding).
        ("http://evil.example:8000", "evil.example:8000", "ws"),
        ("http://127.0.0.1:8000", "", "ws"),
    ],
)
async def test_browser_handshake_from_another_origin_is_refused(
    room, member_key, origin, host, scheme
):
    path = f"/ws/rooms/{room.public_id}/?key={member_key}"
    assert await _handshake(path, _headers(origin, host), scheme) == (False, 1000)


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws"),
        ("HTTP://127.0.0.1:8000", "127.0.0.1:8000", "ws"),
        ("http://localhost", "localhost:80", "ws"),  # default ports are the same origin
        ("http://localhost:80", "localhost", "ws"),
        ("https://localhost", "localhost:443", "wss"),
        ("https://localhost:8443", "localhost:8443", "wss"),
        ("http://[::1]:8000", "[::1]:8000", "ws"),
    ],
)
async def test_browser_handshake_from_the_site_itself_is_accepted(
    room, member_key, origin, host, scheme, hubs
):
    path = f"/ws/rooms/{room.public_id}/?key={member_key}"
    communicator = WebsocketCommunicator(application, path, headers=_headers(origin, host))
    communicator.scope["scheme"] = scheme
    connected, _ = await communicator.connect(timeout=3)
    try:
        assert connected
        assert (await communicator.receive_json_from(3))["type"] == "snapshot"
    finally:
        await communicator.disconnect()


async def test_trusted_origins_are_accepted(room, member_key, settings, hubs):
    settings.CSRF_TRUSTED_ORIGINS = ["https://maps.example.org", "https://*.example.net"]
    path = f"/ws/rooms/{room.public_id}/?key={member_key}"
    for origin in ("https://maps.example.org", "https://a.example.net"):
        communicator = WebsocketCommunicator(application, path,
                                             headers=_headers(origin, "localhost:8000"))
        connected, _ = await communicator.connect(timeout=3)
        assert connected, origin
        await communicator.disconnect()
    refused = _headers("https://maps.example.org.evil", "localhost:8000")
    assert await _handshake(path, refused) == (False, 1000)
    # A trusted origin does not make an unknown Host acceptable.
    refused = _headers("https://maps.example.org", "maps.example.org")
    assert await _handshake(path, refused) == (False, 1000)


async def test_handshake_without_origin_still_needs_a_key(room, member_key, hubs):
    path = f"/ws/rooms/{room.public_id}/"
    assert await _handshake(path, _headers(None)) == (True, 4401)
    communicator = WebsocketCommunicator(application, f"{path}?key={member_key}",
                                         headers=_headers(None, "anything.example"))
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    await communicator.disconnect()


# -- unknown paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ws/rooms/" + "a" * 34 + "/",
        "/ws/rooms/",
        "/ws/rooms/abc",
        "/ws/rooms/abc/extra/",
        "/ws/whatever/",
        "/",
        "/admin/",
    ],
)
async def test_unknown_socket_path_is_closed_with_4404(path):
    assert await _handshake(path, _headers(None)) == (True, 4404)
    assert await _handshake(path, _headers("http://127.0.0.1:8000")) == (True, 4404)
