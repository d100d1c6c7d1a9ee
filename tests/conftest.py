"""Shared fixtures: named personas in one room, and a stranger in another.

- ``room``: a room owned by ``owner`` (browser-style member, no key);
- ``member`` / ``member_key``: a member with a device key;
- ``other`` / ``other_key``: a second member with a key;
- ``viewer`` / ``viewer_key``: a viewer with a key;
- ``stranger`` / ``stranger_key``: a member of another room.

Their names are ``tests.servers.PERSONAS``, which real-process tests create in their
own database with ``Project.personas()``.
"""

import asyncio

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from geoshare.asgi import application
from maps.models import Role
from maps.realtime.hub import registry
from maps.services import member_create, room_create
from maps.storage.history import history_writer
from tests.servers import PERSONAS

pytest_plugins = ["tests.browser_fixtures"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the cache, export slots in memory; each test starts
    from none."""
    from django.core.cache import cache

    from maps.access.limits import counts, export_slots

    cache.clear()
    counts.clear()
    export_slots.clear()
    yield
    cache.clear()
    counts.clear()
    export_slots.clear()


@pytest.fixture(autouse=True)
def _fresh_owntracks_friends():
    """OwnTracks friends answers are kept per room and per device in process memory
    (maps.ingest.friends); ids come back after a rolled-back test, so each starts from none."""
    from maps.ingest import friends

    friends.rooms.clear()
    friends.throttle.clear()
    yield
    friends.rooms.clear()
    friends.throttle.clear()


@pytest.fixture
def room_and_owner(db):
    return room_create(name=PERSONAS["room"], owner_name=PERSONAS["owner"])


@pytest.fixture
def room(room_and_owner):
    return room_and_owner[0]


@pytest.fixture
def owner(room_and_owner):
    return room_and_owner[1]


@pytest.fixture
def member_and_key(room):
    return member_create(room=room, name=PERSONAS["member"], role=Role.MEMBER)


@pytest.fixture
def member(member_and_key):
    return member_and_key[0]


@pytest.fixture
def member_key(member_and_key):
    return member_and_key[1]


@pytest.fixture
def other_and_key(room):
    return member_create(room=room, name=PERSONAS["other"], role=Role.MEMBER)


@pytest.fixture
def other(other_and_key):
    return other_and_key[0]


@pytest.fixture
def other_key(other_and_key):
    return other_and_key[1]


@pytest.fixture
def viewer_and_key(room):
    return member_create(room=room, name=PERSONAS["viewer"], role=Role.VIEWER)


@pytest.fixture
def viewer(viewer_and_key):
    return viewer_and_key[0]


@pytest.fixture
def viewer_key(viewer_and_key):
    return viewer_and_key[1]


@pytest.fixture
def stranger_and_key(db):
    elsewhere, _ = room_create(
        name=PERSONAS["elsewhere"], owner_name=PERSONAS["elsewhere_owner"]
    )
    return member_create(room=elsewhere, name=PERSONAS["stranger"])


@pytest.fixture
def stranger_key(stranger_and_key):
    return stranger_and_key[1]


@pytest.fixture
async def hubs():
    """The event loop's hub registry, closed (and the layer flushed) after the test."""
    hub_registry = registry()
    yield hub_registry
    await history_writer().flush()
    await hub_registry.close()
    await get_channel_layer().flush()


class Client:
    """A ``WebsocketCommunicator`` with helpers for geoshare's JSON frames."""

    def __init__(self, path, headers=None):
        self.communicator = WebsocketCommunicator(application, path, headers=headers or [])

    async def connect(self):
        connected, code = await self.communicator.connect()
        return connected, code

    async def send(self, frame):
        await self.communicator.send_json_to(frame)

    async def send_text(self, text):
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def receive(self, timeout=2):
        return await self.communicator.receive_json_from(timeout=timeout)

    async def receive_type(self, kind, timeout=2):
        """Return the next frame of type ``kind``, skipping others."""
        while True:
            frame = await self.receive(timeout)
            if frame["type"] == kind:
                return frame

    async def nothing(self, timeout=0.3, kinds=("positions", "stopped", "removed")):
        """Return True when no frame of ``kinds`` arrives within ``timeout`` seconds.

        Presence frames (members coming and going) are allowed through.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            if await self.communicator.receive_nothing(timeout=left):
                return True
            frame = await self.receive()
            if frame["type"] in kinds:
                return False
        return True

    async def handled(self, timeout=2):
        """Send a ``ping`` and wait for its ``pong``: every frame sent before it has been
        handled (a consumer handles one frame at a time), its events sent. Frames
        received meanwhile are returned."""
        await self.send({"type": "ping"})
        frames = []
        while (frame := await self.receive(timeout))["type"] != "pong":
            frames.append(frame)
        return frames

    async def frames_until(self, marker, timeout=2):
        """Return the frames received up to and including the first one for which
        ``marker(frame)`` is true: the later message an absence is proved by."""
        frames = []
        while True:
            frames.append(await self.receive(timeout))
            if marker(frames[-1]):
                return frames

    async def close_code(self, timeout=2):
        """Return the close code of a socket the server closes (frames before it skipped)."""
        while True:
            message = await self.communicator.receive_output(timeout)
            if message["type"] == "websocket.close":
                return message.get("code")

    async def disconnect(self):
        await self.communicator.disconnect()


def about(frames, member_id, kinds=("positions", "stopped", "removed")):
    """Return the frames of ``kinds`` that are about member ``member_id``."""
    return [frame for frame in frames if frame["type"] in kinds and (
        frame.get("member") == member_id
        or any(p["member"] == member_id for p in frame.get("positions", ())))]


def position_of(member_id):
    """A marker for :meth:`Client.frames_until`: a ``positions`` frame with the member's."""
    return lambda frame: frame["type"] == "positions" and any(
        p["member"] == member_id for p in frame["positions"])


@pytest.fixture
async def connect(hubs):
    """Open WebSocket clients on a room (``await connect(room, key=...)``); close after."""
    clients = []

    async def open_client(room, key=None, headers=None, expect_snapshot=True):
        path = f"/ws/rooms/{room.public_id}/"
        if key is not None:
            path += f"?key={key}"
        client = Client(path, headers=headers)
        clients.append(client)
        connected, _ = await client.connect()
        assert connected
        if expect_snapshot:
            client.snapshot = await client.receive_type("snapshot")
        return client

    yield open_client
    for client in clients:
        try:
            await client.disconnect()
        except Exception:
            pass
