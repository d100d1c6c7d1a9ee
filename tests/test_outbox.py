"""A socket's outgoing side (maps.realtime.outbox): written at once when it can be, in order
always, bounded when the client stops reading."""

import asyncio

import pytest

from maps.realtime.outbox import Outbox


def text(value):
    return {"type": "websocket.send", "text": value}


@pytest.fixture(autouse=True)
def direct_write_on(settings):
    """Direct writes on (off by default), for the tests of them; a test turns it off
    again with the ``settings`` fixture."""
    settings.GEOSHARE = {**settings.GEOSHARE, "DIRECT_WRITE": True}


def outbox(send, max_pending=10):
    box = Outbox(send=send, close=None, snapshot=lambda: text("snapshot"), member_id=1,
                 via_key=None, address="192.0.2.1", max_pending=max_pending)
    box.start()
    return box


async def test_an_idle_socket_is_written_before_push_returns():
    sent = []

    async def send(message):
        sent.append(message["text"])

    box = outbox(send)
    await asyncio.sleep(0)
    box.push(text("a"))
    assert sent == ["a"]  # no turn of the loop in between
    box.push(text("b"))
    assert sent == ["a", "b"]
    box.stop()


async def test_a_send_that_waits_keeps_the_order_and_never_overlaps():
    sent = []
    paused = asyncio.Event()
    in_flight = 0

    async def send(message):
        nonlocal in_flight
        in_flight += 1
        assert in_flight == 1, "two sends at once on one socket"
        if message["text"] == "slow":
            await paused.wait()  # the transport is paused
        await asyncio.sleep(0)
        sent.append(message["text"])
        in_flight -= 1

    box = outbox(send)
    await asyncio.sleep(0)
    box.push(text("slow"))
    for name in ("1", "2", "3"):
        box.push(text(name))
    await asyncio.sleep(0.01)
    assert sent == [] and len(box) == 3
    paused.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert sent == ["slow", "1", "2", "3"]
    box.push(text("4"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sent[-1] == "4" and len(box) == 0
    box.stop()


async def test_a_tick_of_several_messages_keeps_its_order_behind_a_waiting_send():
    sent = []
    paused = asyncio.Event()

    async def send(message):
        if message["text"] == "slow":
            await paused.wait()
        sent.append(message["text"])

    box = outbox(send)
    await asyncio.sleep(0)
    # No direct writer here (not a uvicorn socket): each message the ASGI way.
    box.push_all([text("a"), text("b")])
    assert sent == ["a", "b"]
    box.push(text("slow"))
    box.push_all([text("c"), text("d")])
    assert sent == ["a", "b"] and len(box) == 2
    paused.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert sent == ["a", "b", "slow", "c", "d"]
    box.stop()


async def test_a_client_that_never_reads_gets_a_snapshot_not_a_backlog():
    async def never(message):
        await asyncio.Event().wait()

    box = outbox(never, max_pending=3)
    await asyncio.sleep(0)
    for n in range(10):
        box.push(text(str(n)))
    assert len(box) <= 3
    assert box._box[0]["text"] == "snapshot"
    box.stop()
    await asyncio.sleep(0)
    assert box.closing


async def test_a_resync_replaces_the_backlog_with_a_snapshot_and_what_follows_it():
    sent = []
    release = asyncio.Event()

    async def send(message):
        await release.wait()
        sent.append(message["text"])

    box = Outbox(send=send, close=None, snapshot=lambda: text("snapshot"), member_id=1,
                 via_key=None, address="192.0.2.1", max_pending=10,
                 after_snapshot=lambda: text("places"))
    box.start()
    await asyncio.sleep(0)
    box.push(text("a"))  # under way
    for n in range(3):
        box.push(text(str(n)))  # backlog
    box.resync()
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert sent == ["a", "snapshot", "places"]
    box.stop()


async def test_a_client_gone_mid_send_closes_the_outbox():
    async def gone(message):
        raise OSError("connection reset")

    box = outbox(gone)
    await asyncio.sleep(0)
    box.push(text("a"))
    assert box.closing and len(box) == 0
    box.push(text("b"))  # ignored, no error


# -- uvicorn's sockets: frames written directly -------------------------------


def test_a_text_frame_is_what_wsproto_writes():
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Message, Request

    from maps.realtime.outbox import text_frame

    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example.org", target="/ws/")))
    next(server.events())
    server.send(AcceptConnection())
    for value in ("", "a", "x" * 125, "x" * 126, "é" * 100, "x" * 65535, "x" * 65536,
                  '{"type":"positions"}' * 5000):
        assert text_frame(value) == server.send(Message(data=value)), len(value)


async def serve(app, ws, **options):
    """Start ``app`` on a real uvicorn (``ws``: its WebSocket implementation) in this
    loop; return (server, port)."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws=ws, lifespan="off",
                            log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    server.task = task
    return server, server.servers[0].sockets[0].getsockname()[1]


def pushing_app(frames, seen):
    """An ASGI app that accepts a socket and pushes ``frames`` through an Outbox: one
    by one (the first message object twice), then all as one tick, then ``"after"``."""

    async def app(scope, receive, send):
        from maps.realtime.outbox import DirectWrite

        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        box = outbox(send)
        seen["direct"] = box._direct is not None
        await asyncio.sleep(0)
        DirectWrite._messages = None
        shared = text(frames[0])
        box.push(shared)
        for value in frames[1:]:
            box.push(text(value))
        box.push(shared)  # the same message object again
        seen["last_written_directly"] = (DirectWrite._messages or [None])[0] is shared
        tick = [text(value) for value in frames]
        box.push_all(tick)
        seen["written_directly"] = DirectWrite._messages is tick
        box.push_all([text("after")])
        while (await receive())["type"] != "websocket.disconnect":
            pass
        box.stop()

    return app


async def receive_all(port, count, **options):
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/", max_size=None, **options) as client:
        return [await client.recv() for _ in range(count)]


FRAMES = ["a", "é" * 200, "x" * 70_000, '{"type":"positions","positions":[]}']


@pytest.mark.parametrize("ws", ["wsproto", "websockets"])
@pytest.mark.parametrize("deflate", [False, True])
async def test_a_uvicorn_socket_gets_the_same_frames_directly_unless_compressed(ws, deflate):
    seen = {}
    counted = Counted()
    server, port = await serve(pushing_app(FRAMES, seen), ws, ws_per_message_deflate=deflate)
    count = 2 * len(FRAMES) + 2
    try:
        received = await receive_all(port, count,
                                     **({} if deflate else {"compression": None}))
    finally:
        server.should_exit = True
        await server.task
    # Only under wsproto without compression: with compression on, uvicorn's framing is
    # not this one; under uvicorn's websockets, every frame goes through its send.
    direct = ws == "wsproto" and not deflate
    assert seen["direct"] is direct
    assert seen["last_written_directly"] is direct
    # A tick of several frames: one write of them all when direct (else uvicorn frames
    # each); whole and in order either way.
    assert seen["written_directly"] is direct
    assert received == FRAMES + [FRAMES[0]] + FRAMES + ["after"]
    # Directly: the frames one by one, the shared message again, the tick, "after".
    assert counted.direct == (len(FRAMES) + 3 if direct else 0)
    assert counted.send == (0 if direct else count)


# -- every guard of DirectWrite, on a real uvicorn (wsproto) ---------------------------
#
# Each test brings a live socket into one state in which uvicorn's own send would not
# write a text frame at once, pushes, and checks that the frame went through uvicorn's
# send (geoshare_socket_writes_total{path="send"}), not onto the transport, and that
# what the client finally reads is whole frames, in order, then the close.
#
# A fragmented outgoing message is not reachable under wsproto: uvicorn's send hands
# wsproto whole messages only (Message(data=...), message_finished true) and ASGI has
# no partial websocket.send, so no frame can land in the middle of one. The test of
# uvicorn's internals below holds uvicorn's send to that.


def writes(path):
    """This process's geoshare_socket_writes_total{path=...}."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("geoshare_socket_writes_total", {"path": path}) or 0.0


class Counted:
    """The socket writes, direct and through send, since this object was made."""

    def __init__(self):
        self._direct, self._send = writes("direct"), writes("send")

    @property
    def direct(self):
        return writes("direct") - self._direct

    @property
    def send(self):
        return writes("send") - self._send


async def until(condition, timeout=10.0, what="condition"):
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"{what}: still false after {timeout} s"
        await asyncio.sleep(0.005)


class Held:
    """A socket the holding app accepted: its Outbox ``box``, uvicorn's ``protocol``
    and ASGI ``send``. The app keeps it, without reading, until ``release`` is set
    (as a consumer that has not yet run its disconnect handler)."""

    def __init__(self, box, send):
        self.box = box
        self.send = send
        self.protocol = send.__self__
        self.release = asyncio.Event()


def holding_app(held):
    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        box = outbox(send, max_pending=10_000)
        socket = Held(box, send)
        await held.put(socket)
        await socket.release.wait()
        box.stop()

    return app


class Live:
    """A real uvicorn (wsproto, compression and pings off) serving :func:`holding_app`."""

    def __init__(self, server, port, held):
        self.server, self.port, self._held, self.sockets = server, port, held, []

    async def accepted(self):
        socket = await asyncio.wait_for(self._held.get(), 10)
        self.sockets.append(socket)
        return socket


@pytest.fixture
async def live():
    held = asyncio.Queue()
    server, port = await serve(holding_app(held), "wsproto", ws_per_message_deflate=False,
                               ws_ping_interval=None)
    state = Live(server, port, held)
    try:
        yield state
    finally:
        for socket in state.sockets:
            socket.release.set()
        server.should_exit = True
        await server.task


class RawClient:
    """A WebSocket client on a plain socket (wsproto), which reads only when asked: while
    it does not, the server's transport fills up. ``rcvbuf`` shrinks its socket's
    receive buffer so that happens sooner."""

    @classmethod
    async def connect(cls, port, rcvbuf=None):
        import socket

        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        self = cls()
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.writer.write(self.ws.send(Request(host="127.0.0.1", target="/")))
        self.messages, self.close_code, self._text = [], None, []
        while not any(isinstance(event, AcceptConnection) for event in await self._read()):
            pass
        return self

    async def _read(self, timeout=10.0):
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection, TextMessage

        data = await asyncio.wait_for(self.reader.read(1 << 20), timeout)
        self.ws.receive_data(data or None)
        events = list(self.ws.events())
        for event in events:
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.messages.append("".join(self._text))
                    self._text = []
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self.writer.write(self.ws.send(event.response()))
        if not data:
            self.eof = True
        return events

    async def receive(self, count, timeout=10.0):
        """Read until ``count`` whole text messages have come; return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.messages) < count:
            assert self.close_code is None, f"closed ({self.close_code}) at {self.messages}"
            await self._read(deadline - loop.time())
        return self.messages

    async def until_closed(self, timeout=10.0):
        """Read until the server's close frame (or the end of the stream); return the
        messages read in all, and the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.eof = False
        while self.close_code is None and not self.eof:
            await self._read(deadline - loop.time())
        return self.messages, self.close_code

    def send_close(self, code=1000):
        from wsproto.events import CloseConnection

        self.writer.write(self.ws.send(CloseConnection(code=code)))

    def abort(self):
        self.writer.transport.abort()


def small_send_buffer(held):
    """Shrink the server socket's kernel send buffer, so its transport fills sooner."""
    import socket

    transport_socket = held.protocol.transport.get_extra_info("socket")
    transport_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def test_a_paused_socket_gets_frames_through_send_whole_and_in_order(live):
    client = await RawClient.connect(live.port, rcvbuf=4096)
    held = await live.accepted()
    small_send_buffer(held)
    counted = Counted()
    sent = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    # The client does not read: the transport's buffer passes its high-water mark and
    # asyncio pauses it (uvicorn's pause_writing clears ``writable``).
    while held.protocol.writable.is_set():
        assert loop.time() < deadline, "the transport never paused"
        sent.append(f"{len(sent)}:" + "x" * 50_000)
        held.box.push(text(sent[-1]))
        await asyncio.sleep(0)
    assert counted.direct == len(sent) and counted.send == 0
    for n in range(3):
        sent.append(f"while paused {n}")
        held.box.push(text(sent[-1]))
    held.box.push_all([text("tick a"), text("tick b")])
    sent += ["tick a", "tick b"]
    # The first through uvicorn's send (waiting for the transport), the rest queued.
    assert counted.direct == len(sent) - 5 and counted.send == 1
    assert await client.receive(len(sent)) == sent
    await until(lambda: counted.send == 5, what="queued frames sent")
    # Drained and resumed: the next frame is written directly again.
    await until(lambda: held.protocol.writable.is_set() and not held.box._busy
                and not len(held.box), what="outbox idle again")
    held.box.push(text("resumed"))
    assert counted.direct == len(sent) - 5 + 1
    assert await client.receive(len(sent) + 1) == sent + ["resumed"]


async def test_a_closing_socket_gets_nothing_directly_and_its_client_whole_frames(live):
    client = await RawClient.connect(live.port, rcvbuf=4096)
    held = await live.accepted()
    small_send_buffer(held)
    transport = held.protocol.transport
    # Never paused: this test is of a closing transport, with bytes still to write (so
    # asyncio keeps it closing, not yet lost, until the client reads).
    transport.set_write_buffer_limits(high=1 << 30)
    counted = Counted()
    sent = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    # More than the client's stream reader takes in before it stops reading (128 KiB).
    while transport.get_write_buffer_size() < 1 << 20:
        assert loop.time() < deadline, "the transport's buffer stayed small"
        sent.append(f"{len(sent)}:" + "x" * 50_000)
        held.box.push(text(sent[-1]))
        await asyncio.sleep(0)
    assert counted.direct == len(sent)
    # The client's close: uvicorn answers it and closes the transport.
    client.send_close(1000)
    await until(transport.is_closing, what="transport closing")
    assert not held.protocol.disconnected and not held.protocol.close_sent
    assert held.protocol.writable.is_set()
    held.box.push(text("too late"))
    # Through uvicorn's send, which refuses (the client went away): the outbox closes.
    assert counted.direct == len(sent) and counted.send == 1
    assert held.box.closing
    messages, code = await client.until_closed()
    assert messages == sent and code == 1000


async def test_after_a_close_is_sent_nothing_is_written_directly(live):
    client = await RawClient.connect(live.port)
    held = await live.accepted()
    counted = Counted()
    held.box.push_all([text("a"), text("b")])
    assert await client.receive(2) == ["a", "b"]
    # The app closes through ASGI, not through the outbox (which would stop pushing).
    await held.send({"type": "websocket.close", "code": 4001})
    assert held.protocol.close_sent and not held.protocol.transport.is_closing()
    held.box.push(text("after the close"))
    assert counted.direct == 1 and counted.send == 1
    assert held.box.closing  # uvicorn's send refused a frame after the close
    messages, code = await client.until_closed()
    assert messages == ["a", "b"] and code == 4001


async def test_a_disconnected_socket_gets_nothing_directly(live):
    client = await RawClient.connect(live.port)
    held = await live.accepted()
    counted = Counted()
    held.box.push(text("a"))
    held.box.push(text("b"))
    assert await client.receive(2) == ["a", "b"]
    client.abort()
    await until(lambda: held.protocol.disconnected, what="uvicorn saw the disconnect")
    held.box.push(text("gone"))
    assert counted.direct == 2 and counted.send == 1
    assert held.box.closing  # uvicorn's send raised ClientDisconnected


async def test_each_guard_alone_stops_a_direct_write(live):
    from maps.realtime.outbox import DirectWrite

    client = await RawClient.connect(live.port)
    held = await live.accepted()
    protocol = held.protocol
    write = DirectWrite.of(held.send)
    tick = [text("x")]
    assert write(tick)
    for name, value in (("handshake_complete", False), ("close_sent", True),
                        ("disconnected", True), ("response_started", True)):
        saved = getattr(protocol, name)
        setattr(protocol, name, value)
        try:
            assert not write(tick), name
        finally:
            setattr(protocol, name, saved)
    protocol.pause_writing()
    assert not write(tick), "paused"
    protocol.resume_writing()
    assert not write([{"type": "websocket.send", "bytes": b"x"}]), "bytes"
    assert write([text("y")])
    assert await client.receive(2) == ["x", "y"]


async def test_with_direct_write_off_every_frame_goes_through_send(live, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "DIRECT_WRITE": False}
    counted = Counted()
    client = await RawClient.connect(live.port)
    held = await live.accepted()
    assert held.box._direct is None
    held.box.push(text("a"))
    held.box.push_all([text("b"), text("c")])
    held.box.push(text("é" * 200))
    expected = ["a", "b", "c", "é" * 200]
    assert await client.receive(4) == expected
    assert counted.direct == 0 and counted.send == 4


async def test_uvicorn_still_has_the_state_direct_write_reads(live):
    """Fails when uvicorn or wsproto change what DirectWrite reads (its names, their
    types, what pausing does, whole messages only), so a new release is looked at
    before the bounds in pyproject.toml are raised."""
    import dataclasses
    import inspect

    import wsproto
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
    from wsproto.connection import ConnectionState
    from wsproto.events import Message

    from maps.realtime.outbox import WSPROTO_MODULE, WSPROTO_STATE, DirectWrite

    client = await RawClient.connect(live.port)
    held = await live.accepted()
    protocol = held.protocol
    assert type(protocol) is WSProtocol and WSProtocol.__module__ == WSPROTO_MODULE
    assert held.send.__func__ is WSProtocol.send
    assert set(WSPROTO_STATE) <= set(vars(protocol))
    for name in ("handshake_complete", "close_sent", "disconnected", "response_started"):
        assert type(getattr(protocol, name)) is bool, name
    assert protocol.handshake_complete and not protocol.close_sent
    assert not protocol.disconnected and not protocol.response_started
    assert type(protocol.writable) is asyncio.Event and protocol.writable.is_set()
    protocol.pause_writing()
    assert not protocol.writable.is_set()
    protocol.resume_writing()
    assert protocol.writable.is_set()
    assert isinstance(protocol.conn, wsproto.WSConnection)
    assert protocol.conn.state is ConnectionState.OPEN
    assert isinstance(protocol.transport, asyncio.WriteTransport)
    assert protocol.transport.is_closing() is False
    assert protocol.config.ws_per_message_deflate is False
    assert DirectWrite.of(held.send) is not None
    held.box.push(text("direct"))
    assert await client.receive(1) == ["direct"]
    # No fragmented message can be under way: uvicorn's send hands wsproto a whole
    # message (message_finished defaults to true, and it never sets it).
    finished = {f.name: f.default for f in dataclasses.fields(Message)}
    assert finished["message_finished"] is True
    source = inspect.getsource(WSProtocol.send)
    assert "wsproto.events.Message(data=data)" in source
    assert "message_finished" not in source


# -- geoshare as make run serves it --------------------------------------------------


async def _room_traffic(server, room, keys):
    """Ana and Bo connect; Ana sends a position; return the frames types each got."""
    import time

    import orjson
    from websockets.asyncio.client import connect

    url = f"{server.ws_url}/ws/rooms/{room}/?key="
    got = {}
    async with (connect(url + keys["Ana"]["key"]) as ana,
                connect(url + keys["Bo"]["key"]) as bo):
        for name, socket in (("Ana", ana), ("Bo", bo)):
            got[name] = [orjson.loads(await asyncio.wait_for(socket.recv(), 10))["type"]]
        await ana.send(orjson.dumps({"type": "position", "lat": 46.1, "lon": 7.2,
                                     "ts": int(time.time() * 1000)}).decode())
        async with asyncio.timeout(10):
            while "positions" not in got["Bo"]:
                got["Bo"].append(orjson.loads(await bo.recv())["type"])
    return got


@pytest.mark.slow
async def test_geoshare_as_served_writes_directly_unless_switched_off(tmp_path):
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from tests.servers import Project, Uvicorn, free_port

    project = Project(tmp_path).migrate()
    room, keys = project.make_room(members=("Ana", "Bo"))
    for switch in ("1", "0"):
        metrics_port = free_port()
        env = {"GEOSHARE_METRICS_PORT": str(metrics_port),
               "GEOSHARE_DIRECT_WRITE": switch}
        with Uvicorn(project, extra_env=env) as server:
            got = await _room_traffic(server, room, keys)
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert got["Ana"] == ["snapshot"] and got["Bo"][0] == "snapshot", got
        paths = {sample.labels["path"]: sample.value
                 for family in text_string_to_metric_families(scraped)
                 for sample in family.samples
                 if sample.name == "geoshare_socket_writes_total"}
        if switch == "1":
            # Every frame went directly: the sockets were never paused nor closing.
            assert paths["direct"] >= 3 and paths["send"] == 0, paths
        else:
            assert paths["direct"] == 0 and paths["send"] >= 4, paths
