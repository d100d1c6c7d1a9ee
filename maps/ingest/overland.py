"""Overland for iOS: batches of GeoJSON points.

Source: the README of https://github.com/aaronpk/Overland-iOS ("Configuration by
Custom URL", the request body, "The properties on the location objects"): a POST of
``{"locations": [Feature, ...], "current": Feature (optional), "trip": {...}}`` with
``Content-Type: application/json`` and the access token as ``Authorization: Bearer``;
the app deletes its queue only when the answer is ``{"result": "ok"}``. A Feature's
``geometry`` is a GeoJSON Point ``[lon, lat]``; its ``properties`` hold ``timestamp``
(ISO 8601 with an offset such as ``-0700``), ``altitude`` (m), ``speed`` (m/s),
``course`` (degrees), ``horizontal_accuracy`` and ``vertical_accuracy`` (m),
``battery_level`` (0..1), ``battery_state``, ``motion``, ``wifi``, ``device_id``...
Core Location's negative speed, course and accuracies mean "not available"
(``CLLocation``), and so does UIKit's battery level of -1 (``UIDevice.batteryLevel``).
``battery_state`` is UIKit's ``UIDevice.BatteryState`` by name: ``unknown``,
``unplugged``, ``charging``, ``full`` (plugged in and full).
"""

from maps.domain.fixes import Fix, InvalidFix
from maps.ingest.common import fix_named, iso_ms, json_number, unknown_if_negative

# UIDevice.BatteryState by name; "unknown" and anything else: unknown.
_CHARGING = {"charging": True, "full": True, "unplugged": False}

NAMES = {"lat": "coordinates", "lon": "coordinates", "ts": "timestamp",
         "accuracy": "horizontal_accuracy", "altitude": "altitude", "speed": "speed",
         "heading": "course", "battery": "battery_level"}


def _feature_fix(feature: object) -> Fix | None:
    """Return the :class:`~maps.domain.fixes.Fix` of one Feature, or ``None`` without geometry."""
    if type(feature) is not dict:
        raise InvalidFix("locations", "each location must be a GeoJSON Feature object")
    geometry = feature.get("geometry")
    if geometry is None:
        # Overland also queues events without a position (the app was terminated,
        # a visit began): nothing to show, not an error.
        return None
    if type(geometry) is not dict or geometry.get("type") != "Point":
        raise InvalidFix("geometry", "geometry must be a GeoJSON Point")
    coordinates = geometry.get("coordinates")
    if type(coordinates) is not list or len(coordinates) < 2:
        raise InvalidFix("coordinates", "coordinates must be [longitude, latitude]")
    properties = feature.get("properties")
    if properties is None:
        properties = {}
    if type(properties) is not dict:
        raise InvalidFix("properties", "properties must be an object")
    get = properties.get
    timestamp = get("timestamp")
    if type(timestamp) is not str:
        raise InvalidFix("timestamp", "timestamp is required (ISO 8601)")
    altitude = json_number("altitude", get("altitude"))
    if (json_number("vertical_accuracy", get("vertical_accuracy")) or 0) < 0:
        altitude = None  # Core Location: a negative vertical accuracy voids the altitude
    level = unknown_if_negative(json_number("battery_level", get("battery_level")))
    state = get("battery_state")
    return fix_named(
        NAMES,
        lat=coordinates[1],
        lon=coordinates[0],
        ts=iso_ms("timestamp", timestamp),
        accuracy=unknown_if_negative(
            json_number("horizontal_accuracy", get("horizontal_accuracy"))),
        altitude=altitude,
        speed=unknown_if_negative(json_number("speed", get("speed"))),
        heading=unknown_if_negative(json_number("course", get("course"))),
        battery=None if level is None else level * 100,
        charging=_CHARGING.get(state) if type(state) is str else None,
    )


def parse(obj: object) -> list[Fix]:
    """Return the fixes of an Overland body (a decoded JSON object), oldest first as sent.

    Features without a geometry are skipped; ``current``, the newest point the app
    holds when its queue is long (not one of the batch), is read as one more. Units:
    degrees, m, m/s, degrees, ``battery_level`` 0..1 to percent; negative speed,
    course, accuracy and battery are unknown; ``battery_state`` ``charging`` and
    ``full`` are charging, ``unplugged`` not, anything else unknown. Raises
    :class:`InvalidFix` naming the field (``locations``, ``geometry``, ``coordinates``,
    ``timestamp``, ``speed``...).
    """
    if type(obj) is not dict:
        raise InvalidFix("body", "the body must be a JSON object with locations")
    locations = obj.get("locations")
    if type(locations) is not list:
        raise InvalidFix("locations", "locations must be an array of GeoJSON Features")
    features = list(locations)
    if obj.get("current") is not None:
        features.append(obj["current"])
    fixes = [_feature_fix(feature) for feature in features]
    return [fix for fix in fixes if fix is not None]
