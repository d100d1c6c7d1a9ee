"""The embedded channel layer: channels' in-memory layer, made to scale with rooms.

channels' ``InMemoryChannelLayer`` walks every channel and every group for expired
messages on each ``receive`` and ``group_send`` (``_clean_expired``), and starts one task
per group member on each ``group_send``. geoshare has one channel and one group per room
(the room hub), so with 2,000 rooms each position cost two walks of 4,000 entries: in
``make bench`` S2 the server was CPU-bound at 5,000 sockets. This subclass walks at most
once a second (a message may outlive ``expiry`` by that second) and sends to a group's
channels directly; everything else, semantics included, is channels' own.

With ``REDIS_URL`` set, channels_redis is used instead and this module is not involved.
"""

import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

CLEAN_EVERY_S = 1.0


class RoomsInMemoryChannelLayer(InMemoryChannelLayer):
    """``InMemoryChannelLayer`` with amortized expiry and task-free ``group_send``."""

    _next_clean = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + CLEAN_EVERY_S
        super()._clean_expired()

    async def group_send(self, group, message):
        """Send ``message`` to every channel of ``group``; a full channel drops it."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                # send() never waits: it puts into an asyncio.Queue without blocking.
                await self.send(channel, message)
            except ChannelFull:
                pass

    async def flush(self):
        self._next_clean = 0.0
        await super().flush()
