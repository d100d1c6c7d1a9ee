"""The embedded channel layer: channels' in-memory layer, made to scale with rooms.

channels' ``InMemoryChannelLayer`` walks every channel and every group for expired
messages on each ``receive`` and ``group_send`` (``_clean_expired``), and starts one task
per group member on each ``group_send``. geoshare has one channel and one group per room
(the room hub), so with 2,000 rooms each position cost two walks of 4,000 entries: in
``make bench`` S2 the server was CPU-bound at 5,000 sockets. This subclass walks at most
once a second (a message may outlive ``expiry`` by that second), sends to a group's
channels directly, and copies each message with :func:`json_copy` instead of
``copy.deepcopy`` (the same copy for the JSON-shaped messages geoshare sends, about five
times faster: ``deepcopy`` was the layer's largest cost per position in ``make bench``);
everything else, semantics included, is channels' own.

With ``REDIS_URL`` set, channels_redis is used instead and this module is not involved.
"""

import asyncio
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

CLEAN_EVERY_S = 1.0

_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_copy(value):
    """Return a copy of ``value`` no part of which the original shares, as
    ``copy.deepcopy`` gives: dicts and lists are copied level by level, strings,
    numbers, booleans and ``None`` (immutable) kept; anything else is deep-copied."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind in _SCALARS:
        return value
    return deepcopy(value)


class RoomsInMemoryChannelLayer(InMemoryChannelLayer):
    """``InMemoryChannelLayer`` with amortized expiry and task-free ``group_send``."""

    _next_clean = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + CLEAN_EVERY_S
        super()._clean_expired()

    async def send(self, channel, message):
        """Put a copy of ``message`` on ``channel``'s queue (channels' ``send``, with
        :func:`json_copy`); raise ``ChannelFull`` when the queue is at capacity."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(
                maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, json_copy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

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

    def group_channels(self, group: str) -> frozenset[str]:
        """Return the channels in ``group`` now (read from channels' own ``groups``
        state; this module is the one place geoshare reads the layer's internals)."""
        return frozenset(self.groups.get(group, ()))

    async def flush(self):
        self._next_clean = 0.0
        await super().flush()
