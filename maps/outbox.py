"""A socket's outgoing side: a bounded queue of frames and the task that writes them.

The room hub pushes the same ASGI message object to every socket of the room on each
tick; :meth:`Outbox.push` never waits, so one slow client cannot hold the others up.
A client that stops reading lets its queue grow to ``max_pending`` messages; then its
backlog is replaced by one fresh snapshot (the latest state wins, and memory stays
bounded by references to frames shared with the other sockets).
"""

import asyncio
import collections


class Outbox:
    """The frames waiting for one WebSocket, and their writer.

    ``send`` is the ASGI send callable; ``snapshot`` returns a fresh snapshot message
    for this socket (used when the backlog is dropped). ``member_id``, ``via_key`` (the
    id of the device whose key opened the socket, ``None`` for a browser session) and
    ``address`` describe the socket to the hub (``link_id`` and ``bound`` a watch
    link's socket: see :class:`maps.consumers.WatchConsumer`); ``close`` is an async
    callable taking a close code (the consumer's ``close``).
    """

    __slots__ = ("member_id", "via_key", "address", "link_id", "bound", "_send", "_close",
                 "_snapshot", "_after_snapshot",
                 "_max_pending", "_box", "_wake", "_writer", "_closer", "closing",
                 "_on_closed")

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
        self._closer = None
        self.closing = False

    def __len__(self):
        return len(self._box)

    def start(self):
        """Start the writer task."""
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def push(self, message):
        """Queue an ASGI send message; never blocks."""
        if self.closing:
            return
        box = self._box
        if len(box) >= self._max_pending:
            box.clear()
            box.append(self._snapshot())
            if self._after_snapshot is None:
                message = None
            else:
                message = self._after_snapshot()
        if message is not None:
            box.append(message)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    def resync(self):
        """Replace the backlog with a fresh snapshot."""
        if not self.closing:
            self._box.clear()
            self.push(self._snapshot())
            if self._after_snapshot is not None:
                self.push(self._after_snapshot())

    def close_now(self, code):
        """Close the socket with ``code`` from synchronous code (the hub)."""
        if self.closing:
            return
        self.stop()
        # Held until done: the loop keeps only weak references to tasks.
        self._closer = asyncio.get_running_loop().create_task(self._close_later(code))

    def stop(self):
        """Drop what is queued and stop writing (the socket is closing or closed)."""
        self.closing = True
        self._box.clear()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._writer = None

    async def _close_later(self, code):
        try:
            await self._close(code)
        except Exception:
            pass
        if self._on_closed is not None:
            self._on_closed()

    async def _write_loop(self):
        box = self._box
        send = self._send
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not box:
                    self._wake = loop.create_future()
                    await self._wake
                    continue
                await send(box.popleft())
        except asyncio.CancelledError:
            raise
        except Exception:
            # The client went away mid-send; the consumer's disconnect cleans up.
            self.closing = True
            box.clear()
