"""Phone-app doors: OwnTracks, OsmAnd / Traccar Client and GPSLogger (docs/phones.md).

Each endpoint authenticates a device key, turns the app's wire format into geoshare's
units with a small pure parser, validates through :func:`maps.fixes.fix_from_values`
(the one gate) and hands the fixes to :func:`maps.services.position_publish` /
:func:`maps.services.positions_publish` (the one publish path). Nothing is stored or
broadcast unless every position of a request is valid.

Wire formats and their sources:

- OwnTracks JSON and HTTP mode: https://owntracks.org/booklet/tech/json/ and
  https://owntracks.org/booklet/tech/http/;
- OsmAnd protocol and Traccar Client JSON, as Traccar's server reads them:
  https://www.traccar.org/osmand/ and ``OsmAndProtocolDecoder.java`` in
  https://github.com/traccar/traccar (``decodeQuery`` / ``decodeJson``);
- GPSLogger's custom URL placeholders: ``CustomUrlManager.getFormattedTextblock`` in
  https://github.com/mendhak/gpslogger.
"""

import base64
import binascii
import math
import re
from datetime import UTC, datetime

import orjson
from channels.db import database_sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from . import ratelimit, selectors
from .fixes import InvalidFix, fix_from_values
from .models import Member
from .services import NotAllowed, member_ref, position_publish, positions_publish

MAX_BODY_BYTES = 256 * 1024
# 1 knot = 1852 m / 3600 s (international nautical mile); 1 km/h = 1 / 3.6 m/s.
KNOT_MS = 1852 / 3600
KMH_MS = 1 / 3.6
# Traccar's rule for a numeric ``timestamp``: below 2**31 - 1 it is seconds, else ms.
SECONDS_BELOW = 2**31 - 1

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)

OWNTRACKS_NAMES = {"ts": "tst", "accuracy": "acc", "altitude": "alt", "speed": "vel",
                   "heading": "cog", "battery": "batt"}
TRACCAR_JSON_NAMES = {"lat": "latitude", "lon": "longitude", "ts": "timestamp",
                      "battery": "battery.level"}
GPSLOGGER_NAMES = {"accuracy": "acc", "altitude": "alt", "speed": "spd",
                   "heading": "dir", "battery": "batt"}


# -- pure conversions ------------------------------------------------------------------


def _fix(names, **values):
    """Return :func:`fix_from_values` of ``values``, naming fields as the app does.

    ``names`` maps geoshare's field names to the app's; an :class:`InvalidFix` is
    re-raised with the app's name so the client sees the field it sent.
    """
    try:
        return fix_from_values(**values)
    except InvalidFix as exc:
        wire = names.get(exc.field, exc.field)
        if wire == exc.field:
            raise
        raise InvalidFix(wire, f"{wire}: {exc.detail}") from None


def _json_number(field, value):
    """Return a JSON number as ``float`` (``None`` stays ``None``); refuse anything else."""
    if value is None:
        return None
    if type(value) is not int and type(value) is not float:
        raise InvalidFix(field, f"{field} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidFix(field, f"{field} must be a finite number")
    return value


def _text_number(field, value):
    """Return a query-string number (``"46.05"``, ``"1e-4"``) as ``float``.

    ``None`` and the empty string are absent (``None``). JSON numbers are accepted too,
    for the flat objects of an OsmAnd JSON batch. ``nan``, ``inf``, ``1_0``, hex and
    the like are refused: only plain decimal notation is a number on these wires.
    """
    if value is None:
        return None
    if type(value) is not str:
        return _json_number(field, value)
    text = value.strip()
    if not text:
        return None
    if not _DECIMAL.fullmatch(text):
        raise InvalidFix(field, f"{field} must be a number")
    number = float(text)
    if not math.isfinite(number):
        raise InvalidFix(field, f"{field} must be a finite number")
    return number


def _unknown_if_negative(value):
    # The apps use -1 for "unknown" speed, heading and battery (Traccar Client JSON,
    # iOS Core Location); a negative value of these never means anything else.
    return None if value is None or value < 0 else value


def _iso_ms(field, text):
    """Return an ISO 8601 date-time as epoch ms; a naive one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidFix(field, f"{field} must be an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def parse_timestamp(field, value):
    """Return an OsmAnd / GPSLogger ``timestamp`` as UTC epoch milliseconds, or ``None``.

    Accepted, as Traccar's ``OsmAndProtocolDecoder`` reads it: epoch seconds or epoch
    milliseconds (a number below 2**31 - 1 is seconds), an ISO 8601 date-time (with a
    ``T``), or ``yyyy-MM-dd HH:mm:ss`` (taken as UTC). Raises :class:`InvalidFix`.
    """
    if value is None or (type(value) is str and not value.strip()):
        return None
    if type(value) is not str:
        number = _json_number(field, value)
    elif _INTEGER.fullmatch(value.strip()):
        number = int(value)
        return number * 1000 if number < SECONDS_BELOW else number
    elif _DECIMAL.fullmatch(value.strip()):
        number = float(value)
    elif "T" in value:
        return _iso_ms(field, value)
    else:
        try:
            moment = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise InvalidFix(
                field, f"{field} must be epoch seconds or milliseconds, ISO 8601, "
                       "or yyyy-MM-dd HH:mm:ss"
            ) from None
        return round(moment.replace(tzinfo=UTC).timestamp() * 1000)
    if not math.isfinite(number):
        raise InvalidFix(field, f"{field} must be a finite number")
    return round(number * 1000) if number < SECONDS_BELOW else round(number)


def _load_json(body):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidFix("body", "the body is not valid JSON (UTF-8)") from None


def parse_owntracks(body):
    """Return the :class:`~maps.fixes.Fix` of an OwnTracks HTTP-mode body, or ``None``.

    ``body`` is the raw request body (bytes). A ``_type: location`` object gives a fix:
    ``lat``, ``lon`` (degrees) and ``tst`` (epoch seconds) required; ``acc`` (m),
    ``alt`` (m), ``vel`` (km/h, to m/s), ``cog`` (degrees), ``batt`` (%) optional,
    absent when zero. Negative ``vel``, ``cog`` or ``batt`` are unknown. Any other
    ``_type`` (and an empty body) gives ``None``. Raises :class:`InvalidFix` for garbage,
    a missing ``_type`` and ``encrypted`` payloads, which geoshare cannot decrypt.
    Source: https://owntracks.org/booklet/tech/json/ (``_type=location``).
    """
    if not body.strip():
        return None
    message = _load_json(body)
    if type(message) is not dict:
        raise InvalidFix("body", "the body must be a JSON object with a _type")
    kind = message.get("_type")
    if type(kind) is not str:
        raise InvalidFix("_type", "_type is required")
    if kind == "encrypted":
        raise InvalidFix(
            "_type", "encrypted payloads are not supported: turn off encryption "
                     "(Preferences, Encryption key) in OwnTracks"
        )
    if kind != "location":
        return None
    tst = _json_number("tst", message.get("tst"))
    if tst is None:
        raise InvalidFix("tst", "tst is required (epoch seconds)")
    vel = _unknown_if_negative(_json_number("vel", message.get("vel")))
    return _fix(
        OWNTRACKS_NAMES,
        lat=message.get("lat"),
        lon=message.get("lon"),
        ts=round(tst * 1000),
        accuracy=_json_number("acc", message.get("acc")),
        altitude=_json_number("alt", message.get("alt")),
        speed=None if vel is None else vel * KMH_MS,
        heading=_unknown_if_negative(_json_number("cog", message.get("cog"))),
        battery=_unknown_if_negative(_json_number("batt", message.get("batt"))),
    )


def osmand_device_id(params):
    """Return the ``id`` (or ``deviceid``) of OsmAnd parameters, or ``None``."""
    for name in ("id", "deviceid"):
        value = params.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def parse_osmand_params(params):
    """Return the :class:`~maps.fixes.Fix` of OsmAnd protocol parameters.

    ``params`` maps names to strings (a query string or form body; the objects of a
    JSON batch may hold numbers). As Traccar's ``OsmAndProtocolDecoder.decodeQuery``:
    ``lat`` + ``lon`` or ``location=lat,lon`` (degrees), ``timestamp`` (see
    :func:`parse_timestamp`; absent: the server's time), ``speed`` (knots, to m/s),
    ``bearing`` or ``heading`` (degrees), ``altitude`` (m), ``accuracy`` (m),
    ``batt`` (%). ``hdop``, ``charge`` and other keys are accepted and not kept.
    Negative speed, heading or battery are unknown. Raises :class:`InvalidFix`.
    """
    get = params.get
    lat, lon = get("lat"), get("lon")
    lat_name, lon_name = "lat", "lon"
    location = get("location")
    if location not in (None, "") and (lat in (None, "") or lon in (None, "")):
        parts = str(location).split(",")
        if len(parts) != 2:
            raise InvalidFix("location", "location must be lat,lon")
        lat, lon = parts
        lat_name = lon_name = "location"
    heading_name = "bearing" if get("bearing") not in (None, "") else "heading"
    names = {"lat": lat_name, "lon": lon_name, "ts": "timestamp", "speed": "speed",
             "heading": heading_name, "battery": "batt"}
    speed = _unknown_if_negative(_text_number("speed", get("speed")))
    return _fix(
        names,
        lat=_text_number(lat_name, lat),
        lon=_text_number(lon_name, lon),
        ts=parse_timestamp("timestamp", get("timestamp")),
        accuracy=_text_number("accuracy", get("accuracy")),
        altitude=_text_number("altitude", get("altitude")),
        speed=None if speed is None else speed * KNOT_MS,
        heading=_unknown_if_negative(_text_number(heading_name, get(heading_name))),
        battery=_unknown_if_negative(_text_number("batt", get("batt"))),
    )


def _traccar_location(location):
    if type(location) is not dict:
        raise InvalidFix("location", "location must be an object")
    timestamp = location.get("timestamp")
    if type(timestamp) is not str:
        raise InvalidFix("timestamp", "timestamp is required (ISO 8601)")
    coords = location.get("coords")
    if type(coords) is not dict:
        raise InvalidFix("coords", "coords is required (an object)")
    battery = location.get("battery")
    level = None
    if battery is not None:
        if type(battery) is not dict:
            raise InvalidFix("battery", "battery must be an object")
        level = _unknown_if_negative(_json_number("battery.level", battery.get("level")))
    speed = _unknown_if_negative(_json_number("speed", coords.get("speed")))
    return _fix(
        TRACCAR_JSON_NAMES,
        lat=coords.get("latitude"),
        lon=coords.get("longitude"),
        ts=_iso_ms("timestamp", timestamp),
        accuracy=_unknown_if_negative(_json_number("accuracy", coords.get("accuracy"))),
        altitude=_json_number("altitude", coords.get("altitude")),
        speed=speed,
        heading=_unknown_if_negative(_json_number("heading", coords.get("heading"))),
        battery=None if level is None else level * 100,
    )


def osmand_json_device_id(obj):
    """Return the device key of an OsmAnd-endpoint JSON body, or ``None``.

    ``device_id`` of Traccar Client's object, or the one ``id`` of a flat batch.
    Raises :class:`InvalidFix` for a body of another shape or a batch of several ids.
    """
    if type(obj) is dict:
        device_id = obj.get("device_id")
        if device_id is not None and type(device_id) not in (str, int):
            raise InvalidFix("device_id", "device_id must be a string")
        return None if device_id in (None, "") else str(device_id)
    if type(obj) is list:
        ids = {osmand_device_id(item) for item in obj if type(item) is dict}
        ids.discard(None)
        if len(ids) > 1:
            raise InvalidFix("id", "all positions of a batch must have the same id")
        return ids.pop() if ids else None
    raise InvalidFix("body", "the body must be a JSON object or array")


def parse_traccar_json(obj):
    """Return ``(device_id, [Fix, ...])`` of an OsmAnd-endpoint JSON body.

    Two shapes are read:

    - Traccar Client's object (Traccar's ``decodeJson``): ``{"device_id", "location":
      {"timestamp": ISO 8601, "coords": {"latitude", "longitude", "accuracy" (m),
      "speed" (m/s, -1 unknown), "heading" (degrees, -1 unknown), "altitude" (m)},
      "battery": {"level": 0..1 (-1 unknown), "is_charging"}}}``; ``location`` may
      also be a list of such objects (the SDK's batch sync);
    - a list of flat objects with the query-string parameters of
      :func:`parse_osmand_params` (a batch queued while offline), all with the same
      ``id``.

    ``device_id`` is ``None`` when absent. Raises :class:`InvalidFix`.
    """
    device_id = osmand_json_device_id(obj)
    if type(obj) is dict:
        locations = obj.get("location")
        if type(locations) is not list:
            locations = [locations]
        if not locations:
            raise InvalidFix("location", "location must not be empty")
        return device_id, [_traccar_location(location) for location in locations]
    if not obj:
        raise InvalidFix("body", "the batch is empty")
    for item in obj:
        if type(item) is not dict:
            raise InvalidFix("body", "each batch item must be an object")
    return device_id, [parse_osmand_params(item) for item in obj]


def parse_gpslogger(params):
    """Return the :class:`~maps.fixes.Fix` of GPSLogger custom-URL parameters.

    ``params`` maps the names of the template on the "Connect a phone" page to the
    strings GPSLogger put in place of its placeholders: ``lat`` (``%LAT``), ``lon``
    (``%LON``), ``acc`` (``%ACC``, m), ``alt`` (``%ALT``, m), ``spd`` (``%SPD``, m/s),
    ``dir`` (``%DIR``, degrees), ``batt`` (``%BATT``, %), ``timestamp``
    (``%TIMESTAMP``, epoch seconds) or ``time`` (``%TIME``, ISO 8601). Empty values
    are absent; negative speed, direction or battery are unknown. Raises
    :class:`InvalidFix`.
    """
    get = params.get
    if get("timestamp") not in (None, ""):
        ts, ts_name = parse_timestamp("timestamp", get("timestamp")), "timestamp"
    elif get("time") not in (None, ""):
        ts, ts_name = _iso_ms("time", str(get("time"))), "time"
    else:
        ts, ts_name = None, "timestamp"
    return _fix(
        {**GPSLOGGER_NAMES, "ts": ts_name},
        lat=_text_number("lat", get("lat")),
        lon=_text_number("lon", get("lon")),
        ts=ts,
        accuracy=_text_number("acc", get("acc")),
        altitude=_text_number("alt", get("alt")),
        speed=_unknown_if_negative(_text_number("spd", get("spd"))),
        heading=_unknown_if_negative(_text_number("dir", get("dir"))),
        battery=_unknown_if_negative(_text_number("batt", get("batt"))),
    )


def owntracks_tid(member_id, name):
    """Return the OwnTracks tracker id of a friend: two letters of the name, then the id.

    The OwnTracks Android app identifies an HTTP-mode friend by ``tid`` alone (it makes
    the pseudo topic ``owntracks/http/<tid>``), so the id keeps tids unique in a room.
    """
    letters = [c for c in name if c.isalnum()][:2]
    return ("".join(letters) or "M").upper() + str(member_id)


def owntracks_friend_messages(member_id, name, position):
    """Return the ``card`` and ``location`` messages that show a friend in OwnTracks.

    ``position`` is a stored :class:`~maps.models.Position`. Numbers the app reads as
    integers (``acc``, ``alt``, ``vel`` in km/h, ``cog``, ``batt``) are rounded.
    Source: https://owntracks.org/booklet/tech/json/ (``card``, ``location``).
    """
    tid = owntracks_tid(member_id, name)
    location = {
        "_type": "location",
        "tid": tid,
        "lat": position.lat,
        "lon": position.lon,
        "tst": int(position.device_time.timestamp()),
    }
    if position.accuracy is not None:
        location["acc"] = round(position.accuracy)
    if position.altitude is not None:
        location["alt"] = round(position.altitude)
    if position.speed is not None:
        location["vel"] = round(position.speed * 3.6)
    if position.heading is not None:
        location["cog"] = round(position.heading) % 360
    if position.battery is not None:
        location["batt"] = round(position.battery)
    return [{"_type": "card", "tid": tid, "name": name}, location]


# -- database helpers (synchronous; called through database_sync_to_async) -----------


def owntracks_friends(member_id, room_pk):
    """Return the OwnTracks answer for a member: the other sharing members' messages.

    Read from the stored history, which the batched writer fills up to
    ``HISTORY_FLUSH_MS`` after a position arrives; members who stopped sharing are
    left out (:func:`maps.selectors.live_positions`).
    """
    others = Member.objects.filter(room_id=room_pk).exclude(pk=member_id)
    positions = selectors.live_positions(others)
    names = dict(
        Member.objects.filter(pk__in=[p.member_id for p in positions])
        .values_list("pk", "name")
    )
    messages = []
    for position in sorted(positions, key=lambda p: p.member_id):
        if position.member_id in names:
            messages.extend(
                owntracks_friend_messages(position.member_id, names[position.member_id],
                                          position)
            )
    return messages


# Returned instead of a member when the client's address tried too many wrong keys.
BLOCKED = object()


def _lookup_key(key, address):
    """Return the member of ``key``, ``None``, or :data:`BLOCKED` (maps.ratelimit)."""
    if ratelimit.blocked("badkey", address):
        return BLOCKED
    member = selectors.member_for_key(key)
    if member is None:
        ratelimit.hit("badkey", address)
    return member


_member_for_key = database_sync_to_async(_lookup_key)


def _too_many():
    return error_response(429, "too many wrong device keys from this address; wait a minute")
_owntracks_friends = database_sync_to_async(owntracks_friends)


# -- HTTP plumbing ---------------------------------------------------------------------


def error_response(status, detail, field=None, headers=None):
    """Return the JSON error every ingest endpoint answers: ``{"error", "field"}``."""
    data = {"error": detail}
    if field is not None:
        data["field"] = field
    return JsonResponse(data, status=status, headers=headers)


def _invalid(exc):
    return error_response(400, exc.detail, exc.field)


def _too_large():
    return error_response(413, f"the body is larger than {MAX_BODY_BYTES // 1024} KiB",
                          "body")


def _read_body(request):
    """Return the request body, or ``None`` when it is over :data:`MAX_BODY_BYTES`."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return None if len(body) > MAX_BODY_BYTES else body


def _content_type(request):
    return (request.content_type or "").lower()


def _form(body, field="body"):
    try:
        return QueryDict(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidFix(field, "the body is not UTF-8 form data") from None


def _basic_password(request):
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


async def _publish(member, fixes):
    """Publish validated fixes; return ``False`` when the member may not publish."""
    ref = member_ref(member)
    if len(fixes) == 1:
        publishing = position_publish(member=ref, fix=fixes[0])
    else:
        publishing = positions_publish(member=ref, fixes=fixes)
    try:
        await publishing
    except NotAllowed:
        return False
    return True


def _viewer_refused():
    return error_response(403, "this key belongs to a viewer, who cannot share a position")


# -- the endpoints ------------------------------------------------------------------------


@csrf_exempt
@require_POST
async def owntracks(request):
    """OwnTracks HTTP mode: ``POST /ingest/owntracks/`` with one JSON message.

    Authenticated by HTTP Basic (the password is the device key; the user name is not
    used) or ``?key=``. Answers 200 with a JSON array of ``card`` and ``location``
    messages of the room's other sharing members (OwnTracks shows them as friends);
    401 for an unknown key, 403 for a viewer's key, 400 ``{"error", "field"}`` for bad
    input, 413 for a body over 256 KiB. Source: https://owntracks.org/booklet/tech/http/.
    """
    body = _read_body(request)
    if body is None:
        return _too_large()
    key = _basic_password(request) or request.GET.get("key")
    member = await _member_for_key(key, ratelimit.client_address(request))
    if member is BLOCKED:
        return _too_many()
    if member is None:
        return error_response(
            401, "unknown or revoked device key", headers={"WWW-Authenticate":
                                                           'Basic realm="geoshare"'}
        )
    if not member.can_publish():
        return _viewer_refused()
    if not body.strip():
        # OwnTracks posts an empty body when a friend is deleted in the app.
        return JsonResponse([], safe=False)
    content_type = _content_type(request)
    if content_type and content_type != "application/json":
        return error_response(400, "the body must be application/json", "Content-Type")
    try:
        fix = parse_owntracks(body)
    except InvalidFix as exc:
        return _invalid(exc)
    if fix is not None and not await _publish(member, [fix]):
        return _viewer_refused()
    friends = await _owntracks_friends(member.pk, member.room_id)
    return JsonResponse(friends, safe=False)


@csrf_exempt
@require_http_methods(["GET", "POST"])
async def osmand(request):
    """OsmAnd protocol and Traccar Client: ``/ingest/osmand/``, GET or POST.

    A query string or form body (:func:`parse_osmand_params`, ``id`` = device key), or
    with ``Content-Type: application/json`` Traccar Client's JSON or a JSON batch
    (:func:`parse_traccar_json`). Answers 200 with an empty body. An unknown key is
    400 for the query form and 404 for JSON, as Traccar's server answers; a viewer's
    key 403; bad input 400 ``{"error", "field"}``; a body over 256 KiB 413.
    """
    body = _read_body(request)
    if body is None:
        return _too_large()
    content_type = _content_type(request)
    is_json = content_type == "application/json"
    try:
        if is_json:
            payload = _load_json(body)
            device_id = osmand_json_device_id(payload)
        else:
            if request.GET:
                payload = request.GET
            elif content_type in ("", "application/x-www-form-urlencoded"):
                payload = _form(body)
            else:
                raise InvalidFix(
                    "Content-Type", "send a query string, a form body or application/json"
                )
            device_id = osmand_device_id(payload)
    except InvalidFix as exc:
        return _invalid(exc)
    id_field = "device_id" if is_json and type(payload) is dict else "id"
    if device_id is None:
        return error_response(400, f"{id_field} (the device key) is required", id_field)
    # The key is checked before the positions, so a stranger learns nothing of them.
    member = await _member_for_key(device_id, ratelimit.client_address(request))
    if member is BLOCKED:
        return _too_many()
    if member is None:
        return error_response(404 if is_json else 400, "unknown or revoked device key",
                              id_field)
    if not member.can_publish():
        return _viewer_refused()
    try:
        if is_json:
            _device_id, fixes = parse_traccar_json(payload)
        else:
            fixes = [parse_osmand_params(payload)]
    except InvalidFix as exc:
        return _invalid(exc)
    if not await _publish(member, fixes):
        return _viewer_refused()
    return HttpResponse(status=200)


@csrf_exempt
@require_http_methods(["GET", "POST"])
async def gpslogger(request, key):
    """GPSLogger custom URL: ``/ingest/gpslogger/<key>/?lat=%LAT&...``, GET or POST.

    Parameters come from the query string, and from a form or JSON-object body when
    GPSLogger is set to POST one (:func:`parse_gpslogger`). Answers 200 with an empty
    body; 401 for an unknown key, 403 for a viewer's key, 400 ``{"error", "field"}``
    for bad input, 413 for a body over 256 KiB.
    """
    body = _read_body(request)
    if body is None:
        return _too_large()
    member = await _member_for_key(key, ratelimit.client_address(request))
    if member is BLOCKED:
        return _too_many()
    if member is None:
        return error_response(401, "unknown or revoked device key")
    if not member.can_publish():
        return _viewer_refused()
    params = dict(request.GET.items())
    content_type = _content_type(request)
    try:
        if body.strip():
            if content_type == "application/json":
                extra = _load_json(body)
                if type(extra) is not dict:
                    raise InvalidFix("body", "a JSON body must be an object")
            elif content_type in ("", "application/x-www-form-urlencoded"):
                extra = dict(_form(body).items())
            else:
                raise InvalidFix(
                    "Content-Type", "send a query string, a form body or application/json"
                )
            params.update(extra)
        fix = parse_gpslogger(params)
    except InvalidFix as exc:
        return _invalid(exc)
    if not await _publish(member, [fix]):
        return _viewer_refused()
    return HttpResponse(status=200)
