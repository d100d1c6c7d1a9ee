"""The HTTP ingest endpoints: OwnTracks, OsmAnd / Traccar Client, GPSLogger, Overland
and Hauk (``/hauk/api/*.php``, :mod:`maps.ingest.hauk_views`).

Each view is wrapped in :func:`maps.access.doors.ingest_door`, which checks the body's size,
the device key, the address's wrong-key limit and the member's role before the view
runs. The view parses with its app's pure parser and publishes through
:func:`maps.services.positions_publish`, durably: the success answer is sent only once
the positions are committed. Nothing is stored or broadcast unless every position of a
request is valid and fits the member's position budget
(:func:`maps.access.doors.positions_allowed`), and the member's share is not ended.
"""

from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from maps.access import doors, limits
from maps.access.doors import Caller, KeyClaim
from maps.domain import policy, sources
from maps.domain.fixes import Fix, InvalidFix, now_ms
from maps.ingest import friends, gpslogger, hauk, osmand, overland, owntracks
from maps.ingest.common import form_params, load_json
from maps.services import (
    NotAllowed,
    amember_stop_sharing,
    ashare_claim,
    ashare_start,
    place_transition_record,
    places_for_device,
    places_import,
    positions_publish,
)
from maps.storage.history import StoreFailed
from maps.storage.selectors import to_ms
from maps.telemetry import metrics


def _content_type(request: HttpRequest) -> str:
    return (request.content_type or "").lower()


def _form(body: bytes, field: str = "body") -> dict[str, str]:
    try:
        return form_params(body.decode("utf-8"), field)
    except UnicodeDecodeError:
        raise InvalidFix(field, "the body is not UTF-8 form data") from None


async def _publish(caller: Caller, fixes: list[Fix]) -> None:
    """Store, then broadcast, validated fixes of the caller.

    Returns once they are committed (a success answer means stored); each fix carries
    the name of the caller's device. A member whose
    share has ended, or runs from another source (another phone app, a browser),
    is answered as usual, but nothing is stored or shown
    (:func:`maps.domain.policy.share_gate`): the app's upload queue must not jam.
    The first position of a member who never shared starts a share from this device. The member's
    position budget applies; the device's ``last_seen`` (its "last report" on the
    "Connect a phone" page) is written in the same commit. Raises
    :class:`maps.access.doors.Refused`: 429 past the position budget, 403 for a viewer, 503
    (with ``Retry-After``) when the database could not commit them.
    """
    if not fixes:
        return
    if caller.device is not None:
        # The key says which device sent them, not the payload: phones cannot claim
        # another device's name.
        fixes = [fix.from_device(caller.device.name) for fix in fixes]
    member = caller.member
    source = sources.device_source(caller.device.pk) if caller.device else ""
    gate = policy.share_gate(member.share_state(), source, member.share_source)
    if gate in ("refuse", "other_source"):
        return
    await limits.in_cache_thread(doors.positions_allowed, caller.ref.id, len(fixes))
    try:
        if gate in ("start", "claim") and not await ashare_claim(
                ref=caller.ref, source=source,
                source_name=caller.device.name if caller.device else "",
                start=gate == "start", until_ms=to_ms(member.sharing_until)):
            return
        await positions_publish(ref=caller.ref, fixes=fixes, durable=True,
                                device_id=caller.device.pk if caller.device else None)
    except NotAllowed as exc:
        raise doors.Refused(403, str(exc)) from None
    except StoreFailed:
        raise doors.Refused(503, "the positions could not be stored; send them again",
                           headers={"Retry-After": "5"}) from None


def _invalid(exc: InvalidFix) -> doors.Refused:
    return doors.Refused(400, exc.detail, exc.field)


# -- OwnTracks ---------------------------------------------------------------------------------


def _owntracks_key(request: HttpRequest, body: bytes) -> KeyClaim:
    return doors.KeyClaim(
        key=doors.basic_password(request) or request.GET.get("key"),
        unknown_status=401,
        headers={"WWW-Authenticate": 'Basic realm="geoshare"'},
    )


def _places_may_be_news(caller: Caller) -> bool:
    """Return whether the room's places may have changed since this device got them.

    Read from the key cache's room and device (maps.access.keycache), which forgets the room
    when its places change (``room.places``), so most posts need no query; only a
    ``True`` asks the database (:func:`places_for_device`, which decides). A process
    that missed that announcement sends the new places at most ``KEY_CACHE_S`` late.
    """
    changed = caller.member.room.places_changed
    if changed is None:
        return False
    sent = caller.device.places_sent
    return sent is None or sent < changed


@require_POST
@doors.ingest_door(_owntracks_key)
async def owntracks_view(request: HttpRequest, caller: Caller) -> HttpResponse:
    """OwnTracks HTTP mode: ``POST /ingest/owntracks/`` with one JSON message.

    Authenticated by HTTP Basic (the password is the device key; the user name is not
    used) or ``?key=``. A device with a secret (payload encryption) may send
    ``_type: encrypted`` messages, and its answers are encrypted the same way. Answers
    200 with a JSON array of ``card`` and ``location``
    messages of the room's other sharing members (OwnTracks shows them as friends; at
    most every ``GEOSHARE["OWNTRACKS_FRIENDS_EVERY_S"]`` seconds per device, ``[]``
    in between, positions up to 1 s old: :mod:`maps.ingest.friends`), and, when the room's
    places changed since this device last got them, a ``cmd`` ``setWaypoints`` with
    all of them (docs/phones.md, "Places"). A ``transition``
    for a place of the room records that crossing, once (maps.storage.history.place_transition);
    ``waypoints`` (or one ``waypoint``) make places the room does not have yet;
    401 for an unknown key, 403 for a viewer's key, 400 ``{"error", "field"}`` for bad
    input, 413 for a body over 256 KiB, 429 past a limit. Source:
    https://owntracks.org/booklet/tech/http/.
    """
    body = caller.body
    if body.strip():
        content_type = _content_type(request)
        if content_type and content_type != "application/json":
            raise doors.Refused(400, "the body must be application/json", "Content-Type")
        try:
            kind, value = owntracks.parse_message(body, secret=caller.device.secret)
        except InvalidFix as exc:
            raise _invalid(exc) from None
        if kind == "location":
            await _publish(caller, [value])
            metrics.POSITIONS_BY_DOOR["owntracks"].inc()
        elif kind == "transition":
            # Announced after its commit by the one publisher, as computed ones are.
            await database_sync_to_async(place_transition_record)(
                ref=caller.ref, rid=value.rid, desc=value.desc, kind=value.kind,
                ts=value.ts)
        elif kind == "waypoints":
            await database_sync_to_async(places_import)(member=caller.member,
                                                        waypoints=value)
    # An empty body is what OwnTracks posts when a friend is deleted in the app.
    pieces = await friends.friends_for(device_pk=caller.device.pk, member_id=caller.ref.id,
                                       room_pk=caller.ref.room_pk)
    places = None
    if _places_may_be_news(caller):
        places = await database_sync_to_async(places_for_device)(device=caller.device)
    if places is not None:
        pieces.append(orjson.dumps(owntracks.set_waypoints(places)))
    return HttpResponse(owntracks.answer_of(pieces, caller.device.secret),
                        content_type="application/json")


# -- OsmAnd and Traccar Client -------------------------------------------------------------------


def _osmand_key(request: HttpRequest, body: bytes) -> KeyClaim:
    """Find the device key of an OsmAnd request, parsing the payload on the way."""
    content_type = _content_type(request)
    if content_type == "application/json":
        payload = load_json(body)
        field = "device_id" if type(payload) is dict else "id"
        # Traccar's server answers 404 for an unknown device in JSON, 400 otherwise.
        return doors.KeyClaim(key=osmand.json_device_id(payload), unknown_status=404,
                             missing_status=400, field=field, context=("json", payload))
    if request.GET:
        payload = request.GET
    elif content_type in ("", "application/x-www-form-urlencoded"):
        payload = _form(body)
    else:
        raise InvalidFix("Content-Type", "send a query string, a form body or "
                         "application/json")
    return doors.KeyClaim(key=osmand.device_id(payload), unknown_status=400, field="id",
                         context=("params", payload))


@require_http_methods(["GET", "POST"])
@doors.ingest_door(_osmand_key)
async def osmand_view(request: HttpRequest, caller: Caller) -> HttpResponse:
    """OsmAnd protocol and Traccar Client: ``/ingest/osmand/``, GET or POST.

    A query string or form body (:func:`osmand.parse_params`, ``id`` = device key), or
    with ``Content-Type: application/json`` Traccar Client's JSON or a JSON batch
    (:func:`osmand.parse_json`). Answers 200 with an empty body. An unknown key is
    400 for the query form and 404 for JSON, as Traccar's server answers; a viewer's
    key 403; bad input 400 ``{"error", "field"}``; a body over 256 KiB or over 1,000
    positions 413; 429 past a limit. Traccar Client's ``id=<key>&notificationToken=...``
    without a position answers 200 and changes nothing.
    """
    kind, payload = caller.key_context
    if kind == "params" and osmand.is_token_upload(payload):
        # Traccar Client's push token, no position: nothing to store, nothing to refuse.
        return HttpResponse(status=200)
    try:
        if kind == "json":
            _key, fixes = osmand.parse_json(payload)
        else:
            fixes = [osmand.parse_params(payload)]
    except InvalidFix as exc:
        raise _invalid(exc) from None
    await _publish(caller, fixes)
    metrics.POSITIONS_BY_DOOR["osmand"].inc(len(fixes))
    return HttpResponse(status=200)


# -- GPSLogger -------------------------------------------------------------------------------------


def _gpslogger_key(request: HttpRequest, body: bytes, key: str) -> KeyClaim:
    return doors.KeyClaim(key=key, unknown_status=401)


@require_http_methods(["GET", "POST"])
@doors.ingest_door(_gpslogger_key)
async def gpslogger_view(request: HttpRequest, caller: Caller, key: str) -> HttpResponse:
    """GPSLogger custom URL: ``/ingest/gpslogger/<key>/?lat=%LAT&...``, GET or POST.

    Parameters come from the query string, and from a form or JSON-object body when
    GPSLogger is set to POST one (:func:`gpslogger.parse`). Answers 200 with an empty
    body; 401 for an unknown key, 403 for a viewer's key, 400 ``{"error", "field"}``
    for bad input, 413 for a body over 256 KiB, 429 past a limit.
    """
    body = caller.body
    content_type = _content_type(request)
    try:
        params = dict(request.GET.items())
        if body.strip():
            if content_type == "application/json":
                extra = load_json(body)
                if type(extra) is not dict:
                    raise InvalidFix("body", "a JSON body must be an object")
            elif content_type in ("", "application/x-www-form-urlencoded"):
                extra = _form(body)
            else:
                raise InvalidFix(
                    "Content-Type", "send a query string, a form body or application/json"
                )
            params.update(extra)
        fix = gpslogger.parse(params)
    except InvalidFix as exc:
        raise _invalid(exc) from None
    await _publish(caller, [fix])
    metrics.POSITIONS_BY_DOOR["gpslogger"].inc()
    return HttpResponse(status=200)


# -- Overland ------------------------------------------------------------------------------------

# Overland's points are about 600 bytes of JSON each (its README): a full batch of
# MAX_POINTS_PER_REQUEST needs more than the other doors' 256 KiB.
OVERLAND_MAX_BODY = 1024 * doors.MAX_POINTS_PER_REQUEST


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _overland_key(request: HttpRequest, body: bytes) -> KeyClaim:
    return doors.KeyClaim(key=_bearer(request) or request.GET.get("key"), unknown_status=401,
                         field="key", headers={"WWW-Authenticate": 'Bearer realm="geoshare"'})


@require_POST
@doors.ingest_door(_overland_key, max_body=OVERLAND_MAX_BODY)
async def overland_view(request: HttpRequest, caller: Caller) -> JsonResponse:
    """Overland (iOS): ``POST /ingest/overland/`` with ``{"locations": [Feature, ...]}``.

    The device key is the app's access token (``Authorization: Bearer <key>``) or
    ``?key=`` in the URL. Answers 200 ``{"result": "ok"}`` once every point is
    accepted (the app then drops its queue), features without a geometry skipped;
    401 for an unknown key, 403 for a viewer's, 400 ``{"error", "field"}`` for bad
    input (nothing stored), 413 over 1,000 points or 1 MiB, 429 past a limit. Source:
    https://github.com/aaronpk/Overland-iOS (README).
    """
    content_type = _content_type(request)
    if content_type and content_type != "application/json":
        raise doors.Refused(400, "the body must be application/json", "Content-Type")
    try:
        fixes = overland.parse(load_json(caller.body))
    except InvalidFix as exc:
        raise _invalid(exc) from None
    await _publish(caller, fixes)
    metrics.POSITIONS_BY_DOOR["overland"].inc(len(fixes))
    return JsonResponse({"result": "ok"})


# -- Hauk ------------------------------------------------------------------------------------------

# What geoshare answers in X-Hauk-Version: the app enables group shares from 1.1,
# share ids in post.php's answer from 1.2 and end-to-end encryption from 1.5
# (Hauk's Constants.java VERSION_COMPAT_*); geoshare answers as Hauk's server 1.6.2.
HAUK_VERSION = "1.6.2"
HAUK_SID_SALT = "geoshare.hauk.session"


def hauk_sid(*, key_hash: str, until_ms: int | None, issued_ms: int) -> str:
    """Return a Hauk session id: the device's key hash, the share's end and its start,
    signed with Django's ``SECRET_KEY`` (``django.core.signing``).

    Nothing is stored: the signature makes the id unguessable and unforgeable, and the
    key hash in it makes it die with the device key (rotated or revoked).
    """
    return signing.dumps({"h": key_hash, "u": until_ms, "t": issued_ms},
                         salt=HAUK_SID_SALT, compress=True)


def hauk_session(sid: str | None) -> dict[str, Any] | None:
    """Return ``{"h", "u", "t"}`` of a session id made by :func:`hauk_sid`, or ``None``."""
    if not sid or len(sid) > 500:
        return None
    try:
        session = signing.loads(sid, salt=HAUK_SID_SALT)
    except signing.BadSignature:
        return None
    if type(session) is not dict or type(session.get("h")) is not str:
        return None
    return session


def hauk_lines(*lines: str) -> HttpResponse:
    """Return a Hauk answer: one line each, ``X-Hauk-Version`` set, always status 200.

    The app reads only the lines of a 200 answer (``ConnectionThread.java``) and shows
    the first one when it is not ``OK``, so a refusal is a 200 whose first line says
    what is wrong.
    """
    body = "".join(f"{line}\n" for line in lines)
    return HttpResponse(body, status=200, content_type="text/plain; charset=utf-8",
                        headers={"X-Hauk-Version": HAUK_VERSION})


SESSION_EXPIRED = "Session expired!"


def _hauk_refusal(exc: doors.Refused) -> HttpResponse:
    if exc.status in (400, 404) and exc.field in ("sid",):
        return hauk_lines(SESSION_EXPIRED, exc.detail)
    if exc.field == "pwd" and exc.status in (400, 401):
        return hauk_lines("Incorrect password!", "Enter the device key from geoshare's "
                          "Connect a phone page as the password.")
    detail = f"{exc.field}: {exc.detail}" if exc.field and not exc.detail.startswith(
        f"{exc.field}:") else exc.detail
    return hauk_lines(detail)


def _hauk_key(request: HttpRequest, body: bytes) -> KeyClaim:
    """``create.php``: the device key is Hauk's password, ``pwd``."""
    form = _form(body)
    return doors.KeyClaim(key=form.get("pwd"), unknown_status=401, field="pwd",
                         context=form)


def _hauk_sid_key(request: HttpRequest, body: bytes) -> KeyClaim:
    """``post.php`` / ``stop.php``: the device comes from the signed session id."""
    form = _form(body)
    session = hauk_session(form.get("sid"))
    if session is None:
        raise doors.Refused(400, "unknown session: start a new share", "sid")
    return doors.KeyClaim(key=None, key_hash=session["h"], unknown_status=400,
                         field="sid", context=(form, session))


def _hauk_view_link(request: HttpRequest, caller: Caller) -> str:
    return request.build_absolute_uri(f"/r/{caller.ref.room_public_id}/")


@require_POST
@doors.ingest_door(_hauk_key, refuse=_hauk_refusal)
async def hauk_create(request: HttpRequest, caller: Caller) -> HttpResponse:
    """Hauk ``api/create.php``: start a share of ``dur`` seconds with the device key.

    The member sets ``https://<site>/hauk/`` as the server and the device key as the
    password. Answers ``OK``, the session id (:func:`hauk_sid`), the room's map link
    and the room's id; a refusal's first line says why: ``Incorrect password!``, an
    encrypted (``e2e=1``) or group (``mod`` 1, 2) share, a bad ``dur``/``int``.
    """
    try:
        duration_s = hauk.parse_create(caller.key_context)
    except InvalidFix as exc:
        raise _invalid(exc) from None
    issued = now_ms()
    until = issued + duration_s * 1000
    # Started on the phone: the phone is the share's source.
    await ashare_start(ref=caller.ref, until_ms=until,
                       source=sources.device_source(caller.device.pk),
                       source_name=caller.device.name)
    sid = hauk_sid(key_hash=caller.device.key_hash, until_ms=until, issued_ms=issued)
    return hauk_lines("OK", sid, _hauk_view_link(request, caller),
                      caller.ref.room_public_id)


def _hauk_live(caller: Caller, session: dict[str, Any]) -> None:
    """Raise :class:`Refused` unless the session's share is still on."""
    stopped = to_ms(caller.member.stopped_at)
    if session["u"] is not None and now_ms() > session["u"]:
        raise doors.Refused(400, "the share's time is over: start a new share", "sid")
    if stopped is not None and stopped >= session["t"]:
        raise doors.Refused(400, "the share was stopped: start a new share", "sid")


@require_POST
@doors.ingest_door(_hauk_sid_key, refuse=_hauk_refusal)
async def hauk_post(request: HttpRequest, caller: Caller) -> HttpResponse:
    """Hauk ``api/post.php``: publish one position of the session's device.

    ``time`` is epoch seconds with a fraction, ``spd`` m/s, ``acc`` m. Answers ``OK``,
    the link format and the share ids (as Hauk 1.2+); ``Session expired!`` when the
    share's time is over, it was stopped, or the device key changed.
    """
    form, session = caller.key_context
    _hauk_live(caller, session)
    try:
        fix = hauk.parse_post(form)
    except InvalidFix as exc:
        raise _invalid(exc) from None
    await _publish(caller, [fix])
    metrics.POSITIONS_BY_DOOR["hauk"].inc()
    link_format = request.build_absolute_uri("/r/") + "%s/"
    return hauk_lines("OK", link_format, caller.ref.room_public_id)


@require_POST
@doors.ingest_door(_hauk_sid_key, refuse=_hauk_refusal)
async def hauk_stop(request: HttpRequest, caller: Caller) -> HttpResponse:
    """Hauk ``api/stop.php``: end the share; the member's marker goes from the map.

    A share already over (time up, stopped) answers ``OK`` and changes nothing, as
    Hauk's own server does for a session it no longer has.
    """
    _form_, session = caller.key_context
    try:
        _hauk_live(caller, session)
    except doors.Refused:
        return hauk_lines("OK")
    await amember_stop_sharing(ref=caller.ref)
    return hauk_lines("OK")


@csrf_exempt
async def hauk_unsupported(request: HttpRequest, name: str) -> HttpResponse:
    """Other Hauk endpoints (``adopt.php``, ``new-link.php``, ...): a clear line."""
    return hauk_lines(f"geoshare does not offer Hauk's {name}.php: only sharing your "
                      "own location alone")


# Served by maps.ingest.front, as the doors are (a function attribute: mypy knows none).
hauk_unsupported.ingest_door = True  # type: ignore[attr-defined]
