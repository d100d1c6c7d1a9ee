"""A closed socket is freed by reference counting (issue 31 item 1).

With ``gc`` off, whatever a closed socket leaves in a reference cycle stays: the slow
test opens and closes 1,000 sockets on a real uvicorn that serves
``tests.gc_probe_asgi:application`` (geoshare's application with the collector
disabled, and a probe that counts live consumers and outboxes by weak reference) and
finds none left, and the objects the collector tracks about where they were. The quick
ones hold the outbox's own part, and the fence around uvicorn's
(geoshare/uvicorn_upgrade.py), without a server.
"""

import asyncio
import contextlib
import gc
import inspect
import weakref

import httpx
import orjson
import pytest
import websockets
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from geoshare import uvicorn_upgrade
from maps.realtime.outbox import Outbox
from tests.servers import Project, Uvicorn, until

#: Sockets opened and closed, one after the other, each after its snapshot came.
CYCLES = 1_000
#: Sockets opened before the baseline: the first ones create what lives as long as the
#: process (the room's hub, the key cache's entry, lazily built module state).
WARM_UP = 20
#: How many more objects the collector may track after the cycles than before. Measured
#: (docs/benchmarks.md, "Memory under reconnects"): 16 more after 1,000 cycles with the
#: cycles broken, 96,000 with none broken and 28,000 with only geoshare's. 2,000 is
#: two objects a cycle: far under what one socket left (28 or 96), far over the noise.
MAX_GROWTH = 2_000


@contextlib.contextmanager
def collector_off():
    """Disable ``gc`` for the block (re-enabled after, if it was on)."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Consumer:
    """What the outbox is given by LocationConsumer: its bound ``close`` and a
    closure over it as ``on_closed``, while it holds the outbox."""

    def __init__(self, send):
        self.closed_with = None
        self.outbox = Outbox(send=send, close=self.close, snapshot=lambda: None,
                             member_id=1, via_key=None, address="192.0.2.1",
                             max_pending=10, on_closed=lambda: self.detached())

    async def close(self, code):
        self.closed_with = code

    def detached(self):
        pass


async def send(message):
    pass


async def test_a_stopped_outbox_frees_its_consumer_without_a_collection():
    with collector_off():
        consumer = Consumer(send)
        consumer.outbox.start()
        await asyncio.sleep(0)  # the writer waits on its wake-up future
        consumer.outbox.push({"type": "websocket.send", "text": "a"})
        gone = weakref.ref(consumer)
        box = weakref.ref(consumer.outbox)
        consumer.outbox.stop()
        del consumer
        await asyncio.sleep(0)  # the writer's task sees its cancellation
        assert gone() is None
        assert box() is None


async def test_an_outbox_closed_by_the_hub_frees_its_consumer_once_closed():
    with collector_off():
        consumer = Consumer(send)
        consumer.outbox.start()
        await asyncio.sleep(0)
        consumer.outbox.close_now(4429)
        gone = weakref.ref(consumer)
        box = weakref.ref(consumer.outbox)
        await until(lambda: gone().closed_with == 4429)
        del consumer
        await asyncio.sleep(0)  # the close task's done callbacks
        assert gone() is None
        assert box() is None


def test_uvicorn_still_has_what_the_upgrade_fix_wraps():
    """Fails when uvicorn changes what geoshare/uvicorn_upgrade.py relies on."""
    uvicorn_upgrade.install()
    uvicorn_upgrade.install()
    wrapped = HttpToolsProtocol.handle_websocket_upgrade
    assert wrapped.drops_parser
    assert "handle_websocket_upgrade" in inspect.getsource(wrapped.__wrapped__)
    assert "self.parser = httptools.HttpRequestParser(self)" in inspect.getsource(
        HttpToolsProtocol.__init__)
    assert "self.handle_websocket_upgrade()" in inspect.getsource(
        HttpToolsProtocol.data_received)


async def cycle(url):
    """Open a socket, wait for its snapshot, close it."""
    async with websockets.connect(url) as socket:
        async with asyncio.timeout(10):
            while orjson.loads(await socket.recv())["type"] != "snapshot":
                pass


@pytest.mark.slow
async def test_closed_sockets_leave_nothing_for_the_collector(tmp_path):
    project = Project(tmp_path).migrate()
    room, members = project.make_room(members=("Ana",))
    with Uvicorn(project, app="tests.gc_probe_asgi:application", access_log=False,
                 log_level="warning") as server:
        url = f"{server.ws_url}/ws/rooms/{room}/?key={members['Ana']['key']}"
        async with httpx.AsyncClient(base_url=server.http) as http:

            async def probe(path=""):
                return (await http.get(f"/_gc/{path}")).json()

            async def all_freed(path=""):
                counts = await probe(path)
                return counts if counts["consumers"] == counts["outboxes"] == 0 else None

            for _ in range(WARM_UP):
                await cycle(url)
            # The client's close may come back before the server's disconnect ran.
            before = await until(lambda: all_freed("collect"), timeout=10, interval=0.05)
            assert not before["enabled"]
            for _ in range(CYCLES):
                await cycle(url)
            after = await until(all_freed, timeout=10, interval=0.05)
            # No collection ran in the server: the counts are reference counting's.
            assert not after["enabled"]
            growth = after["objects"] - before["objects"]
            print(f"objects tracked: {before['objects']} -> {after['objects']} after "
                  f"{CYCLES} sockets, {growth / CYCLES:.3f} a socket")
            assert growth < MAX_GROWTH, (before, after)
