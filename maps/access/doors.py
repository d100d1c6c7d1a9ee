"""The phone doors' one prologue (after healthchecks' ``@authorize``): size, key, rate, role.

Every HTTP ingest view is wrapped in :func:`ingest_door`; the refusal type
:class:`Refused` and the body and header readers are shared with the history door
(:mod:`maps.access.scope`).
"""

import base64
import binascii
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from maps.access.address import client_address
from maps.access.identity import BLOCKED, akey_member, member_ref
from maps.access.limits import limit, limit_take, retry_after
from maps.domain.fixes import InvalidFix
from maps.domain.policy import may_publish
from maps.domain.refs import MemberRef
from maps.models import Device, Member

MAX_BODY_BYTES = 256 * 1024


MAX_POINTS_PER_REQUEST = 1000


class Refused(Exception):
    """A door refuses the request: ``status``, ``detail``, optional ``field``/``headers``."""

    def __init__(self, status: int, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers


def json_refusal(exc: Refused) -> JsonResponse:
    """Return the JSON error every ingest door answers: ``{"error", "field"}``."""
    data: dict[str, str] = {"error": exc.detail}
    if exc.field is not None:
        data["field"] = exc.field
    return JsonResponse(data, status=exc.status, headers=exc.headers)


@dataclass(slots=True)
class Caller:
    """Who passed an ingest door: the member (a model, room loaded), its ref, the
    device whose key was used, the body, and what the key locator parsed."""

    member: Member
    ref: MemberRef
    address: str
    body: bytes
    # What the door's key locator parsed (KeyClaim.context): its own shape per door.
    key_context: Any
    # Always the device whose key was used (the doors take device keys only).
    device: Device


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
    context: Any = None
    headers: dict[str, str] | None = None
    key_hash: str | None = None


def read_body(request: HttpRequest, max_bytes: int = MAX_BODY_BYTES) -> bytes:
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


def _too_large(max_bytes: int) -> Refused:
    return Refused(413, f"the body is larger than {max_bytes // 1024} KiB", "body")


def basic_password(request: HttpRequest) -> str | None:
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


#: An ingest view as :func:`ingest_door` calls it: ``view(request, caller, **kwargs)``.
DoorView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]
#: What :func:`ingest_door` makes of one: ``door(request, **kwargs)``.
Door = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def ingest_door(
    locate_key: Callable[..., KeyClaim],
    refuse: Callable[[Refused], HttpResponseBase] = json_refusal,
    max_body: int = MAX_BODY_BYTES,
) -> Callable[[DoorView], Door]:
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
    def decorator(view: DoorView) -> Door:
        @csrf_exempt
        @functools.wraps(view)
        async def door(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
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
        # A plain function attribute, which mypy does not know of functions.
        door.ingest_door = True  # type: ignore[attr-defined]
        return door

    return decorator


def positions_allowed(member_id: int, count: int) -> None:
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


def bearer_key(request: HttpRequest) -> tuple[bool, str | None]:
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
