"""OwnTracks HTTP mode: what the app posts, and the friends it is answered with.

Sources: the OwnTracks booklet, ``docs/tech/json.md`` (``_type=location``, ``card``) and
``docs/tech/http.md`` (the answer), in https://github.com/owntracks/booklet; the Android
app's ``model/Parser.kt``.
"""

from ..fixes import InvalidFix
from .common import KMH_MS, fix_named, json_number, load_json, unknown_if_negative

NAMES = {"ts": "tst", "accuracy": "acc", "altitude": "alt", "speed": "vel",
         "heading": "cog", "battery": "batt"}


def parse(body):
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
    message = load_json(body)
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
    tst = json_number("tst", message.get("tst"))
    if tst is None:
        raise InvalidFix("tst", "tst is required (epoch seconds)")
    vel = unknown_if_negative(json_number("vel", message.get("vel")))
    return fix_named(
        NAMES,
        lat=message.get("lat"),
        lon=message.get("lon"),
        ts=round(tst * 1000),
        accuracy=json_number("acc", message.get("acc")),
        altitude=json_number("alt", message.get("alt")),
        speed=None if vel is None else vel * KMH_MS,
        heading=unknown_if_negative(json_number("cog", message.get("cog"))),
        battery=unknown_if_negative(json_number("batt", message.get("batt"))),
    )


def tid(member_id, name):
    """Return the OwnTracks tracker id of a friend: two letters of the name, then the id.

    The OwnTracks Android app identifies an HTTP-mode friend by ``tid`` alone (it makes
    the pseudo topic ``owntracks/http/<tid>``), so the id keeps tids unique in a room.
    """
    letters = [c for c in name if c.isalnum()][:2]
    return ("".join(letters) or "M").upper() + str(member_id)


def friend_messages(member_id, name, position):
    """Return the ``card`` and ``location`` messages that show a friend in OwnTracks.

    ``position`` is a stored :class:`~maps.models.Position`. Numbers the app reads as
    integers (``acc``, ``alt``, ``vel`` in km/h, ``cog``, ``batt``) are rounded.
    Source: https://owntracks.org/booklet/tech/json/ (``card``, ``location``).
    """
    tracker = tid(member_id, name)
    location = {
        "_type": "location",
        "tid": tracker,
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
    return [{"_type": "card", "tid": tracker, "name": name}, location]


