"""A socket's outgoing side: a bounded queue of frames and the task that writes them.

The room hub pushes the same ASGI message object to every socket of the room on each
tick; :meth:`Outbox.push` never waits, so one slow client cannot hold the others up.
A socket with nothing queued and no send under way is written at once, in the pusher's
turn of the loop: uvicorn's ``send`` waits only while the socket's transport is
paused, so in the common case the frame is on the transport before ``push`` returns,
without a task switch per socket per tick (a room of 2,000 at 10 ticks a second is
20,000 switches a second). A send that does have to wait is finished by a task of its
own, and what is pushed meanwhile queues behind it. A client that stops reading lets
its queue grow to ``max_pending`` messages; then its backlog is replaced by one fresh
snapshot (the latest state wins, and memory stays bounded by references to frames
shared with the other sockets).

With ``GEOSHARE["DIRECT_WRITE"]`` on (the default), under uvicorn's ``wsproto``
implementation (what ``make run`` serves), an idle, open socket is written more directly
still: the frame's bytes (RFC 6455 section 5.2: FIN and the text opcode, the payload
length, no mask from a server, no extension since permessage-deflate is off) are built
once per message and handed to the socket's transport, instead of every socket encoding
the text to UTF-8 and framing it again in uvicorn's ``send`` and wsproto. That is what
:class:`DirectWrite` does, and only when uvicorn's ``send`` would have written the same
bytes at once; anything else goes the ASGI way. It was written when the per-socket
framing was most of the server's fan-out (make bench, S1 and S2); measured on and off in
S1 (docs/benchmarks.md, issue 24) it saved under 10 % of server CPU and p99, hence off
by default. It reads private state of uvicorn's ``WSProtocol`` and wsproto's connection,
so it is fenced (docs/benchmarks.md, "Direct write: on and off (issue 24)"): upper
version bounds in pyproject.toml, a switch (``GEOSHARE["DIRECT_WRITE"]``, env
``GEOSHARE_DIRECT_WRITE``, read as each socket opens), a metric of the writes each way
(``geoshare_socket_writes_total{path}``), and tests/test_outbox.py, which fails when
uvicorn's protocol no longer has the state read here. Under uvicorn's ``websockets``
implementation every frame goes through uvicorn's ``send``.
"""

import asyncio
import collections
import struct
import types

from django.conf import settings
from wsproto.connection import ConnectionState

from maps.telemetry import metrics

# Pre-bound counter children: one cheap ``inc`` per socket write.
_DIRECT_WRITES = metrics.SOCKET_WRITES_BY_PATH["direct"]
_SENDS = metrics.SOCKET_WRITES_BY_PATH["send"]


def text_frame(text):
    """Return the unmasked, unfragmented WebSocket text frame of ``text`` (``str``).

    RFC 6455 section 5.2: ``0x81`` (FIN, opcode 1), then the payload length in 7 bits,
    or 126 and 16 bits, or 127 and 64 bits (network byte order), then the UTF-8
    payload. A server's frames carry no mask (section 5.1). These are the bytes
    wsproto writes for ``Message(data=text)`` without extensions (tests/test_outbox.py
    holds them against it).
    """
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


class DirectWrite:
    """Write a ``websocket.send`` text message straight to the socket's transport.

    For uvicorn's ``wsproto`` implementation (``WSProtocol``, what ``make run`` serves)
    without compression. Use :meth:`of`; ``protocol`` is the object whose ``send`` is
    the ASGI send. :meth:`__call__` returns ``False``, having written nothing, whenever
    uvicorn's own ``send`` would not simply frame the text and write it at once: before
    the handshake completes, once a close was sent or received or the client went away,
    while the transport is paused or closing, and for a message with ``bytes``. The
    caller then sends them the ASGI way, which waits or fails as uvicorn decides.

    A fragmented outgoing message, which would forbid writing a frame in the middle of
    it (RFC 6455 section 5.4), cannot be under way: uvicorn's ``send`` hands wsproto
    whole messages only (``Message(data=...)``, ``message_finished`` true), and ASGI
    has no partial ``websocket.send``.

    Private names read (uvicorn <0.56, wsproto <1.4; tests/test_outbox.py fails when
    they change): ``WSProtocol.handshake_complete``, ``close_sent``, ``disconnected``,
    ``response_started`` (bools), ``writable`` (an ``asyncio.Event`` cleared by
    ``pause_writing``), ``conn.state`` (wsproto's ``ConnectionState``), ``transport``
    and ``config.ws_per_message_deflate``.
    """

    __slots__ = ("protocol",)

    _messages = None
    _frames = b""

    def __init__(self, protocol):
        self.protocol = protocol

    @classmethod
    def of(cls, send):
        """Return a :class:`DirectWrite` for ASGI ``send``, or ``None`` when ``send`` is
        not the bound ``send`` of uvicorn's ``WSProtocol`` with compression off, or
        when ``GEOSHARE["DIRECT_WRITE"]`` is off (on by default; read now, so a test
        can override it)."""
        if not settings.GEOSHARE["DIRECT_WRITE"]:
            return None
        protocol = getattr(send, "__self__", None)
        kind = type(protocol)
        config = getattr(protocol, "config", None)
        if config is None or getattr(config, "ws_per_message_deflate", True):
            return None
        if (kind.__module__ == WSPROTO_MODULE and kind.__name__ == "WSProtocol"
                and getattr(send, "__func__", None) is kind.send
                and all(hasattr(protocol, name) for name in WSPROTO_STATE)):
            return cls(protocol)
        return None

    def __call__(self, messages):
        """Write ``messages`` (a sequence of ``websocket.send`` messages) as one write
        of their frames, in order; return ``False``, having written nothing, when
        uvicorn would not, or when one of them is not text. The bytes of the last
        sequence are kept (class-wide): the hub pushes one list to every socket of the
        room, so a tick is framed once."""
        if not wsproto_open(self.protocol):
            return False
        if messages is not DirectWrite._messages:
            if any(m.get("text") is None or m.get("bytes") is not None for m in messages):
                return False
            DirectWrite._frames = b"".join(text_frame(m["text"]) for m in messages)
            DirectWrite._messages = messages
        self.protocol.transport.write(DirectWrite._frames)
        return True


WSPROTO_MODULE = "uvicorn.protocols.websockets.wsproto_impl"

#: The attributes of uvicorn's ``WSProtocol`` that :func:`wsproto_open` reads.
WSPROTO_STATE = ("conn", "transport", "writable", "handshake_complete", "close_sent",
                 "disconnected", "response_started")


def wsproto_open(protocol):
    """Return whether uvicorn's ``WSProtocol.send`` would write a text frame at once.

    It waits on ``writable`` (cleared while the transport is paused), writes only after
    the handshake and before a close (sent, or received: wsproto then refuses to send
    unless OPEN), and not to a closing transport.
    """
    return (protocol.handshake_complete and not protocol.close_sent
            and not protocol.disconnected and not protocol.response_started
            and protocol.writable.is_set()
            and protocol.conn.state is ConnectionState.OPEN
            and not protocol.transport.is_closing())


class Outbox:
    """The frames waiting for one WebSocket, and their writer.

    ``send`` is the ASGI send callable; ``snapshot`` returns a fresh snapshot message
    for this socket (used when the backlog is dropped). ``member_id``, ``via_key`` (the
    id of the device whose key opened the socket, ``None`` for a browser session) and
    ``address`` describe the socket to the hub (``link_id`` and ``bound`` a watch
    link's socket: see :class:`maps.realtime.consumers.WatchConsumer`); ``close`` is an async
    callable taking a close code (the consumer's ``close``).
    """

    # ``__weakref__``: tests hold weak references to prove a closed socket's outbox freed.
    __slots__ = ("member_id", "via_key", "address", "link_id", "bound", "_send", "_close",
                 "_snapshot", "_after_snapshot",
                 "_max_pending", "_box", "_wake", "_writer", "closing",
                 "_on_closed", "_busy", "_finisher", "_direct", "__weakref__")

    def __init__(self, *, send, close, snapshot, member_id, via_key, address,
                 max_pending, on_closed=None, link_id=None, bound=False,
                 after_snapshot=None):
        self.member_id = member_id
        self.via_key = via_key
        self.address = address
        # A watch link's socket: the link, and whether it ends with the member's share.
        self.link_id = link_id
        self.bound = bound
        self._send = send
        self._close = close
        self._snapshot = snapshot
        # What follows every snapshot (the room's ``places`` frame), or None.
        self._after_snapshot = after_snapshot
        self._max_pending = max_pending
        self._on_closed = on_closed
        self._box = collections.deque()
        self._wake = None
        self._writer = None
        self.closing = False
        # A send is under way (the writer's, or one push started that had to wait).
        self._busy = False
        self._finisher = None
        self._direct = DirectWrite.of(send)

    def __len__(self):
        return len(self._box)

    def start(self):
        """Start the writer task."""
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def push(self, message):
        """Send an ASGI send message now, or queue it; never blocks."""
        self.push_all((message,))

    def push_all(self, messages):
        """Send a sequence of messages (a tick's frames) now, or queue them, in order;
        never blocks. An idle socket that can be written directly gets them all in
        one write (:class:`DirectWrite`); otherwise each goes the ASGI way."""
        if self.closing:
            return
        if (not self._box and not self._busy and self._writer is not None
                and self._direct is not None and self._direct(messages)):
            _DIRECT_WRITES.inc()
            return
        for message in messages:
            self._push_asgi(message)

    def _push_asgi(self, message):
        if self.closing:
            return
        box = self._box
        if not box and not self._busy and self._writer is not None:
            self._send_now(message)
            return
        if len(box) >= self._max_pending:
            box.clear()
            box.append(self._snapshot())
            if self._after_snapshot is None:
                message = None
            else:
                message = self._after_snapshot()
        if message is not None:
            box.append(message)
        self._wake_writer()

    def _send_now(self, message):
        """Run ``send(message)`` until it first waits; a task finishes it from there."""
        _SENDS.inc()
        coroutine = self._send(message)
        try:
            waiting = coroutine.send(None)
        except StopIteration:
            return
        except Exception:
            self._gone()
            return
        self._busy = True
        self._finisher = asyncio.get_running_loop().create_task(
            self._finish(coroutine, waiting))

    async def _finish(self, coroutine, waiting):
        """Drive a send that :meth:`_send_now` started to its end, as a task would:
        each time it waits on a future, wait for that future, then resume it."""
        try:
            while True:
                if waiting is None:
                    await _yield()  # a bare yield: let the loop run once
                else:
                    # As asyncio's Task does with a future a coroutine yielded: take
                    # the "blocking" mark off, then wait for it.
                    waiting._asyncio_future_blocking = False
                    await waiting
                try:
                    waiting = coroutine.send(None)
                except StopIteration:
                    break
        except asyncio.CancelledError:
            coroutine.close()
            raise
        except Exception:
            coroutine.close()
            self._gone()
        finally:
            self._busy = False
            self._finisher = None
        self._wake_writer()

    def _wake_writer(self):
        wake = self._wake
        if wake is not None and self._box:
            self._wake = None
            wake.set_result(None)

    def _gone(self):
        # The client went away mid-send; the consumer's disconnect cleans up.
        self.closing = True
        self._box.clear()

    def resync(self):
        """Replace the backlog with a fresh snapshot."""
        if not self.closing:
            self._box.clear()
            if self._after_snapshot is None:
                self.push(self._snapshot())
            else:
                self.push_all((self._snapshot(), self._after_snapshot()))

    def close_now(self, code):
        """Close the socket with ``code`` from synchronous code (the hub)."""
        if self.closing:
            return
        close, on_closed = self._close, self._on_closed
        self.stop()
        # Held until done (the loop keeps only weak references to tasks), in a set of
        # the module's, not on the outbox: its coroutine holds the consumer's ``close``.
        task = asyncio.get_running_loop().create_task(_close_later(close, code, on_closed))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    def stop(self):
        """Drop what is queued and stop writing (the socket is closing or closed).

        Also lets go of the callables the outbox was given: ``close`` and
        ``on_closed`` are the consumer's (a bound method, a closure over it), and the
        consumer holds the outbox, so keeping them would leave the two in a reference
        cycle that only the collector frees (issue 31; docs/architecture.md).
        """
        self.closing = True
        self._box.clear()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._writer = None
        if self._finisher is not None and not self._finisher.done():
            self._finisher.cancel()
        self._wake = None
        self._close = self._on_closed = None
        self._snapshot = self._after_snapshot = None

    async def _write_loop(self):
        box = self._box
        send = self._send
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not box or self._busy:
                    self._wake = loop.create_future()
                    await self._wake
                    continue
                self._busy = True
                _SENDS.inc()
                try:
                    await send(box.popleft())
                finally:
                    self._busy = False
        except asyncio.CancelledError:
            raise
        except Exception:
            self._gone()


#: The tasks of :meth:`Outbox.close_now` under way.
_CLOSING: set[asyncio.Task[None]] = set()


async def _close_later(close, code, on_closed):
    """Close with ``code`` (the consumer's ``close``), then call ``on_closed``; a
    function of the module, so the task holds no outbox."""
    try:
        await close(code)
    except Exception:
        pass
    if on_closed is not None:
        on_closed()


@types.coroutine
def _yield():
    """Give the event loop one turn (what a coroutine's bare ``yield`` asks of a task)."""
    yield
