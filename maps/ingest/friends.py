"""The friends an OwnTracks answer carries, kept per room so that a post needs no query.

OwnTracks' HTTP mode answers every post with the room's other sharing members, a
``card`` and a ``location`` each (docs/phones.md). Read from the database per request,
a room of 1,000 phones answered 10 posts a second (docs/benchmarks.md, issue 16). Two
things make it cheap:

- **per room, built once:** :data:`rooms` keeps each room's friends as encoded pieces
  (one per member: its ``card`` and ``location``, :func:`maps.ingest.owntracks.friend_piece`)
  for at most :data:`KEEP_S` seconds, loaded on the reads thread
  (:data:`maps.storage.dbthread.reads`); requests for a room being loaded wait for that one
  load. A request joins the pieces of everyone but its own member. The entry is
  forgotten at once when one of its members changes (stops sharing, is removed or
  renamed, gets a new share end or key) or the room does: with the device keys
  (:func:`maps.access.keycache.room_changed`, :func:`~maps.access.keycache.member_changed`), in this
  process and, through ``keys.forget`` on ``geoshare.keys``, in every other. A load that
  raced such a change of a member it holds is used by nobody: its waiters load again.
  A member who is not in the entry (one who starts sharing) changes nothing it shows:
  they appear with the next load, within :data:`KEEP_S`, as a new position does; that
  keeps a room where phones keep starting their shares from loading on every post. A
  timed share's end or a position passing the room's retention needs no message: the
  entry expires then.
- **per device, at most every** ``GEOSHARE["OWNTRACKS_FRIENDS_EVERY_S"]`` **seconds**
  (:data:`throttle`): the app keeps its friends between answers, so the posts in
  between are answered without them. The first post this process sees from a device
  gets them; at most :data:`MAX_DEVICES` devices are remembered (the oldest dropped,
  and a dropped device gets the friends on its next post).
"""

import asyncio
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from maps.ingest import owntracks
from maps.storage import selectors
from maps.storage.dbthread import reads

# The longest a room's friends are kept (seconds): how stale a friend's position in an
# answer may be.
KEEP_S = 1.0
# At most this many rooms are kept; past it the expired ones, then the oldest, go.
MAX_ROOMS = 10_000
# At most this many devices' last friends answer are remembered; past it the oldest go.
MAX_DEVICES = 100_000
# Loads of one room for one request when each raced a change of the room: past it the
# request is answered without friends rather than with a list that may be stale.
MAX_LOADS = 3


@dataclass(frozen=True, slots=True)
class RoomEntry:
    """One room's friends: ``pieces`` (bytes, by member id) of ``members`` (member
    ids, the same order), usable until ``expires`` (the cache's clock, seconds)."""

    members: tuple[int, ...]
    pieces: tuple[bytes, ...]
    expires: float

    def others(self, member_id: int) -> list[bytes]:
        """Return the pieces of every member but ``member_id``, as a new list."""
        try:
            i = self.members.index(member_id)
        except ValueError:
            return list(self.pieces)
        return [*self.pieces[:i], *self.pieces[i + 1:]]


def room_entry(room_pk: int, started: float, keep_s: float) -> RoomEntry:
    """Load room ``room_pk``'s friends (synchronous: the database) as a
    :class:`RoomEntry` that expires ``keep_s`` seconds after ``started``, or sooner
    when one of them drops out by the clock (:func:`maps.storage.selectors.room_friends`)."""
    now = timezone.now()
    friends, until = selectors.room_friends(room_pk, now)
    if until is not None:
        keep_s = max(0.0, min(keep_s, (until - now).total_seconds()))
    return RoomEntry(
        members=tuple(member_id for member_id, _name, _position in friends),
        pieces=tuple(owntracks.friend_piece(*friend) for friend in friends),
        expires=started + keep_s,
    )


class RoomFriends:
    """Room pk -> :class:`RoomEntry`, kept :data:`KEEP_S` seconds, forgotten on change.

    :meth:`get` runs on the event loop; :meth:`forget_room` and :meth:`clear` may be
    called from any thread (services forget from database threads). ``clock`` is a
    monotonic clock in seconds (tests set their own).
    """

    def __init__(self, keep_s: float = KEEP_S, max_rooms: int = MAX_ROOMS) -> None:
        self.keep_s = keep_s
        self.max_rooms = max_rooms
        self.clock = time.monotonic
        self.generation = 0
        self.loads = 0  # how many times a room was read from the database
        self._entries: dict[int, RoomEntry] = {}
        # room pk -> the asyncio task loading it (loop thread only)
        self._loading: dict[int, asyncio.Task[tuple[RoomEntry, bool]]] = {}
        # room pk, or (room pk, member pk) -> the generation that last forgot it
        self._forgotten: dict[int | tuple[int, int], int] = {}
        self._cleared = 0  # the generation that last forgot everything
        self._lock = threading.Lock()

    async def get(self, room_pk: int) -> RoomEntry | None:
        """Return room ``room_pk``'s :class:`RoomEntry`, loading it when it is missing
        or expired; ``None`` when every load raced a change of the room (at most
        :data:`MAX_LOADS`). Errors of the load (the database's) are raised."""
        loop = asyncio.get_running_loop()
        for _ in range(MAX_LOADS):
            entry = self._entries.get(room_pk)
            if entry is not None and self.clock() < entry.expires:
                return entry
            task = self._loading.get(room_pk)
            if task is None or task.done() or task.get_loop() is not loop:
                task = loop.create_task(self._load(room_pk))
                self._loading[room_pk] = task
                task.add_done_callback(lambda done: self._loaded(room_pk, done))
            # Shielded: a request that goes away does not cancel the others' load.
            entry, kept = await asyncio.shield(task)
            if kept:
                return entry
        return None

    async def _load(self, room_pk: int) -> tuple[RoomEntry, bool]:
        generation = self.generation
        started = self.clock()
        self.loads += 1
        entry = await reads.run(room_entry, room_pk, started, self.keep_s)
        return entry, self._put(room_pk, entry, generation)

    def _loaded(self, room_pk: int, task: asyncio.Task[tuple[RoomEntry, bool]]) -> None:
        if self._loading.get(room_pk) is task:
            del self._loading[room_pk]
        if not task.cancelled():
            # Seen here, so that a failed load whose requests all went away is not
            # logged as "never retrieved"; its waiters still get the error.
            task.exception()

    def _put(self, room_pk: int, entry: RoomEntry, generation: int) -> bool:
        with self._lock:
            forgotten = self._forgotten
            if max(self._cleared, forgotten.get(room_pk, 0)) > generation:
                return False
            if any(forgotten.get((room_pk, member_pk), 0) > generation
                   for member_pk in entry.members):
                return False
            if len(self._entries) >= self.max_rooms and room_pk not in self._entries:
                now = self.clock()
                for pk in [pk for pk, e in self._entries.items() if e.expires <= now]:
                    del self._entries[pk]
                if len(self._entries) >= self.max_rooms:
                    del self._entries[min(self._entries,
                                          key=lambda pk: self._entries[pk].expires)]
            self._entries[room_pk] = entry
            return True

    def forget_room(self, room_pk: int) -> None:
        """Forget room ``room_pk``'s friends, and any load of them under way."""
        with self._lock:
            self._mark(room_pk)
            self._entries.pop(room_pk, None)

    def forget_member(self, room_pk: int, member_pk: int) -> None:
        """Forget room ``room_pk``'s friends if member ``member_pk`` is among them,
        and any load of them under way that finds the member."""
        with self._lock:
            self._mark((room_pk, member_pk))
            entry = self._entries.get(room_pk)
            if entry is not None and member_pk in entry.members:
                del self._entries[room_pk]

    def _mark(self, mark: int | tuple[int, int]) -> None:
        self.generation += 1
        if len(self._forgotten) >= self.max_rooms:
            self._forgotten.clear()
            self._cleared = self.generation
        self._forgotten[mark] = self.generation

    def clear(self) -> None:
        """Forget every room's friends, and every load under way."""
        with self._lock:
            self.generation += 1
            self._cleared = self.generation
            self._entries.clear()
            self._forgotten.clear()


class FriendsThrottle:
    """Device pk -> when it last got the friends (``clock``, seconds), at most
    ``max_devices`` of them. On the event loop only."""

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        self.max_devices = max_devices
        self.clock = time.monotonic
        # device pk -> clock; insertion order is the order of sending
        self._sent: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def due(self, device_pk: int, every_s: float) -> bool:
        """Return whether device ``device_pk`` is due the friends: it never got them
        (here, or not since it was dropped), or got them ``every_s`` seconds ago or
        longer. ``every_s`` 0 or less: always."""
        if every_s <= 0:
            return True
        sent = self._sent.get(device_pk)
        return sent is None or self.clock() - sent >= every_s

    def sent(self, device_pk: int) -> None:
        """Note that device ``device_pk`` got the friends now."""
        self._sent.pop(device_pk, None)
        if len(self._sent) >= self.max_devices:
            del self._sent[next(iter(self._sent))]
        self._sent[device_pk] = self.clock()

    def clear(self) -> None:
        """Forget every device."""
        self._sent.clear()


rooms = RoomFriends()
throttle = FriendsThrottle()


async def friends_for(*, device_pk: int, member_id: int, room_pk: int) -> list[bytes]:
    """Return the pieces of the friends answer for a post of device ``device_pk`` of
    member ``member_id`` (room ``room_pk``): every other sharing member's ``card`` and
    ``location`` (:func:`maps.ingest.owntracks.answer_of` joins them), or ``[]`` when
    the device got them less than ``GEOSHARE["OWNTRACKS_FRIENDS_EVERY_S"]`` seconds ago.

    A new list each call (the caller may append to it). Raises what the database
    raises.
    """
    every_s = settings.GEOSHARE.get("OWNTRACKS_FRIENDS_EVERY_S", 10)
    if not throttle.due(device_pk, every_s):
        return []
    entry = await rooms.get(room_pk)
    if entry is None:
        return []
    if every_s > 0:
        throttle.sent(device_pk)
    return entry.others(member_id)


def room_changed(room_pk: int, member_pk: int | None = None) -> None:
    """Forget room ``room_pk``'s friends in this process, or with ``member_pk`` only
    if that member is among them (maps.access.keycache calls it wherever it forgets the
    room's or a member's keys)."""
    if member_pk is None:
        rooms.forget_room(room_pk)
    else:
        rooms.forget_member(room_pk, member_pk)


def clear() -> None:
    """Forget every room's friends (maps.access.keycache, when announcements may be lost)."""
    rooms.clear()


def keys_forgotten(room_pk, member_pk=None):
    """Forget what goes stale with forgotten keys: the hook the key cache calls
    (:func:`maps.access.keycache.on_forget`, registered by maps.apps). ``room_pk``
    ``None`` forgets every room's friends."""
    if room_pk is None:
        clear()
    else:
        room_changed(room_pk, member_pk)
