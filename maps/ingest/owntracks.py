"""OwnTracks HTTP mode: what the app posts, and the friends it is answered with.

Sources: the OwnTracks booklet, ``docs/tech/json.md`` (``_type=location``, ``card``,
``transition``, ``waypoint``, ``waypoints``, ``cmd`` ``setWaypoints``) and
``docs/tech/http.md`` (the answer), in https://github.com/owntracks/booklet; the Android
app's ``project/app/src/main/java/org/owntracks/android/model/Parser.kt`` (an answer
may be one ``encrypted`` object whose plaintext is the array) and
``model/EncryptionProvider.kt`` (payload encryption), in
https://github.com/owntracks/android.
"""

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import nacl.exceptions
import nacl.secret
import orjson

from maps.domain.fixes import Fix, InvalidFix, check_device_time
from maps.ingest.common import (
    KMH_MS,
    fix_named,
    json_number,
    load_json,
    unknown_if_negative,
)
from maps.protocol.events import PositionSource

# EncryptionProvider.kt: KEYBYTES = 32, NONCEBYTES = 24.
KEY_BYTES = nacl.secret.SecretBox.KEY_SIZE


class FriendPosition(PositionSource, Protocol):
    """What :func:`friend_messages` reads of a stored :class:`~maps.models.Reading`:
    a wire position's source, and its device time."""

    @property
    def device_time(self) -> datetime: ...


#: One parsed message: ``("location", Fix)``, ``("transition", Transition)``,
#: ``("waypoints", [Waypoint])`` or ``(None, None)`` (see :func:`parse_message`).
Message = tuple[str | None, Any]


def secret_key(secret: str) -> bytes:
    """Return the 32-byte key of an OwnTracks encryption secret.

    As ``EncryptionProvider.initializeSecretBox``: the secret's bytes (UTF-8), cut to
    32 or padded with zero bytes to 32.
    """
    return secret.encode("utf-8")[:KEY_BYTES].ljust(KEY_BYTES, b"\0")


def decrypt(secret: str, data: object) -> bytes:
    """Return the plaintext bytes of an ``encrypted`` message's ``data``.

    ``data`` is base64 of nonce (24 bytes) || MAC (16) || ciphertext: libsodium's
    ``crypto_secretbox_easy`` after its nonce, which is PyNaCl's ``SecretBox`` layout.
    Raises :class:`InvalidFix` (``data``) for anything that is not that under this
    secret: the wrong secret is a clear 400, never a crash.
    """
    if type(data) is not str:
        raise InvalidFix("data", "data must be a base64 string")
    try:
        sealed = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFix("data", "data is not base64") from None
    if len(sealed) < nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES:
        raise InvalidFix("data", "data is too short to be an encrypted message")
    try:
        return nacl.secret.SecretBox(secret_key(secret)).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise InvalidFix(
            "data", "the message cannot be decrypted with this device's secret: set the "
                    "same Encryption key in OwnTracks and on geoshare's Connect a phone page"
        ) from None


def encrypt(secret: str, plaintext: bytes) -> dict[str, str]:
    """Return ``{"_type": "encrypted", "data": ...}`` of ``plaintext`` (bytes), as the
    apps encrypt (a random nonce before the box; :func:`decrypt` reverses it)."""
    sealed = nacl.secret.SecretBox(secret_key(secret)).encrypt(plaintext)
    return {"_type": "encrypted", "data": base64.b64encode(bytes(sealed)).decode("ascii")}


def answer(messages: object, secret: str | None = None) -> bytes:
    """Return the body of the answer to the app: the JSON array of ``messages``, or,
    when the device has a secret, one ``encrypted`` object holding that array (how
    the apps and the OwnTracks Recorder encrypt an answer, ``Parser.kt``)."""
    return _sealed(orjson.dumps(messages), secret)


def answer_of(pieces: Iterable[bytes], secret: str | None = None) -> bytes:
    """Return the body of the answer made of already encoded ``pieces``, as
    :func:`answer` makes it of messages.

    Each piece is bytes: one JSON message or several separated by commas (a
    :func:`friend_piece`); the array is the pieces in order.
    """
    return _sealed(b"[" + b",".join(pieces) + b"]", secret)


def _sealed(plain: bytes, secret: str | None) -> bytes:
    if not secret:
        return plain
    return orjson.dumps(encrypt(secret, plain))

# ``bs`` (booklet, docs/tech/json.md): 0 unknown, 1 unplugged, 2 charging, 3 full.
_BATTERY_STATUS = {1: False, 2: True, 3: True}

NAMES = {"ts": "tst", "accuracy": "acc", "altitude": "alt", "speed": "vel",
         "heading": "cog", "battery": "batt"}


@dataclass(frozen=True)
class Transition:
    """A ``_type: transition`` message: the app entered (``"enter"``) or left
    (``"leave"``) its region ``desc`` (region id ``rid``, may be empty) at ``ts``
    (epoch ms)."""

    kind: str
    desc: str
    rid: str
    ts: int


@dataclass(frozen=True)
class Waypoint:
    """A region the app defined: ``desc``, centre in degrees, ``rad`` in metres."""

    desc: str
    lat: float
    lon: float
    rad: float


def parse(body: bytes, secret: str | None = None) -> Fix | None:
    """Return the :class:`~maps.domain.fixes.Fix` of an OwnTracks HTTP-mode body, or ``None``.

    :func:`parse_message` with anything but a ``location`` read as ``None``.
    """
    kind, value = parse_message(body, secret)
    return value if kind == "location" else None


def parse_message(body: bytes, secret: str | None = None) -> Message:
    """Return ``(kind, value)`` of an OwnTracks HTTP-mode body.

    ``("location", Fix)``; ``("transition", Transition)`` (``event`` ``enter`` or
    ``leave``, ``tst`` epoch seconds required, ``desc`` and ``rid`` optional);
    ``("waypoints", [Waypoint])`` for a ``waypoints`` export or one ``waypoint``
    (waypoints without a usable ``desc``, ``lat``, ``lon`` or ``rad`` > 0 are left
    out: beacons, for instance); ``(None, None)`` for anything else or an empty body.

    ``body`` is the raw request body (bytes). A ``_type: location`` object gives a fix:
    ``lat``, ``lon`` (degrees) and ``tst`` (epoch seconds) required; ``acc`` (m),
    ``alt`` (m), ``vel`` (km/h, to m/s), ``cog`` (degrees), ``batt`` (%) optional,
    absent when zero; ``bs``, the battery status (0 unknown, 1 unplugged, 2 charging,
    3 full), gives charging (2 and 3 are on a charger). Negative ``vel``, ``cog`` or
    ``batt`` are unknown, so is any other ``bs``. Any other
    ``_type`` (and an empty body) gives ``None``. An ``encrypted`` message is opened
    with ``secret`` (the device's, :func:`decrypt`) and read as what it holds.
    Raises :class:`InvalidFix` for garbage, a missing ``_type``, an ``encrypted``
    message without a secret or under another one. A transition without a usable
    ``event`` or ``tst`` is ``(None, None)``; one whose ``tst`` a location would be
    refused for (before 2000, or over 10 minutes ahead of the server's clock:
    :func:`~maps.domain.fixes.check_device_time`) raises :class:`InvalidFix` (``tst``).
    Source: https://owntracks.org/booklet/tech/json/.
    """
    if not body.strip():
        return None, None
    message = load_json(body)
    if type(message) is not dict:
        raise InvalidFix("body", "the body must be a JSON object with a _type")
    kind = message.get("_type")
    if type(kind) is not str:
        raise InvalidFix("_type", "_type is required")
    if kind == "encrypted":
        if not secret:
            raise InvalidFix(
                "_type", "this message is encrypted, but the device has no secret on "
                         "geoshare: set the same Encryption key on the Connect a phone "
                         "page, or clear it in OwnTracks"
            )
        # Without the secret, an encrypted message inside is refused, not opened again.
        return parse_message(decrypt(secret, message.get("data")), secret=None)
    if kind == "transition":
        found = _transition(message)
        return (None, None) if found is None else ("transition", found)
    if kind == "waypoints":
        items = message.get("waypoints")
        return "waypoints", [w for w in map(_waypoint, items if type(items) is list
                                            else []) if w is not None]
    if kind == "waypoint":
        waypoint = _waypoint(message)
        return "waypoints", [] if waypoint is None else [waypoint]
    if kind != "location":
        return None, None
    tst = json_number("tst", message.get("tst"))
    if tst is None:
        raise InvalidFix("tst", "tst is required (epoch seconds)")
    vel = unknown_if_negative(json_number("vel", message.get("vel")))
    status = message.get("bs")
    return "location", fix_named(
        NAMES,
        lat=message.get("lat"),
        lon=message.get("lon"),
        ts=round(tst * 1000),
        accuracy=json_number("acc", message.get("acc")),
        altitude=json_number("alt", message.get("alt")),
        speed=None if vel is None else vel * KMH_MS,
        heading=unknown_if_negative(json_number("cog", message.get("cog"))),
        battery=unknown_if_negative(json_number("batt", message.get("batt"))),
        charging=_BATTERY_STATUS.get(status) if type(status) is int else None,
    )


def tid(member_id: int, name: str) -> str:
    """Return the OwnTracks tracker id of a friend: two letters of the name, then the id.

    The OwnTracks Android app identifies an HTTP-mode friend by ``tid`` alone (it makes
    the pseudo topic ``owntracks/http/<tid>``), so the id keeps tids unique in a room.
    """
    letters = [c for c in name if c.isalnum()][:2]
    return ("".join(letters) or "M").upper() + str(member_id)


def friend_messages(member_id: int, name: str,
                    position: FriendPosition) -> list[dict[str, Any]]:
    """Return the ``card`` and ``location`` messages that show a friend in OwnTracks.

    ``position`` is a stored :class:`~maps.models.Position`. Numbers the app reads as
    integers (``acc``, ``alt``, ``vel`` in km/h, ``cog``, ``batt``) are rounded.
    Source: https://owntracks.org/booklet/tech/json/ (``card``, ``location``).
    """
    tracker = tid(member_id, name)
    location: dict[str, Any] = {
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


def friend_piece(member_id: int, name: str, position: FriendPosition) -> bytes:
    """Return a friend's two :func:`friend_messages` encoded as one piece of an answer
    (:func:`answer_of`): the ``card``'s JSON, a comma, the ``location``'s."""
    card, location = friend_messages(member_id, name, position)
    return orjson.dumps(card) + b"," + orjson.dumps(location)




def _transition(message: Mapping[str, Any]) -> Transition | None:
    # One the server cannot use is skipped, not refused: a 400 would jam the app's queue.
    event = message.get("event")
    tst = _number(message.get("tst"))
    if event not in ("enter", "leave") or tst is None:
        return None
    ts = round(tst * 1000)
    # A time a location would be refused for is refused here too, with the same answer:
    # a crossing stamped 2100 would stand as the latest and hide every real one.
    try:
        check_device_time(ts)
    except InvalidFix as exc:
        raise InvalidFix("tst", f"tst: {exc.detail}") from None
    desc = message.get("desc")
    rid = message.get("rid")
    return Transition(kind=event, desc=desc if type(desc) is str else "",
                      rid=rid if type(rid) is str else "", ts=ts)


def _number(value: object) -> float | None:
    # The booklet's own example sends numbers as strings ("rad": "50").
    if type(value) is str:
        try:
            value = float(value)
        except ValueError:
            return None
    if type(value) is not int and type(value) is not float:
        return None
    if not math.isfinite(value):
        return None
    return float(value)


def _waypoint(item: object) -> Waypoint | None:
    if type(item) is not dict or type(item.get("desc")) is not str:
        return None
    lat, lon, rad = (_number(item.get(k)) for k in ("lat", "lon", "rad"))
    if lat is None or lon is None or rad is None or rad <= 0:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return Waypoint(desc=item["desc"], lat=lat, lon=lon, rad=rad)


def region_id(place_id: int) -> str:
    """Return the OwnTracks region id (``rid``) geoshare gives place ``place_id``."""
    return f"geoshare-{int(place_id)}"


def set_waypoints(places: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the ``cmd`` that makes the app monitor ``places`` (dicts with ``id``,
    ``name``, ``lat``, ``lon``, ``radius`` and ``created`` epoch seconds).

    ``setWaypoints`` merges: the app keeps its own regions, and one of the same name
    (iOS) or creation time ``tst`` (Android) is replaced. Source: the booklet's
    ``docs/tech/json.md`` (``_type=cmd``, ``_type=waypoint``).
    """
    return {"_type": "cmd", "action": "setWaypoints", "waypoints": {
        "_type": "waypoints",
        "waypoints": [{"_type": "waypoint", "desc": p["name"], "lat": p["lat"],
                       "lon": p["lon"], "rad": round(p["radius"]),
                       "tst": p["created"], "rid": region_id(p["id"])}
                      for p in places],
    }}
