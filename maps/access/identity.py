"""Who is calling: a device key or a browser session, answered from memory when it can be.

The WebSocket handshake (:func:`socket_member`, :func:`asocket_member`), the phone
doors (:func:`akey_member`) and the history door (:func:`key_member`) find the member
here. A wrong key counts against the caller's address (:mod:`maps.access.limits`).
"""

import enum
from collections.abc import Sequence
from importlib import import_module
from typing import Any, Final

from django.conf import settings
from django.contrib.sessions.backends import db as db_sessions
from django.contrib.sessions.backends.base import SessionBase
from django.utils import timezone

from maps.access import keycache
from maps.access.limits import limit_hit
from maps.domain.refs import MemberRef
from maps.models import Member, Room, WatchLink, hash_key
from maps.protocol import events
from maps.storage import selectors
from maps.storage.dbthread import LOOKUP_GAP_S, Batcher

# Device keys are 26 characters (32 before devices); anything much longer is not one
# (and is not hashed).
MAX_KEY_LENGTH = 200


def member_ref(member: Member) -> MemberRef:
    """Return the :class:`MemberRef` of a :class:`~maps.models.Member` (room loaded)."""
    return MemberRef(id=member.pk, room_pk=member.room_id,
                     room_public_id=member.room.public_id, role=member.role)


class Blocked(enum.Enum):
    """The type of :data:`BLOCKED` (an enum member, so that ``is BLOCKED`` narrows)."""

    BLOCKED = "blocked"


# Returned instead of a member when the client's address tried too many wrong keys.
BLOCKED: Final = Blocked.BLOCKED

#: A member found by device key (room and ``device`` loaded), none, or :data:`BLOCKED`.
KeyAnswer = Member | Blocked | None

#: ``(close code or None, member, room)``: what a WebSocket handshake is answered.
SocketAnswer = tuple[int | None, Member | None, Room | None]


def key_member(key: str | None, address: str | None, *,
               key_hash: str | None = None) -> KeyAnswer:
    """Return the member of device ``key`` (room loaded), ``None``, or :data:`BLOCKED`.

    Synchronous (database): one indexed query on the devices. The member's ``device``
    attribute is the :class:`~maps.models.Device` the key belongs to, so a door knows
    which of the member's devices called. ``key_hash`` is the stored hash instead of
    the key (a Hauk session id carries it, signed).

    A valid key always works: failures from an address never lock out a key that is
    right, so nobody can lock out a victim by naming the victim's address. A wrong key
    counts against ``address``; past ``RATE_LIMITS["badkey"]`` it gets :data:`BLOCKED`.
    """
    member = None
    if key_hash is not None:
        member = selectors.member_for_key(key_hash=key_hash)
    elif key and len(key) <= MAX_KEY_LENGTH:
        member = selectors.member_for_key(key)
    if member is not None:
        return member
    if not limit_hit("badkey", address):
        return BLOCKED
    return None


def load_session(session_key: str | None) -> SessionBase | None:
    """Return the browser session stored under ``session_key``, or ``None``."""
    if not session_key:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    store: SessionBase = engine.SessionStore(session_key)
    return store


def socket_member(room_id: str, session_key: str | None, key: str | None,
                  address: str | None) -> SocketAnswer:
    """Return ``(close_code, member, room)`` for a WebSocket; ``close_code`` ``None`` = ok.

    Synchronous (database). ``session_key`` is the session cookie's value. A device key
    wins over the session; a key of another room is refused with 4403, an unknown key
    with 4401, an address that tried too many wrong keys lately with 4429, and a room
    that does not exist with 4404.
    """
    if key:
        member = key_member(key, address)
        if member is BLOCKED:
            return events.CLOSE_FLOOD, None, None
        if member is not None and member.room.public_id == room_id:
            return None, member, member.room
        return _key_refusal(room_id, member)
    room = selectors.room_by_public_id(room_id)
    if room is None:
        return events.CLOSE_NO_ROOM, None, None
    session = load_session(session_key)
    if session is None or not session.get("members"):
        return events.CLOSE_NOT_AUTHENTICATED, None, room
    member = selectors.session_member(session, room)
    if member is None:
        return events.CLOSE_FORBIDDEN, None, room
    return None, member, room


def keys_members(requests: Sequence[tuple[str, str | None]]) -> list[KeyAnswer]:
    """Return :func:`key_member` of each ``(key hash, address)`` of ``requests``.

    Synchronous (database): the batched form of :func:`key_member`, one query per
    :data:`maps.storage.selectors.KEYS_PER_QUERY` keys
    (:func:`maps.storage.selectors.members_for_keys`).
    Each answer is the member (room and ``device`` loaded), ``None`` for a hash of no
    device, or :data:`BLOCKED`; every wrong key counts against its own address, as
    :func:`key_member` counts it, in the order of ``requests``.
    """
    found = selectors.members_for_keys([key_hash for key_hash, _address in requests])
    answers: list[KeyAnswer] = []
    for key_hash, address in requests:
        member: KeyAnswer = found.get(key_hash)
        if member is None and not limit_hit("badkey", address):
            member = BLOCKED
        answers.append(member)
    return answers


def _session_engine_is_db() -> bool:
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store.load is db_sessions.SessionStore.load


def sessions_members(requests: Sequence[tuple[str, str | None]]) -> list[SocketAnswer]:
    """Return :func:`socket_member` of each ``(room_id, session_key)`` of ``requests``
    (WebSockets without a device key): ``(close_code, member, room)`` each.

    Synchronous (database). With Django's database session engine, three queries for
    the lot (the rooms by public id, the unexpired sessions by key, the members by
    id), each session decoded by the engine's own ``decode``; with another engine each
    session is loaded as :func:`load_session` loads it. The answers are
    :func:`socket_member`'s: 4404 for no such room, 4401 for no session, an expired or
    logged-out one, or one in no room, 4403 for a session not in this room (or whose
    member was removed).
    """
    if not _session_engine_is_db():
        return [socket_member(room_id, session_key, None, None)
                for room_id, session_key in requests]
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    rooms = {room.public_id: room for room in Room.objects.filter(
        public_id__in={room_id for room_id, _key in requests})}
    stores: dict[str, Any] = {}
    for _room_id, session_key in requests:
        if session_key and session_key not in stores:
            store = store_class(session_key)
            if store.session_key is not None:  # the engine's own check of the key
                stores[session_key] = store
    data: dict[str | None, dict[str, Any]] = {}
    if stores:
        rows = store_class.get_model_class().objects.filter(
            session_key__in=list(stores), expire_date__gt=timezone.now())
        for row in rows.values_list("session_key", "session_data"):
            data[row[0]] = stores[row[0]].decode(row[1])
    wanted: dict[tuple[str, str | None], Any] = {}
    for room_id, session_key in requests:
        room = rooms.get(room_id)
        session = data.get(session_key) or {}
        # A session's value: whatever was stored (digits are a member's pk).
        member_id: Any = (session.get("members") or {}).get(room_id) if room else None
        if member_id is not None:
            wanted[(room_id, session_key)] = member_id
    members: dict[int, Member] = {}
    ids = {int(pk) for pk in wanted.values() if str(pk).isdigit()}
    if ids:
        members = {m.pk: m for m in Member.objects.select_related("room").filter(
            pk__in=ids)}
    answers: list[SocketAnswer] = []
    for room_id, session_key in requests:
        room = rooms.get(room_id)
        if room is None:
            answers.append((events.CLOSE_NO_ROOM, None, None))
            continue
        session = data.get(session_key) or {}
        if not session.get("members"):
            answers.append((events.CLOSE_NOT_AUTHENTICATED, None, room))
            continue
        member_id = wanted.get((room_id, session_key))
        member = members.get(int(member_id)) if str(member_id).isdigit() else None
        if member is None or member.room_id != room.pk:
            answers.append((events.CLOSE_FORBIDDEN, None, room))
            continue
        answers.append((None, member, room))
    return answers


def _key_refusal(room_id: str, member: Member | None) -> SocketAnswer:
    """The close code of a known key of another room, or of an unknown key."""
    room = selectors.room_by_public_id(room_id)
    if room is None:
        return events.CLOSE_NO_ROOM, None, None
    if member is None:
        return events.CLOSE_NOT_AUTHENTICATED, None, room
    return events.CLOSE_FORBIDDEN, None, room


# The handshakes' and doors' database reads, coalesced under load (maps.storage.dbthread).
key_loads = Batcher(keycache.loader, keys_members, gap=LOOKUP_GAP_S)


session_loads = Batcher(keycache.loader, sessions_members, gap=LOOKUP_GAP_S)


async def asocket_member(room_id: str, session_key: str | None, key: str | None,
                         address: str | None) -> SocketAnswer:
    """:func:`socket_member` from the event loop (the WebSocket handshake).

    A device key this process looked up lately is answered from memory
    (:mod:`maps.access.keycache`), as on the phone doors; everything else is looked up on the
    reads thread, whose connection stays open (:mod:`maps.storage.dbthread`), and a key found
    there is kept. Lookups that arrive while one is under way go together in one
    query (:data:`key_loads`, :data:`session_loads`): a reconnect storm after a
    restart pays a query per few hundred sockets, not one (three with a session) per
    socket. The answers are :func:`socket_member`'s.
    """
    if not key:
        return await session_loads.load((room_id, session_key))
    if len(key) > MAX_KEY_LENGTH:
        return await keycache.loader.run(socket_member, room_id, session_key, key,
                                         address)
    key_hash = hash_key(key)
    cached = keycache.keys.get(key_hash)
    if cached is not None and cached.room.public_id == room_id:
        return None, cached, cached.room
    generation = keycache.keys.generation
    member = await key_loads.load((key_hash, address))
    if member is BLOCKED:
        return events.CLOSE_FLOOD, None, None
    if member is not None and member.room.public_id == room_id:
        keycache.keys.put(key_hash, member, generation)
        return None, member, member.room
    return await keycache.loader.run(_key_refusal, room_id, member)


def watch_link(token: str | None) -> WatchLink | None:
    """Return the usable watch link of ``token`` (member and room loaded), or ``None``.

    Synchronous (database). A link that ends with the member's share is usable only
    while that share is on.
    """
    if not token or len(token) > MAX_KEY_LENGTH:
        return None
    link = (WatchLink.objects.select_related("member__room")
            .filter(token_hash=hash_key(token)).first())
    if link is None:
        return None
    if not link.is_usable(timezone.now()):
        return None
    return link


async def akey_member(key: str | None, address: str | None, *,
                      key_hash: str | None = None) -> KeyAnswer:
    """:func:`key_member` from the event loop, answered from memory when it can be.

    A key this process looked up in the last ``GEOSHARE["KEY_CACHE_S"]`` seconds, with
    nothing changed in its room since (:mod:`maps.access.keycache`), needs no query. Wrong
    keys always go to the database, and count against ``address`` there. Lookups that
    arrive while one is under way go together in one query (:data:`key_loads`).
    """
    if key_hash is None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return await keycache.loader.run(key_member, key, address)
        key_hash = hash_key(key)
    cached = keycache.keys.get(key_hash)
    if cached is not None:
        return cached
    generation = keycache.keys.generation
    member = await key_loads.load((key_hash, address))
    if member is not None and member is not BLOCKED:
        keycache.keys.put(key_hash, member, generation)
    return member
