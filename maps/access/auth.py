"""The door check: who is calling, whether they may, and how fast.

Every door calls this module: the WebSocket consumer (:func:`socket_member`) and every
HTTP ingest view (the :func:`ingest_door` decorator, after healthchecks'
``@authorize``). It holds

- the client's address, with forwarded headers believed only from configured proxies
  (``GEOSHARE["TRUSTED_PROXIES"]``, default none);
- device-key and browser-session authentication;
- the role rule (:func:`may_publish`) and the history rule (:func:`history_scope`:
  whose positions, from when);
- the door of the history API and exports (:func:`api_member`: session or
  ``Authorization: Bearer <device key>``);
- the limiter: fixed windows on Django's cache (Redis when ``REDIS_URL`` is set, so
  processes share the counts), keyed by a hash of the address or by member id, never
  by a token or a key.

Services keep the last word (:class:`maps.services.NotAllowed`). Every limit is listed
with its number in docs/security.md.
"""

import base64
import binascii
import functools
import hashlib
import ipaddress
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from maps.access import keycache
from maps.models import HistoryVisibility, Member, Role, hash_key
from maps.protocol import events
from maps.storage import selectors
from maps.storage.dbthread import LOOKUP_GAP_S, Batcher
from maps.telemetry import metrics

PUBLISHING_ROLES = frozenset({Role.OWNER, Role.MEMBER})
# Device keys are 26 characters (32 before devices); anything much longer is not one
# (and is not hashed).
MAX_KEY_LENGTH = 200


def geoshare_setting(name):
    """Return ``settings.GEOSHARE[name]``, read at call time so tests can override it."""
    return settings.GEOSHARE[name]


# -- who is calling ----------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _networks(proxies):
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(address, networks):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(scope_or_request):
    """Return the client's IP address (text) from an ASGI scope or a Django request.

    The direct peer, unless it is one of ``GEOSHARE["TRUSTED_PROXIES"]`` (addresses or
    CIDR networks): then the rightmost ``X-Forwarded-For`` entry that is not a trusted
    proxy, which is the address the first trusted proxy saw. Entries further left are
    the client's own words and are never believed. Run uvicorn with
    ``--no-proxy-headers`` (geoshare.serving does), or it rewrites the peer from
    ``X-Forwarded-For`` itself before geoshare sees it.
    """
    if isinstance(scope_or_request, dict):
        client = scope_or_request.get("client") or ("unknown", 0)
        peer = str(client[0])
        forwarded = b",".join(
            value for name, value in scope_or_request.get("headers", ())
            if name == b"x-forwarded-for"
        ).decode("latin-1")
    else:
        peer = scope_or_request.META.get("REMOTE_ADDR", "unknown")
        forwarded = scope_or_request.META.get("HTTP_X_FORWARDED_FOR", "")
    proxies = tuple(geoshare_setting("TRUSTED_PROXIES"))
    if not proxies or not forwarded:
        return peer
    networks = _networks(proxies)
    if not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            # A trusted proxy wrote something that is not an address: believe nothing.
            return peer
        if not _trusted(hop, networks):
            return hop
    return hops[0]


# -- the limiter ---------------------------------------------------------------------------


def _limit_key(bucket, ident, window):
    digest = hashlib.sha256(str(ident).encode()).hexdigest()[:24]
    return f"geoshare:rl:{bucket}:{digest}:{int(time.time() // window)}"


def limit(bucket):
    """Return ``(max events, window seconds)`` of a bucket (``GEOSHARE["RATE_LIMITS"]``)."""
    return geoshare_setting("RATE_LIMITS")[bucket]


def retry_after(bucket):
    """Return the whole seconds until the current window of ``bucket`` ends (>= 1)."""
    _, window = limit(bucket)
    return max(1, int(window - time.time() % window + 0.999))


class _Counts:
    """The limiter's counters: Django's cache, or this process's memory when that is
    what the cache is anyway (``LocMemCache``, one process: the embedded default).

    Both count per ``(bucket, ident)`` in windows of ``window`` seconds aligned to the
    clock. The in-process counters skip the cache's key hashing, validation and
    pickling, which on the phone doors cost more than the rest of the limiter.
    """

    def __init__(self):
        self._local = {}  # (bucket, ident) -> (window index, count)
        self._lock = threading.Lock()

    def clear(self):
        """Forget every count (tests start from none)."""
        with self._lock:
            self._local.clear()

    def add(self, bucket, ident, window, count):
        """Add ``count`` (may be negative) to the current window; return its total."""
        if not _cache_in_process():
            return self._cache_add(bucket, ident, window, count)
        index = int(time.time() // window)
        key = (bucket, ident)
        with self._lock:
            found = self._local.get(key)
            total = count + (found[1] if found is not None and found[0] == index else 0)
            if found is None and len(self._local) >= _LOCAL_COUNTS_PRUNE_AT:
                self._prune()
            self._local[key] = (index, total)
        return total

    def peek(self, bucket, ident, window):
        """Return the current window's total without counting."""
        if not _cache_in_process():
            return cache.get(_limit_key(bucket, ident, window)) or 0
        found = self._local.get((bucket, ident))
        return found[1] if found is not None and found[0] == int(time.time() // window) else 0

    def _prune(self):
        now = time.time()
        windows = {bucket: window for bucket, (_allowed, window)
                   in geoshare_setting("RATE_LIMITS").items()}
        for key, (index, _count) in list(self._local.items()):
            window = windows.get(key[0])
            if window is None or index != int(now // window):
                del self._local[key]

    @staticmethod
    def _cache_add(bucket, ident, window, count):
        key = _limit_key(bucket, ident, window)
        if count > 0 and cache.add(key, count, timeout=window + 1):
            return count
        try:
            return cache.incr(key, count)
        except ValueError:  # expired between add and incr
            if count <= 0:
                return 0
            cache.add(key, count, timeout=window + 1)
            return count


# Past this many counters in memory, those of past windows are dropped.
_LOCAL_COUNTS_PRUNE_AT = 50_000
counts = _Counts()


def _cache_in_process():
    """Return whether Django's default cache lives in this process (no I/O to wait for)."""
    return settings.CACHES["default"]["BACKEND"] == (
        "django.core.cache.backends.locmem.LocMemCache")


def limit_hit(bucket, ident, count=1):
    """Count ``count`` events of ``bucket`` for ``ident``; return whether still allowed.

    Windows are aligned to the clock, so every process agrees on when one ends. An
    event refused for the limit is counted too (wrong keys, redemptions): trying harder
    does not help.
    """
    allowed, window = limit(bucket)
    return metrics.allowed(bucket, counts.add(bucket, ident, window, count) <= allowed)


def limit_take(bucket, ident, count=1):
    """Take ``count`` events from ``ident``'s budget if they all fit; return ``True``.

    Unlike :func:`limit_hit`, a refused take is not counted: a phone that is told to
    retry later can send the same positions again.
    """
    allowed, window = limit(bucket)
    if count > allowed:
        metrics.refused(bucket)
        return False
    if counts.add(bucket, ident, window, count) > allowed:
        counts.add(bucket, ident, window, -count)
        metrics.refused(bucket)
        return False
    return True


def limit_blocked(bucket, ident):
    """Return whether ``ident`` is over the limit of ``bucket`` (without counting)."""
    allowed, window = limit(bucket)
    return counts.peek(bucket, ident, window) > allowed


# -- members -------------------------------------------------------------------------------


def may_publish(member):
    """Return whether ``member`` (anything with a ``role``) may share a position."""
    return member.role in PUBLISHING_ROLES


def share_gate(state):
    """Return what a position does for a member whose share is ``state``.

    ``state`` is a :class:`maps.models.Share` value (``"off"``, ``"on"``, ``"ended"``).
    Returns ``"publish"`` while the share is on; ``"start"`` when the member never
    shared (the position starts an open-ended share, then is published); ``"refuse"``
    when the member's last share was ended by them or by its end time: the position
    is neither shown nor stored until they turn sharing on again. Over the WebSocket a
    refusal is an ``error`` frame (``not_sharing``); phone apps still get their success
    answer, so that their upload queues do not jam (docs/protocol.md, "Sharing").
    """
    if state == "on":
        return "publish"
    if state == "off":
        return "start"
    return "refuse"


@dataclass(slots=True, frozen=True)
class MemberRef:
    """What the publish path needs to know of a member, without touching the database.

    Built once per connection or request by :func:`member_ref`.
    """

    id: int
    room_pk: int
    room_public_id: str
    role: str

    @property
    def group(self):
        """The room's channel-layer group."""
        return events.room_group(self.room_pk)


def member_ref(member):
    """Return the :class:`MemberRef` of a :class:`~maps.models.Member` (room loaded)."""
    return MemberRef(id=member.pk, room_pk=member.room_id,
                     room_public_id=member.room.public_id, role=member.role)


# Returned instead of a member when the client's address tried too many wrong keys.
BLOCKED = object()


def key_member(key, address, *, key_hash=None):
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


def load_session(session_key):
    """Return the browser session stored under ``session_key``, or ``None``."""
    if not session_key:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key)


def socket_member(room_id, session_key, key, address):
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


def keys_members(requests):
    """Return :func:`key_member` of each ``(key hash, address)`` of ``requests``.

    Synchronous (database): the batched form of :func:`key_member`, one query per
    :data:`maps.storage.selectors.KEYS_PER_QUERY` keys
    (:func:`maps.storage.selectors.members_for_keys`).
    Each answer is the member (room and ``device`` loaded), ``None`` for a hash of no
    device, or :data:`BLOCKED`; every wrong key counts against its own address, as
    :func:`key_member` counts it, in the order of ``requests``.
    """
    found = selectors.members_for_keys([key_hash for key_hash, _address in requests])
    answers = []
    for key_hash, address in requests:
        member = found.get(key_hash)
        if member is None and not limit_hit("badkey", address):
            member = BLOCKED
        answers.append(member)
    return answers


def _session_engine_is_db():
    from django.contrib.sessions.backends import db

    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store.load is db.SessionStore.load


def sessions_members(requests):
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
    from maps.models import Room

    if not _session_engine_is_db():
        return [socket_member(room_id, session_key, None, None)
                for room_id, session_key in requests]
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    rooms = {room.public_id: room for room in Room.objects.filter(
        public_id__in={room_id for room_id, _key in requests})}
    stores = {}
    for _room_id, session_key in requests:
        if session_key and session_key not in stores:
            store = store_class(session_key)
            if store.session_key is not None:  # the engine's own check of the key
                stores[session_key] = store
    data = {}
    if stores:
        rows = store_class.get_model_class().objects.filter(
            session_key__in=list(stores), expire_date__gt=timezone.now())
        for row in rows.values_list("session_key", "session_data"):
            data[row[0]] = stores[row[0]].decode(row[1])
    wanted = {}
    for room_id, session_key in requests:
        room = rooms.get(room_id)
        session = data.get(session_key) or {}
        member_id = (session.get("members") or {}).get(room_id) if room else None
        if member_id is not None:
            wanted[(room_id, session_key)] = member_id
    members = {}
    ids = {int(pk) for pk in wanted.values() if str(pk).isdigit()}
    if ids:
        members = {m.pk: m for m in Member.objects.select_related("room").filter(
            pk__in=ids)}
    answers = []
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


def _key_refusal(room_id, member):
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


async def asocket_member(room_id, session_key, key, address):
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


def watch_link(token):
    """Return the usable watch link of ``token`` (member and room loaded), or ``None``.

    Synchronous (database). A link that ends with the member's share is usable only
    while that share is on.
    """
    from maps.models import Share, WatchLink, hash_key

    if not token or len(token) > MAX_KEY_LENGTH:
        return None
    link = (WatchLink.objects.select_related("member__room")
            .filter(token_hash=hash_key(token)).first())
    if link is None or not link.is_usable():
        return None
    if link.expires_at is None and link.member.share_state() != Share.ON:
        return None
    return link


# -- the HTTP ingest door --------------------------------------------------------------------

MAX_BODY_BYTES = 256 * 1024
MAX_POINTS_PER_REQUEST = 1000


class Refused(Exception):
    """A door refuses the request: ``status``, ``detail``, optional ``field``/``headers``."""

    def __init__(self, status, detail, field=None, headers=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers


def json_refusal(exc):
    """Return the JSON error every ingest door answers: ``{"error", "field"}``."""
    data = {"error": exc.detail}
    if exc.field is not None:
        data["field"] = exc.field
    return JsonResponse(data, status=exc.status, headers=exc.headers)


@dataclass(slots=True)
class Caller:
    """Who passed an ingest door: the member (a model, room loaded), its ref, the
    device whose key was used, the body, and what the key locator parsed."""

    member: object
    ref: MemberRef
    address: str
    body: bytes
    key_context: object
    device: object = None


@dataclass(slots=True)
class KeyClaim:
    """Where a request says its device key is, and how to refuse a wrong one.

    ``missing_status`` answers a request with no key at all (default: as unknown).
    ``context`` is whatever the locator parsed on the way (an OsmAnd payload), handed on
    to the view as ``caller.key_context``. ``key_hash`` names the device by its stored
    hash instead of ``key`` (a verified Hauk session).
    """

    key: str | None
    unknown_status: int = 401
    missing_status: int | None = None
    field: str | None = None
    context: object = None
    headers: dict | None = None
    key_hash: str | None = None


def read_body(request, max_bytes=MAX_BODY_BYTES):
    """Return the request body; raise :class:`Refused` (413) over ``max_bytes``."""
    try:
        # META rather than request.headers, which would build a mapping of every header.
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_bytes:
        raise _too_large(max_bytes)
    try:
        body = request.body
    except RequestDataTooBig:
        raise _too_large(max_bytes) from None
    if len(body) > max_bytes:
        raise _too_large(max_bytes)
    return body


def _too_large(max_bytes):
    return Refused(413, f"the body is larger than {max_bytes // 1024} KiB", "body")


def basic_password(request):
    """Return the password of an HTTP Basic ``Authorization`` header, or ``None``."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


async def akey_member(key, address, *, key_hash=None):
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


def ingest_door(locate_key, refuse=json_refusal, max_body=MAX_BODY_BYTES):
    """Decorate an async ingest view with the one prologue: size, key, rate, role.

    ``max_body`` is the largest body in bytes (256 KiB; a door whose app batches
    :data:`MAX_POINTS_PER_REQUEST` verbose points takes more).

    ``locate_key(request, body, **kwargs)`` returns a :class:`KeyClaim` or raises
    :class:`Refused` (or :class:`maps.domain.fixes.InvalidFix`, answered 400). The view is
    called as ``view(request, caller, **kwargs)`` with a :class:`Caller`. Refusals:
    413 for a body over ``max_body``, the claim's status (401, 400 or 404) for an unknown
    key, 429 with ``Retry-After`` for an address past its wrong-key limit, 403 for a
    viewer's key. ``refuse`` turns a :class:`Refused` into the app's error response.
    """
    from maps.domain.fixes import InvalidFix

    def decorator(view):
        @csrf_exempt
        @functools.wraps(view)
        async def door(request, **kwargs):
            address = client_address(request)
            try:
                body = read_body(request, max_body)
                try:
                    claim = locate_key(request, body, **kwargs)
                except InvalidFix as exc:
                    raise Refused(400, exc.detail, exc.field) from None
                if not claim.key and not claim.key_hash:
                    raise Refused(claim.missing_status or claim.unknown_status,
                                  f"{claim.field or 'a key'} (the device key) is required",
                                  claim.field, claim.headers)
                member = await akey_member(claim.key, address, key_hash=claim.key_hash)
                if member is BLOCKED:
                    raise Refused(429, "too many wrong device keys from this address; "
                                  "wait a minute",
                                  headers={"Retry-After": str(retry_after("badkey"))})
                if member is None:
                    raise Refused(claim.unknown_status, "unknown or revoked device key",
                                  claim.field, claim.headers)
                if not may_publish(member):
                    raise Refused(403, "this key belongs to a viewer, who cannot share a "
                                  "position")
                caller = Caller(member=member, ref=member_ref(member), address=address,
                                body=body, key_context=claim.context,
                                device=member.device)
                return await view(request, caller, **kwargs)
            except Refused as exc:
                return refuse(exc)

        # Served by the phone doors' own front (maps.ingest.front); functools.wraps
        # carries the mark to the decorators outside this one.
        door.ingest_door = True
        return door

    return decorator


async def in_cache_thread(function, *args):
    """Call a limiter ``function`` from the event loop: directly when the cache is in
    this process (a dict and a lock: microseconds), else in a worker thread (Redis)."""
    if _cache_in_process():
        return function(*args)
    return await sync_to_async(function, thread_sensitive=False)(*args)


def limit_take_positions(member_id, count):
    """Take ``count`` positions from the member's budget; return whether they fit."""
    return limit_take("positions", member_id, count)


def positions_allowed(member_id, count):
    """Take ``count`` positions from the member's budget; raise :class:`Refused` (429).

    ``RATE_LIMITS["positions"]`` per member, on every door together (the WebSocket
    takes from the same budget, :class:`maps.realtime.consumers.LocationConsumer`); at most
    :data:`MAX_POINTS_PER_REQUEST` in one request (413). A refused request stores
    nothing and is not counted, so the phone can send it again after ``Retry-After``.
    """
    if count > MAX_POINTS_PER_REQUEST:
        raise Refused(413, f"at most {MAX_POINTS_PER_REQUEST} positions per request",
                      "body")
    if not limit_take("positions", member_id, count):
        allowed, window = limit("positions")
        raise Refused(429, f"at most {allowed} positions per {window} s per member",
                      headers={"Retry-After": str(retry_after("positions"))})


# -- history: who sees whose positions, from when -------------------------------------

#: The roles that may see history at all, as the room allows. Anything else that may
#: come to stand for a caller (a watch-me link's) sees none.
HISTORY_ROLES = frozenset({Role.OWNER, Role.MEMBER, Role.VIEWER})


@dataclass(slots=True, frozen=True)
class HistoryScope:
    """What a caller may read of a room's history.

    ``members``: the visible members (models, by id), after the caller's ``member=``
    choice; ``floor``: the oldest time returned (aware, UTC): positions recorded or
    received before it are past the room's retention and never returned.
    """

    room: object
    members: list
    floor: datetime

    @property
    def member_ids(self):
        return [m.pk for m in self.members]


def history_scope(member, *, only=None, now=None):
    """Return the :class:`HistoryScope` of ``member`` (room loaded) in their room.

    The one history rule, used by every history endpoint (the map's history, the track
    API, the exports and the data download go through it):

    - the room's ``history_visibility``: ``everyone`` lets everyone in the room see
      everyone's history, viewers too; ``members`` (the default) lets owners and
      members see everyone's, viewers none; ``own`` lets each member see only their
      own (the owner too);
    - callers of any other role (watch-me links) see none;
    - nothing older than the room's retention (``now - retention_days``; nothing at
      all in a live-only room).

    ``only`` is a member id the caller asks for. Raises :class:`Refused`: 403 when the
    caller may see no history here, or not that member's; 404 (``field`` ``member``)
    when no member of the room has that id.
    """
    room = member.room
    now = now or timezone.now()
    visibility = room.history_visibility
    everyone = Member.objects.filter(room=room).order_by("pk")
    if member.role not in HISTORY_ROLES:
        raise Refused(403, "this link does not show history")
    if visibility == HistoryVisibility.OWN:
        visible = everyone.filter(pk=member.pk)
    elif visibility == HistoryVisibility.EVERYONE or may_publish(member):
        visible = everyone
    else:
        raise Refused(403, "in this room, history is shown to members, not to viewers")
    if only is not None:
        if not everyone.filter(pk=only).exists():
            raise Refused(404, "no member of this room has this id", "member")
        visible = visible.filter(pk=only)
        if not visible.exists():
            raise Refused(403, "in this room, you may see only your own history",
                          "member")
    return HistoryScope(room=room, members=list(visible), floor=now - room.retention())


def bearer_key(request):
    """Return ``(present, key)``: whether an ``Authorization`` header was sent, its key.

    ``key`` is the token of ``Authorization: Bearer <device key>``, or ``None`` for
    another scheme or an empty token.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return False, None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return True, None
    return True, token


_BEARER = {"WWW-Authenticate": 'Bearer realm="geoshare"'}


def api_member(request, room_id):
    """Return the member (room loaded) calling a history endpoint of room ``room_id``.

    Synchronous (database). Authenticated by ``Authorization: Bearer <device key>``
    (wins when sent) or by the browser session of a member of the room. Raises
    :class:`Refused`: 401 with nothing to authenticate by, or an unknown key; 429 with
    ``Retry-After`` for an address past its wrong-key limit (a wrong key counts
    against the address, as at the ingest doors); 404 for a key of another room, a
    session that is not in this room, and a room that does not exist, alike.
    """
    sent, key = bearer_key(request)
    if sent:
        if key is None:
            raise Refused(401, "send Authorization: Bearer <device key>",
                          "Authorization", _BEARER)
        found = key_member(key, client_address(request))
        if found is BLOCKED:
            raise Refused(429, "too many wrong device keys from this address; wait a "
                          "minute", headers={"Retry-After": str(retry_after("badkey"))})
        if found is None:
            raise Refused(401, "unknown or revoked device key", "Authorization", _BEARER)
        if found.room.public_id != room_id:
            raise Refused(404, "no such room", "room")
        return found
    if not request.session.get("members"):
        raise Refused(401, "open the room's invite link in this browser, or send "
                      "Authorization: Bearer <device key>", "Authorization", _BEARER)
    room = selectors.room_by_public_id(room_id)
    found = None if room is None else selectors.session_member(request.session, room)
    if found is None:
        raise Refused(404, "no such room", "room")
    return found
