"""What a device key names, kept in memory so that a phone's request needs no query.

Every phone request names its device by key; looking the key up is one indexed query,
which on the ingest path cost a hop to a database thread per request (about a fifth of
the server's time in ``make bench``'s ingest, docs/benchmarks.md). This process keeps
the answer, the member with its room and device, per key hash, and forgets it:

- at once in this process, and through the channel layer in every other, when
  something a door relies on changes for the member (only that member's keys are
  forgotten) or for the room (all of the room's): a share starts or ends
  (``room.share``, ``room.stop``), a member is added, changed or removed
  (``room.member``, ``room.kick``), a key is replaced or a device deleted
  (``room.rekey``), the room is deleted (``room.deleted``), a device's OwnTracks
  secret changes, the room's places change (``room.places``, which OwnTracks answers
  carry). :func:`room_changed` is called by the services that send those events
  (``maps.services.room_event_send`` and ``_room_event``), after the commit;
- in any case ``GEOSHARE["KEY_CACHE_S"]`` seconds after it was loaded. That bounds how long a
  revoked key can still work on a process that missed the message (the channel layer
  was away, or the change was made by a process without it, as ``manage.py`` with the
  in-memory layer): docs/security.md.

A timed share's end needs no message: the cached member's ``share_state()`` compares
its end time with the clock, as the database row would.

Wherever a room's or a member's keys are forgotten, the room's OwnTracks friends
(:mod:`maps.ingest.friends`) are forgotten with them (a member's change: when the member is
among them).

Loads that raced a change are not kept: each forget bumps a generation and notes it
for the room, and a load of that room started under an older generation is used for
its own request but not cached. Wrong
keys are never cached (they count against the address instead, maps.access.auth).
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer
from django.conf import settings

from maps.protocol import events
from maps.storage.dbthread import reads

if TYPE_CHECKING:
    from maps.models import Member

log = logging.getLogger(__name__)

# The channel-layer group every process listens to for changes (:func:`listen`).
GROUP = events.KEYS_GROUP
# How often the listener joins its group again (seconds).
REJOIN_S = 60.0
# At most this many keys are kept; past it the oldest are dropped.
MAX_ENTRIES = 100_000


class KeyCache:
    """Key hash -> member (room and device loaded), per room, with a time to live.

    Thread-safe: services forget from database threads, doors read on the loop.
    ``clock`` returns the time in seconds that entries are stamped and aged with
    (``time.monotonic``; tests pass their own, or set :attr:`clock`, to age entries
    without waiting).
    """

    def __init__(self, ttl_s: float | None = None, max_entries: int = MAX_ENTRIES, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.generation = 0
        self._entries: dict[str, tuple[Any, float]] = {}  # key hash -> (member, loaded at (clock s))
        self._rooms: dict[int, set[str]] = {}  # room pk -> set of key hashes
        self._members: dict[int, set[str]] = {}  # member pk -> set of key hashes
        self._forgotten: dict[int, int] = {}  # room pk -> the generation that last forgot it
        self._cleared = 0  # the generation that last forgot everything
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._entries)

    @property
    def ttl_s(self):
        """Seconds an entry is trusted: ``GEOSHARE["KEY_CACHE_S"]`` unless given."""
        if self._ttl_s is not None:
            return self._ttl_s
        return settings.GEOSHARE.get("KEY_CACHE_S", 10)

    def get(self, key_hash: str, now: float | None = None) -> "Member | None":
        """Return the member cached for ``key_hash``, or ``None`` (unknown or expired).

        ``now`` is a reading of :attr:`clock` (seconds); ``None``: read it.
        """
        found = self._entries.get(key_hash)
        if found is None:
            return None
        member, loaded = found
        if (now if now is not None else self.clock()) - loaded >= self.ttl_s:
            return None
        return member

    def put(self, key_hash, member, generation):
        """Keep ``member`` for ``key_hash`` unless something changed since ``generation``
        (the value of :attr:`generation` when its load started); return whether kept."""
        with self._lock:
            if max(self._cleared, self._forgotten.get(member.room_id, 0),
                   self._forgotten.get(("member", member.pk), 0)) > generation:
                return False
            if len(self._entries) >= self.max_entries and key_hash not in self._entries:
                self._drop_oldest()
            self._entries[key_hash] = (member, self.clock())
            self._rooms.setdefault(member.room_id, set()).add(key_hash)
            self._members.setdefault(member.pk, set()).add(key_hash)
            return True

    def _drop_oldest(self):
        oldest = sorted(self._entries.items(), key=lambda item: item[1][1])
        for key_hash, (member, _loaded) in oldest[: max(1, len(oldest) // 10)]:
            del self._entries[key_hash]
            for index, pk in ((self._rooms, member.room_id), (self._members, member.pk)):
                hashes = index.get(pk)
                if hashes is not None:
                    hashes.discard(key_hash)
                    if not hashes:
                        del index[pk]

    def forget_room(self, room_pk):
        """Forget every key of room ``room_pk`` (and any load of it under way)."""
        self._forget(room_pk, self._rooms)

    def forget_member(self, member_pk):
        """Forget every key of member ``member_pk`` (and any load of it under way)."""
        self._forget(("member", member_pk), self._members, member_pk)

    def _forget(self, mark, index, pk=None):
        with self._lock:
            self.generation += 1
            if len(self._forgotten) >= self.max_entries:
                self._forgotten.clear()
                self._cleared = self.generation
            self._forgotten[mark] = self.generation
            for key_hash in index.pop(mark if pk is None else pk, ()):
                self._entries.pop(key_hash, None)

    def clear(self):
        """Forget everything."""
        with self._lock:
            self.generation += 1
            self._cleared = self.generation
            self._entries.clear()
            self._rooms.clear()
            self._members.clear()
            self._forgotten.clear()


keys = KeyCache()
# Keys are looked up on the reads thread, whose connection stays open (a lookup per
# key per KEY_CACHE_S, not per request; maps.storage.dbthread).
loader = reads


#: ``hook(room id or None, member id or None)`` called whenever keys are forgotten
#: here: what else a process keeps of a room's members goes with its keys (the
#: OwnTracks friends answers, maps.ingest.friends, registered by maps.apps). A room
#: of ``None`` means everything.
_forget_hooks = []


def on_forget(hook):
    """Call ``hook(room, member)`` whenever this process forgets keys (see :func:`forget`)."""
    if hook not in _forget_hooks:
        _forget_hooks.append(hook)


def _forget_all():
    keys.clear()
    for hook in _forget_hooks:
        hook(None, None)


async def listen():
    """Forget what other processes say changed; runs for the life of the process.

    Started by the ASGI lifespan (geoshare.asgi). Reads :data:`GROUP` on its own
    channel. While it cannot (the channel layer is away), entries still expire after
    ``GEOSHARE["KEY_CACHE_S"]``; when it comes back everything is forgotten, since messages may have
    been missed.
    """
    layer = get_channel_layer()
    channel = None
    while True:
        try:
            if channel is None:
                channel = await layer.new_channel("keys.")
                await layer.group_add(GROUP, channel)
                _forget_all()
            try:
                message = await asyncio.wait_for(layer.receive(channel), REJOIN_S)
            except TimeoutError:
                # Re-joining refreshes the group's expiry (the in-memory layer drops
                # members after a day) and, after Redis restarted empty, subscribes again.
                await layer.group_add(GROUP, channel)
                continue
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("key cache: channel layer away; keys expire after %ss", keys.ttl_s)
            channel = None
            _forget_all()
            await asyncio.sleep(1)
            continue
        if message.get("type") == "keys.forget":
            forget(message)


def forget(message):
    """Forget what a ``keys.forget`` message (:class:`maps.protocol.events.KeysForget`)
    says changed: the member's keys, or the room's, or everything; and with them what
    the hooks of :func:`on_forget` keep (the room's OwnTracks friends).

    Called for the messages of other processes (:func:`listen`) and, at once, for this
    process's own (registered with :func:`maps.services.publish.on_forget`).
    """
    room, member = message.get("room"), message.get("member")
    if member is not None:
        keys.forget_member(member)
    elif room is not None:
        keys.forget_room(room)
    else:
        keys.clear()
    for hook in _forget_hooks:
        hook(room, member)
