"""A socket's outgoing side (maps.realtime.outbox): written at once when it can be, in order
always, bounded when the client stops reading."""

import asyncio

import pytest

from maps.realtime.outbox import Outbox


def text(value):
    return {"type": "websocket.send", "text": value}


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
    server, port = await serve(pushing_app(FRAMES, seen), ws, ws_per_message_deflate=deflate)
    count = 2 * len(FRAMES) + 2
    try:
        received = await receive_all(port, count,
                                     **({} if deflate else {"compression": None}))
    finally:
        server.should_exit = True
        await server.task
    # With compression on, frames go through uvicorn (its framing is not this one).
    assert seen["direct"] is (not deflate)
    assert seen["last_written_directly"] is (not deflate)
    # A tick of several frames: one write of them all, unless compressed (then uvicorn
    # frames each); whole and in order either way.
    assert seen["written_directly"] is (not deflate)
    assert received == FRAMES + [FRAMES[0]] + FRAMES + ["after"]
