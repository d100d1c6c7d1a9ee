"""The OsmAnd protocol, as OsmAnd and Traccar Client send it, and Traccar Client's JSON.

Sources:

- Traccar's server decoder, ``src/main/java/org/traccar/protocol/OsmAndProtocolDecoder.java``
  (``decodeQuery``, ``decodeJson``) in https://github.com/traccar/traccar: ``speed`` in
  knots, ``accuracy`` in metres, ``batt`` in percent, ``charge`` a boolean
  (``Boolean.parseBoolean``: ``true``/``false``); in JSON ``battery.is_charging``;
- the OsmAnd app itself, ``OsmAnd/src/net/osmand/plus/plugins/monitoring/live/``
  ``LiveSender.java`` (``getLiveUrl``) and ``LiveMonitoringData.java`` in
  https://github.com/osmandapp/OsmAnd: it fills a URL template with ``{0}`` lat,
  ``{1}`` lon, ``{2}`` time (epoch ms), ``{3}`` ``location.getAccuracy()`` (metres,
  though OsmAnd calls it hdop), ``{4}`` altitude (m), ``{5}`` ``location.getSpeed()``
  (**m/s**), ``{6}`` bearing (degrees), ``{11}`` battery (%). geoshare's template for
  OsmAnd therefore names ``{5}`` ``speed_mps`` and ``{3}`` ``accuracy``, never Traccar's
  ``speed`` (knots) or ``hdop``;
- Traccar Client 10.x, ``lib/push_service.dart`` in https://github.com/traccar/traccar-client:
  ``id=<key>&notificationToken=<token>`` with no position (:func:`is_token_upload`).
"""

import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from maps.domain.fixes import Fix, InvalidFix
from maps.ingest.common import (
    KNOT_MS,
    fix_named,
    iso_ms,
    json_bool,
    json_number,
    parse_timestamp,
    text_bool,
    text_number,
    unknown_if_negative,
    unknown_if_zero,
)

# OsmAnd's MessageFormat leaves a placeholder it has no value for as it was: an app
# older than the template (no {11}, battery) sends "batt={11}".
_UNFILLED = re.compile(r"\{\d{1,2}\}")
_POSITION_FIELDS = ("lat", "lon", "location")

JSON_NAMES = {"lat": "latitude", "lon": "longitude", "ts": "timestamp",
              "battery": "battery.level"}


def device_id(params: Mapping[str, Any]) -> str | None:
    """Return the ``id`` (or ``deviceid``) of OsmAnd parameters, or ``None``."""
    for name in ("id", "deviceid"):
        value = params.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def is_token_upload(params: Mapping[str, Any]) -> bool:
    """Return whether OsmAnd-protocol ``params`` carry no position, only a push token.

    Traccar Client 10.x posts ``id=<key>&notificationToken=<token>`` (form-encoded)
    when its push token changes (traccar-client ``lib/push_service.dart``,
    ``_uploadToken``); geoshare sends no push messages, so the answer is a plain 200
    and nothing changes.
    """
    if params.get("notificationToken") in (None, ""):
        return False
    return all(params.get(name) in (None, "") for name in _POSITION_FIELDS)


def _filled(params: Mapping[str, Any]) -> Callable[[str], Any]:
    """Return ``params.get`` that reads an unfilled ``{N}`` placeholder as absent."""

    def get(name: str) -> Any:
        value = params.get(name)
        if type(value) is str and "{" in value and _UNFILLED.fullmatch(value.strip()):
            return None
        return value

    return get


def parse_params(params: Mapping[str, Any]) -> Fix:
    """Return the :class:`~maps.domain.fixes.Fix` of OsmAnd protocol parameters.

    ``params`` maps names to strings (a query string or form body; the objects of a
    JSON batch may hold numbers). As Traccar's ``OsmAndProtocolDecoder.decodeQuery``:
    ``lat`` + ``lon`` or ``location=lat,lon`` (degrees), ``timestamp`` (see
    :func:`parse_timestamp`; absent: the server's time), ``speed`` (knots, to m/s),
    ``bearing`` or ``heading`` (degrees), ``altitude`` (m), ``accuracy`` (m),
    ``batt`` (%), ``charge`` (``true``/``false``, Traccar Client; anything else is
    unknown). geoshare's own ``speed_mps`` (m/s, the OsmAnd app's ``{5}``) wins over
    ``speed``. ``hdop`` and other keys are accepted and not kept.
    Negative speed, heading or battery are unknown, so is an accuracy of 0 (Android's
    ``Location.getAccuracy()`` without one) and a placeholder the app left unfilled
    (``{11}``). Raises :class:`InvalidFix`.
    """
    get = _filled(params)
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
    if get("speed_mps") not in (None, ""):
        speed_name = "speed_mps"
        speed = unknown_if_negative(text_number("speed_mps", get("speed_mps")))
    else:
        speed_name = "speed"
        knots = unknown_if_negative(text_number("speed", get("speed")))
        speed = None if knots is None else knots * KNOT_MS
    names = {"lat": lat_name, "lon": lon_name, "ts": "timestamp", "speed": speed_name,
             "heading": heading_name, "battery": "batt"}
    return fix_named(
        names,
        lat=text_number(lat_name, lat),
        lon=text_number(lon_name, lon),
        ts=parse_timestamp("timestamp", get("timestamp")),
        accuracy=unknown_if_zero(text_number("accuracy", get("accuracy"))),
        altitude=text_number("altitude", get("altitude")),
        speed=speed,
        heading=unknown_if_negative(text_number(heading_name, get(heading_name))),
        battery=unknown_if_negative(text_number("batt", get("batt"))),
        charging=text_bool(get("charge")),
    )


def _traccar_location(location: object) -> Fix:
    """Return the :class:`~maps.domain.fixes.Fix` of one Traccar Client ``location`` object."""
    if type(location) is not dict:
        raise InvalidFix("location", "location must be an object")
    timestamp = location.get("timestamp")
    if type(timestamp) is not str:
        raise InvalidFix("timestamp", "timestamp is required (ISO 8601)")
    coords = location.get("coords")
    if type(coords) is not dict:
        raise InvalidFix("coords", "coords is required (an object)")
    battery = location.get("battery")
    level = charging = None
    if battery is not None:
        if type(battery) is not dict:
            raise InvalidFix("battery", "battery must be an object")
        level = unknown_if_negative(json_number("battery.level", battery.get("level")))
        charging = json_bool(battery.get("is_charging"))
    speed = unknown_if_negative(json_number("speed", coords.get("speed")))
    return fix_named(
        JSON_NAMES,
        lat=coords.get("latitude"),
        lon=coords.get("longitude"),
        ts=iso_ms("timestamp", timestamp),
        accuracy=unknown_if_negative(json_number("accuracy", coords.get("accuracy"))),
        altitude=json_number("altitude", coords.get("altitude")),
        speed=speed,
        heading=unknown_if_negative(json_number("heading", coords.get("heading"))),
        battery=None if level is None else level * 100,
        charging=charging,
    )


def json_device_id(obj: object) -> str | None:
    """Return the device key of an OsmAnd-endpoint JSON body, or ``None``.

    ``device_id`` of Traccar Client's object, or the one ``id`` of a flat batch.
    Raises :class:`InvalidFix` for a body of another shape or a batch of several ids.
    """
    if type(obj) is dict:
        value = obj.get("device_id")
        if value is not None and type(value) not in (str, int):
            raise InvalidFix("device_id", "device_id must be a string")
        return None if value in (None, "") else str(value)
    if type(obj) is list:
        ids = {device_id(item) for item in obj if type(item) is dict}
        ids.discard(None)
        if len(ids) > 1:
            raise InvalidFix("id", "all positions of a batch must have the same id")
        return ids.pop() if ids else None
    raise InvalidFix("body", "the body must be a JSON object or array")


def parse_json(obj: object) -> tuple[str | None, list[Fix]]:
    """Return ``(device_id, [Fix, ...])`` of an OsmAnd-endpoint JSON body.

    Two shapes are read:

    - Traccar Client's object (Traccar's ``decodeJson``): ``{"device_id", "location":
      {"timestamp": ISO 8601, "coords": {"latitude", "longitude", "accuracy" (m),
      "speed" (m/s, -1 unknown), "heading" (degrees, -1 unknown), "altitude" (m)},
      "battery": {"level": 0..1 (-1 unknown), "is_charging": true/false}}}``;
      ``location`` may also be a list of such objects (the SDK's batch sync);
    - a list of flat objects with the query-string parameters of
      :func:`parse_osmand_params` (a batch queued while offline), all with the same
      ``id``.

    ``device_id`` is ``None`` when absent. Raises :class:`InvalidFix`.
    """
    key = json_device_id(obj)
    if type(obj) is dict:
        locations = obj.get("location")
        if type(locations) is not list:
            locations = [locations]
        if not locations:
            raise InvalidFix("location", "location must not be empty")
        return key, [_traccar_location(location) for location in locations]
    # json_device_id refused anything but an object or an array.
    batch = cast(list[Any], obj)
    if not batch:
        raise InvalidFix("body", "the batch is empty")
    for item in batch:
        if type(item) is not dict:
            raise InvalidFix("body", "each batch item must be an object")
    return key, [parse_params(item) for item in batch]


