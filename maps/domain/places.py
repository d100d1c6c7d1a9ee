"""Places: when a member enters or leaves one, decided from fixes, pure (no Django).

A place is a circle (centre in degrees WGS84, radius in metres). A member's state at a
place is :class:`PlaceState`: inside or not, since which device time, and the device
time of the newest fix that was decided. :func:`step` takes the state and one fix and
returns the new state and ``"enter"``, ``"leave"`` or ``None``.

The rule, with hysteresis so GPS jitter at the edge does not flap:

- **Ignore** a fix whose accuracy is more than twice the radius (:data:`IGNORE_FACTOR`):
  it cannot tell inside from outside, and a phone that falls back to cell towers
  (accuracy 1-3 km) would otherwise toggle every small place.
- **Enter** when the fix's centre is inside the circle (``distance <= radius``) and its
  accuracy is at most ``max(radius, 50 m)``: the fix says "probably inside"; requiring
  the whole accuracy circle inside (``distance + accuracy <= radius``) would never
  enter a 25 m place with a typical 10-30 m phone fix.
- **Leave** only when clearly outside: ``distance - accuracy > radius + margin`` with
  ``margin = max(20 m, 10 % of radius)`` (:func:`margin`). Even the nearest point the
  fix allows is outside the circle by the margin, so a member standing at the edge,
  whose fixes wander a few tens of metres, stays inside.
- Between the two (outside but not clearly, or inside with a poor fix) nothing changes.

Order: a phone's offline batch arrives late and out of order, so state is decided by
device time. A fix older than (or as old as) the newest fix already decided for that
member and place changes nothing; the caller sorts each batch by device time.
An unknown accuracy counts as 0 m.

Distance: the haversine formula on a sphere of radius 6,371,008.8 m (the IUGG mean
Earth radius), R. W. Sinnott, "Virtues of the Haversine", Sky and Telescope 68 (2),
1984, p. 159; error under 0.5 % against the ellipsoid, far below GPS accuracy here.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

EARTH_RADIUS_M = 6_371_008.8
IGNORE_FACTOR = 2.0
MIN_ENTER_ACCURACY_M = 50.0
MIN_MARGIN_M = 20.0
MARGIN_FRACTION = 0.10
MIN_RADIUS_M = 25.0
MAX_RADIUS_M = 5_000.0

Kind = Literal["enter", "leave"]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance in metres between two points in degrees.

    Haversine: ``a = sin²(Δφ/2) + cos φ1 · cos φ2 · sin²(Δλ/2)``,
    ``d = 2R · asin(√a)`` (Sinnott 1984; see the module docstring).
    """
    phi1 = math.radians(lat1)
    phi2 = math.radians(lat2)
    dphi = phi2 - phi1
    dlam = math.radians(lon2 - lon1)
    a = (math.sin(dphi / 2) ** 2
         + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2)
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def margin(radius: float) -> float:
    """Return the leave margin in metres of a place of ``radius`` metres."""
    return max(MIN_MARGIN_M, MARGIN_FRACTION * radius)


@dataclass(frozen=True)
class Circle:
    """A place's shape: centre ``lat``, ``lon`` (degrees), ``radius`` (metres)."""

    lat: float
    lon: float
    radius: float


@dataclass(frozen=True)
class PlaceState:
    """A member at a place: ``inside`` since device time ``since`` (epoch ms, or None
    before anything was decided); ``checked`` is the device time of the newest fix
    decided (epoch ms, or None)."""

    inside: bool = False
    since: int | None = None
    checked: int | None = None


OUTSIDE = PlaceState()


def classify(circle: Circle, lat: float, lon: float,
             accuracy: float | None) -> Literal["inside", "outside"] | None:
    """Return what one fix says: ``"inside"``, ``"outside"``, or ``None`` (unclear).

    ``accuracy`` in metres (None: unknown, counted as 0). See the module docstring.
    """
    acc = accuracy or 0.0
    if acc > IGNORE_FACTOR * circle.radius:
        return None
    d = distance_m(circle.lat, circle.lon, lat, lon)
    if d <= circle.radius and acc <= max(circle.radius, MIN_ENTER_ACCURACY_M):
        return "inside"
    if d - acc > circle.radius + margin(circle.radius):
        return "outside"
    return None


def step(circle: Circle, state: PlaceState, lat: float, lon: float,
         accuracy: float | None, ts: int) -> tuple[PlaceState, Kind | None]:
    """Apply one fix (degrees, accuracy in metres, device time ``ts`` epoch ms).

    Returns ``(new_state, kind)``: ``kind`` is ``"enter"``, ``"leave"`` or ``None``.
    A fix not newer than ``state.checked`` returns ``(state, None)`` unchanged.
    """
    if state.checked is not None and ts <= state.checked:
        return state, None
    verdict = classify(circle, lat, lon, accuracy)
    if verdict is None:
        return PlaceState(state.inside, state.since, ts), None
    inside = verdict == "inside"
    if inside == state.inside:
        return PlaceState(state.inside, state.since, ts), None
    return PlaceState(inside, ts, ts), ("enter" if inside else "leave")


def run(
    circle: Circle, state: PlaceState,
    fixes: Iterable[tuple[float, float, float | None, int]],
) -> tuple[PlaceState, list[tuple[Kind, int]]]:
    """Apply ``fixes`` (``(lat, lon, accuracy, ts)`` tuples) in device-time order.

    Returns ``(new_state, [(kind, ts), ...])``.
    """
    found: list[tuple[Kind, int]] = []
    for lat, lon, accuracy, ts in sorted(fixes, key=lambda f: f[3]):
        state, kind = step(circle, state, lat, lon, accuracy, ts)
        if kind is not None:
            found.append((kind, ts))
    return state, found
