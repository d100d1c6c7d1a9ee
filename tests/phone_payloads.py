"""Phone payloads as the apps send them, shared by the parser and door tests."""

import time

# Device time of the test positions: ten minutes ago, in epoch seconds.
T = int(time.time()) - 600


def owntracks_location(**fields):
    """An OwnTracks ``location`` as the booklet shows it (fields override)."""
    message = {"_type": "location", "tid": "an", "lat": 45.2735, "lon": 13.7142,
               "tst": T, "acc": 8, "alt": 211, "vel": 36, "cog": 270, "batt": 81,
               "bs": 1, "t": "u"}
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


def traccar_json(key, **coords):
    """Traccar Client's JSON (www.traccar.org/osmand, Traccar's decoder test vector)."""
    body = {
        "location": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.862Z", time.gmtime(T)),
            "coords": {"latitude": 45.2735, "longitude": 13.7142, "accuracy": 5,
                       "speed": 0, "heading": -1, "altitude": 5},
            "is_moving": False, "odometer": 0, "event": "motionchange",
            "battery": {"level": 0.42, "is_charging": False},
            "activity": {"type": "still"}, "extras": {},
        },
        "device_id": key,
    }
    body["location"]["coords"].update(coords)
    return body


def gpslogger_params(**fields):
    """What GPSLogger puts in place of the template's placeholders (Java formatting)."""
    params = {"lat": "45.2735188", "lon": "13.7142099", "acc": "4.5", "alt": "211.15",
              "spd": "12.5", "dir": "93.0", "batt": "77.0", "charging": "false",
              "timestamp": str(T)}
    params.update(fields)
    return {k: v for k, v in params.items() if v is not None}


def osmand_fill(template, *, lat, lon, time_ms, accuracy=0.0, altitude=0.0, speed=0.0,
                bearing=0.0, battery=None):
    """Fill a URL template as OsmAnd does (``LiveSender.getLiveUrl`` in osmandapp/OsmAnd).

    ``{0}``/``{1}`` through ``GpxFormatter.formatLatLon`` (``0.00#####``), ``{2}`` the
    epoch ms, ``{3}`` ``location.getAccuracy()``, ``{4}`` altitude, ``{5}``
    ``location.getSpeed()`` (m/s), ``{6}`` bearing, all Java floats (``12.5``, ``0.0``);
    ``{11}`` the battery percent as an int. An app without a value for ``{11}``
    (``battery=None``) leaves the placeholder as it is, as ``MessageFormat`` does.
    """
    def latlon(value):
        text = f"{value:.7f}".rstrip("0")
        whole, _, fraction = text.partition(".")
        return f"{whole}.{fraction.ljust(2, '0')}"

    def java_float(value):
        return repr(float(value))

    values = {0: latlon(lat), 1: latlon(lon), 2: str(time_ms), 3: java_float(accuracy),
              4: java_float(altitude), 5: java_float(speed), 6: java_float(bearing)}
    if battery is not None:
        values[11] = str(battery)
    for index, value in values.items():
        template = template.replace("{" + str(index) + "}", value)
    return template


def overland_feature(lon=-122.030581, lat=37.3318, *, ts=None, **properties):
    """One Overland location as its README shows it (aaronpk/Overland-iOS, README.md).

    ``ts`` is epoch seconds (default :data:`T`), written like the README's
    ``2015-10-01T08:00:00-0700``: local time with a ``-0700`` offset.
    """
    when = time.strftime("%Y-%m-%dT%H:%M:%S-0700", time.gmtime((ts or T) - 7 * 3600))
    props = {"timestamp": when, "altitude": 0, "speed": 4, "horizontal_accuracy": 30,
             "vertical_accuracy": -1, "motion": ["driving", "stationary"],
             "pauses": False, "activity": "other_navigation", "desired_accuracy": 100,
             "deferred": 1000, "significant_change": "disabled",
             "locations_in_payload": 1, "battery_state": "charging",
             "battery_level": 0.80, "device_id": "", "wifi": ""}
    props.update(properties)
    return {"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {k: v for k, v in props.items() if v is not None}}


def hauk_create_form(key, **fields):
    """Hauk's ``create.php`` form for a share alone (SessionInitiationPacket.java)."""
    form = {"pwd": key, "dur": "3600", "int": "1", "e2e": "0", "mod": "0", "ado": "0"}
    form.update({k: str(v) for k, v in fields.items() if v is not None})
    return form


def hauk_post_form(sid, *, time_s=T, lat=45.2735, lon=13.7142, spd=None, acc=None):
    """Hauk's ``post.php`` form (LocationUpdatePacket.java); ``spd``/``acc`` only if known.

    ``time`` as Java's ``String.valueOf(double)`` writes it: ``1.7637E9`` style.
    """
    form = {"sid": sid, "lat": repr(lat), "lon": repr(lon), "prv": "0"}
    if time_s is not None:
        mantissa = f"{time_s / 1e9:.12f}".rstrip("0").rstrip(".")
        form["time"] = f"{mantissa}E9"
    if spd is not None:
        form["spd"] = repr(float(spd))
    if acc is not None:
        form["acc"] = repr(float(acc))
    return form
