"""Validation of positions: the one gate every position passes, whatever door it came in.

A *fix* is one position report of one device, in geoshare's units:

- ``lat``, ``lon``: WGS84 decimal degrees, ``-90 <= lat <= 90``, ``-180 <= lon <= 180``;
- ``accuracy``: horizontal radius in metres, ``>= 0``;
- ``altitude``: metres, ``-12_000 <= altitude <= 100_000``;
- ``speed``: metres per second, ``0 <= speed <= 1_000``;
- ``heading``: degrees clockwise from true north, ``0 <= heading < 360`` (360 folds to 0);
- ``battery``: percent, ``0 <= battery <= 100``;
- ``charging``: whether the device is on a charger (``True`` also when full), a bool;
- ``ts``: device time, integer UTC epoch milliseconds.

The WebSocket consumer and every phone ingest view build a :class:`Fix` through
:func:`fix_from_values`, so one set of rules decides what is stored and broadcast
(docs/protocol.md, docs/phones.md). ``device``, the name of the device whose key sent
the fix, is not the payload's to say: the door that checked the key fills it in
(:meth:`Fix.from_device`).
"""

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from maps.protocol.events import WirePosition, wire_position

# Device times before this are refused (2000-01-01T00:00:00Z, epoch ms): GPS week
# roll-over bugs report 1999 or 2019-04 minus 1024 weeks.
MIN_TS_MS = 946_684_800_000
# Device clocks run ahead at times, by seconds to a few minutes. Further ahead is refused:
# the marker never moves back to an older device time, so a fix from hours ahead would
# freeze it until that time came.
MAX_FUTURE_MS = 10 * 60 * 1000

_RANGES = {
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "accuracy": (0.0, 1_000_000.0),
    "altitude": (-12_000.0, 100_000.0),
    "speed": (0.0, 1_000.0),
    "heading": (0.0, 360.0),
    "battery": (0.0, 100.0),
}


class InvalidFix(ValueError):
    """A position was refused; ``field`` names the offending field, ``detail`` says why."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


@dataclass(slots=True, frozen=True)
class Fix:
    """One validated position. Units as in the module docstring; ``None`` is unknown."""

    lat: float
    lon: float
    ts: int
    accuracy: float | None = None
    altitude: float | None = None
    speed: float | None = None
    heading: float | None = None
    battery: float | None = None
    charging: bool | None = None
    device: str | None = None

    def from_device(self, name: str | None) -> "Fix":
        """Return this fix as sent by the device called ``name`` (``None``: browser)."""
        # Field by field rather than dataclasses.replace, which builds its keyword
        # arguments from the fields' metadata on every call: this runs for every
        # position a phone sends (tests/test_fixes.py checks that no field is lost).
        return Fix(self.lat, self.lon, self.ts, self.accuracy, self.altitude, self.speed,
                   self.heading, self.battery, self.charging, name)

    def to_wire(self, member_id: int, seen_ms: int) -> WirePosition:
        """Return the :class:`~maps.protocol.events.WirePosition` of this fix."""
        return wire_position(member_id, self, self.ts, seen_ms)


def now_ms() -> int:
    """Return the server's clock as UTC epoch milliseconds."""
    return int(time.time() * 1000)


def _number(field: str, value: object) -> float:
    # bool is an int subclass: true/false are not numbers on this wire.
    if type(value) is not float and type(value) is not int:
        raise InvalidFix(field, f"{field} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidFix(field, f"{field} must be a finite number")
    low, high = _RANGES[field]
    if not low <= value <= high:
        raise InvalidFix(field, f"{field} must be between {low:g} and {high:g}")
    return value


def fix_from_values(
    lat: object,
    lon: object,
    *,
    ts: object = None,
    accuracy: object = None,
    altitude: object = None,
    speed: object = None,
    heading: object = None,
    battery: object = None,
    charging: object = None,
    now: int | None = None,
) -> Fix:
    """Validate already-converted values and return a :class:`Fix`.

    Every argument is a JSON-style number (``int`` or ``float``, never ``bool`` or
    ``str``) in geoshare's units, or ``None`` for the optional ones; ``charging`` is a
    ``bool`` or ``None``. ``ts`` is device
    time in epoch milliseconds (``None``: the server's time ``now``, or the clock).

    Raises :class:`InvalidFix` naming the first offending field.
    """
    if lat is None:
        raise InvalidFix("lat", "lat is required")
    if lon is None:
        raise InvalidFix("lon", "lon is required")
    lat = _number("lat", lat)
    lon = _number("lon", lon)
    optional: dict[str, Any] = {}
    for field, value in (
        ("accuracy", accuracy),
        ("altitude", altitude),
        ("speed", speed),
        ("heading", heading),
        ("battery", battery),
    ):
        optional[field] = None if value is None else _number(field, value)
    if charging is not None and type(charging) is not bool:
        raise InvalidFix("charging", "charging must be true or false")
    optional["charging"] = charging
    if optional["heading"] == 360.0:
        optional["heading"] = 0.0
    server_now = now_ms() if now is None else now
    if ts is None:
        ts = server_now
    else:
        if type(ts) is float and math.isfinite(ts) and ts.is_integer():
            ts = int(ts)
        if type(ts) is not int:
            raise InvalidFix("ts", "ts must be an integer (epoch milliseconds)")
        check_device_time(ts, now=server_now)
    return Fix(lat=lat, lon=lon, ts=ts, **optional)


def check_device_time(ts: int, *, now: int | None = None) -> None:
    """Refuse a device time (UTC epoch ms) before 2000 or more than 10 minutes after
    ``now`` (epoch ms; ``None``: the clock): :data:`MIN_TS_MS`, :data:`MAX_FUTURE_MS`.

    The one rule for every device time the server keeps, a fix's or a phone's own
    place crossing (an OwnTracks ``transition``): one from 2100 would otherwise stand
    as the latest and hide every real one until then. Raises :class:`InvalidFix`
    (``ts``).
    """
    server_now = now_ms() if now is None else now
    if ts < MIN_TS_MS or ts > server_now + MAX_FUTURE_MS:
        raise InvalidFix(
            "ts", "ts must be epoch milliseconds between 2000 and 10 minutes from now"
        )


def fix_from_frame(frame: Mapping[str, Any], *, now: int | None = None) -> Fix:
    """Return the :class:`Fix` of a WebSocket ``position`` frame (a decoded JSON object).

    The frame's shape is docs/protocol.md's: ``lat`` and ``lon`` required; ``accuracy``,
    ``altitude``, ``speed``, ``heading``, ``battery``, ``charging``, ``ts`` optional
    (``null`` is absent). Unknown keys are ignored. Raises :class:`InvalidFix`.
    """
    get = frame.get
    return fix_from_values(
        get("lat"),
        get("lon"),
        ts=get("ts"),
        accuracy=get("accuracy"),
        altitude=get("altitude"),
        speed=get("speed"),
        heading=get("heading"),
        battery=get("battery"),
        charging=get("charging"),
        now=now,
    )
