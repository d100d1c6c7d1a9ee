"""A socket's outgoing side (maps.outbox): written at once when it can be, in order
always, bounded when the client stops reading."""

import asyncio

from maps.outbox import Outbox


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


async def test_a_client_gone_mid_send_closes_the_outbox():
    async def gone(message):
        raise OSError("connection reset")

    box = outbox(gone)
    await asyncio.sleep(0)
    box.push(text("a"))
    assert box.closing and len(box) == 0
    box.push(text("b"))  # ignored, no error
