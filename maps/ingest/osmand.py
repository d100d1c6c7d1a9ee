"""The OsmAnd protocol, as OsmAnd and Traccar Client send it, and Traccar Client's JSON.

Source: Traccar's ``OsmAndProtocolDecoder.java`` (``decodeQuery``, ``decodeJson``) in
https://github.com/traccar/traccar, and https://www.traccar.org/osmand/.
"""

from ..fixes import InvalidFix
from .common import (
    KNOT_MS,
    fix_named,
    iso_ms,
    json_number,
    parse_timestamp,
    text_number,
    unknown_if_negative,
)

JSON_NAMES = {"lat": "latitude", "lon": "longitude", "ts": "timestamp",
              "battery": "battery.level"}


def device_id(params):
    """Return the ``id`` (or ``deviceid``) of OsmAnd parameters, or ``None``."""
    for name in ("id", "deviceid"):
        value = params.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def parse_params(params):
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
    speed = unknown_if_negative(text_number("speed", get("speed")))
    return fix_named(
        names,
        lat=text_number(lat_name, lat),
        lon=text_number(lon_name, lon),
        ts=parse_timestamp("timestamp", get("timestamp")),
        accuracy=text_number("accuracy", get("accuracy")),
        altitude=text_number("altitude", get("altitude")),
        speed=None if speed is None else speed * KNOT_MS,
        heading=unknown_if_negative(text_number(heading_name, get(heading_name))),
        battery=unknown_if_negative(text_number("batt", get("batt"))),
    )


def _traccar_location(location):
    """Return the :class:`~maps.fixes.Fix` of one Traccar Client ``location`` object."""
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
        level = unknown_if_negative(json_number("battery.level", battery.get("level")))
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
    )


def json_device_id(obj):
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


def parse_json(obj):
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
    key = json_device_id(obj)
    if type(obj) is dict:
        locations = obj.get("location")
        if type(locations) is not list:
            locations = [locations]
        if not locations:
            raise InvalidFix("location", "location must not be empty")
        return key, [_traccar_location(location) for location in locations]
    if not obj:
        raise InvalidFix("body", "the batch is empty")
    for item in obj:
        if type(item) is not dict:
            raise InvalidFix("body", "each batch item must be an object")
    return key, [parse_params(item) for item in obj]


