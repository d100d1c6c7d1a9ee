"""The HTTP ingest endpoints: OwnTracks, OsmAnd / Traccar Client and GPSLogger.

Each view is wrapped in :func:`maps.auth.ingest_door`, which checks the body's size,
the device key, the address's wrong-key limit and the member's role before the view
runs. The view parses with its app's pure parser and publishes through
:func:`maps.services.positions_publish`. Nothing is stored or broadcast unless every
position of a request is valid and fits the member's position budget
(:func:`maps.auth.positions_allowed`).
"""

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.http import HttpResponse, JsonResponse, QueryDict
from django.views.decorators.http import require_http_methods, require_POST

from .. import auth, metrics, selectors
from ..fixes import InvalidFix
from ..services import NotAllowed, positions_publish
from . import gpslogger, osmand, owntracks
from .common import load_json

_positions_allowed = sync_to_async(auth.positions_allowed, thread_sensitive=False)


def _content_type(request):
    return (request.content_type or "").lower()


def _form(body, field="body"):
    try:
        return QueryDict(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidFix(field, "the body is not UTF-8 form data") from None


async def _publish(caller, fixes):
    """Publish validated fixes of the caller; raise :class:`maps.auth.Refused`."""
    await _positions_allowed(caller.ref.id, len(fixes))
    try:
        await positions_publish(member=caller.ref, fixes=fixes)
    except NotAllowed as exc:
        raise auth.Refused(403, str(exc)) from None


def _invalid(exc):
    return auth.Refused(400, exc.detail, exc.field)


# -- OwnTracks ---------------------------------------------------------------------------------


def _owntracks_key(request, body):
    return auth.KeyClaim(
        key=auth.basic_password(request) or request.GET.get("key"),
        unknown_status=401,
        headers={"WWW-Authenticate": 'Basic realm="geoshare"'},
    )


def _owntracks_friends(member_id, room_pk):
    messages = []
    for friend_id, name, position in selectors.friend_positions(member_id, room_pk):
        messages.extend(owntracks.friend_messages(friend_id, name, position))
    return messages


@require_POST
@auth.ingest_door(_owntracks_key)
async def owntracks_view(request, caller):
    """OwnTracks HTTP mode: ``POST /ingest/owntracks/`` with one JSON message.

    Authenticated by HTTP Basic (the password is the device key; the user name is not
    used) or ``?key=``. Answers 200 with a JSON array of ``card`` and ``location``
    messages of the room's other sharing members (OwnTracks shows them as friends);
    401 for an unknown key, 403 for a viewer's key, 400 ``{"error", "field"}`` for bad
    input, 413 for a body over 256 KiB, 429 past a limit. Source:
    https://owntracks.org/booklet/tech/http/.
    """
    body = caller.body
    if body.strip():
        content_type = _content_type(request)
        if content_type and content_type != "application/json":
            raise auth.Refused(400, "the body must be application/json", "Content-Type")
        try:
            fix = owntracks.parse(body)
        except InvalidFix as exc:
            raise _invalid(exc) from None
        if fix is not None:
            await _publish(caller, [fix])
            metrics.POSITIONS_BY_DOOR["owntracks"].inc()
    # An empty body is what OwnTracks posts when a friend is deleted in the app.
    friends = await database_sync_to_async(_owntracks_friends)(
        caller.ref.id, caller.ref.room_pk
    )
    return JsonResponse(friends, safe=False)


# -- OsmAnd and Traccar Client -------------------------------------------------------------------


def _osmand_key(request, body):
    """Find the device key of an OsmAnd request, parsing the payload on the way."""
    content_type = _content_type(request)
    if content_type == "application/json":
        payload = load_json(body)
        field = "device_id" if type(payload) is dict else "id"
        # Traccar's server answers 404 for an unknown device in JSON, 400 otherwise.
        return auth.KeyClaim(key=osmand.json_device_id(payload), unknown_status=404,
                             missing_status=400, field=field, context=("json", payload))
    if request.GET:
        payload = request.GET
    elif content_type in ("", "application/x-www-form-urlencoded"):
        payload = _form(body)
    else:
        raise InvalidFix("Content-Type", "send a query string, a form body or "
                         "application/json")
    return auth.KeyClaim(key=osmand.device_id(payload), unknown_status=400, field="id",
                         context=("params", payload))


@require_http_methods(["GET", "POST"])
@auth.ingest_door(_osmand_key)
async def osmand_view(request, caller):
    """OsmAnd protocol and Traccar Client: ``/ingest/osmand/``, GET or POST.

    A query string or form body (:func:`osmand.parse_params`, ``id`` = device key), or
    with ``Content-Type: application/json`` Traccar Client's JSON or a JSON batch
    (:func:`osmand.parse_json`). Answers 200 with an empty body. An unknown key is
    400 for the query form and 404 for JSON, as Traccar's server answers; a viewer's
    key 403; bad input 400 ``{"error", "field"}``; a body over 256 KiB or over 1,000
    positions 413; 429 past a limit.
    """
    kind, payload = caller.key_context
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


def _gpslogger_key(request, body, key):
    return auth.KeyClaim(key=key, unknown_status=401)


@require_http_methods(["GET", "POST"])
@auth.ingest_door(_gpslogger_key)
async def gpslogger_view(request, caller, key):
    """GPSLogger custom URL: ``/ingest/gpslogger/<key>/?lat=%LAT&...``, GET or POST.

    Parameters come from the query string, and from a form or JSON-object body when
    GPSLogger is set to POST one (:func:`gpslogger.parse`). Answers 200 with an empty
    body; 401 for an unknown key, 403 for a viewer's key, 400 ``{"error", "field"}``
    for bad input, 413 for a body over 256 KiB, 429 past a limit.
    """
    params = dict(request.GET.items())
    body = caller.body
    content_type = _content_type(request)
    try:
        if body.strip():
            if content_type == "application/json":
                extra = load_json(body)
                if type(extra) is not dict:
                    raise InvalidFix("body", "a JSON body must be an object")
            elif content_type in ("", "application/x-www-form-urlencoded"):
                extra = dict(_form(body).items())
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
