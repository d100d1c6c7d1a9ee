"""Tracks: the history of positions as lines, stays, GeoJSON and GPX. No database.

A *track* is one member's positions in device-time order (:class:`Track`). This module
cuts tracks into segments at gaps, finds stays, simplifies tracks for drawing, and
writes them as GeoJSON (RFC 7946); :mod:`maps.domain.exports` streams them as files. The queries that fill
tracks are in :mod:`maps.storage.selectors`; who may see which track is
:func:`maps.access.scope.history_scope`.

Units: degrees (WGS84), metres, m/s, degrees clockwise from true north, percent; times
are UTC epoch milliseconds.

The rules, stated once (docs/api.md repeats them):

- **Segments**: a track is cut where two consecutive positions are more than
  :data:`GAP_MS` (5 minutes) apart in device time.
- **Stays**: a stretch of positions lasting at least :data:`STAY_MIN_MS` (5 minutes)
  whose bounding box, in local metres, has a diagonal of at most
  ``2 * STAY_RADIUS_M`` (100 m): every position of it lies within 50 m of the box's
  centre. Found greedily from the earliest position: a stay starts at the first
  position whose next 5 minutes fit, and grows while the box still fits; then the
  positions at either end farther than 50 m from its centre (the time-weighted median
  position) are left out as the way in and out, and what remains must still last 5
  minutes (:func:`find_stays`). A stay is shown at its position nearest the centre.
  A stay may span a gap (a phone that reports only when moving).
- **Simplification** (drawing only; exports are complete): the tolerance is the
  ground size of one screen pixel at the client's zoom and the track's latitude
  (:func:`metres_per_pixel`), or a tolerance in metres the client names. Positions are
  dropped with shapely's ``simplify`` (Douglas-Peucker) run on each coordinate as a
  function of time, so that every recorded position lies within the tolerance of the
  place the simplified track puts the member at that position's time: the line is
  never off by more than a pixel, and a marker moved along it by time is where the
  member was (:func:`simplify_indices`).
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from maps.protocol.events import MemberInfo

GAP_MS = 5 * 60_000
STAY_RADIUS_M = 50.0
STAY_MIN_MS = 5 * 60_000
# Mean Earth radius (IUGG), metres; the same as static/maps/js/format.js.
EARTH_RADIUS_M = 6_371_008.8
# Web Mercator: the equator's length in metres over the 256 pixels of zoom 0.
EQUATOR_M = 40_075_016.686
TILE_PX = 256



@dataclass(slots=True)
class Track:
    """One member's positions, oldest first, as parallel lists.

    ``member`` is a :class:`maps.protocol.events.MemberInfo` dict (``id``, ``name``, ``color``,
    ``role``). ``ts`` are device times (epoch ms, non-decreasing); the optional fields
    hold ``None`` where unknown.
    """

    member: MemberInfo
    lat: list[float] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    altitude: list[float | None] = field(default_factory=list)
    speed: list[float | None] = field(default_factory=list)
    heading: list[float | None] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    battery: list[float | None] = field(default_factory=list)
    charging: list[bool | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def append(self, lat: float, lon: float, ts: int, altitude: float | None = None,
               speed: float | None = None, heading: float | None = None,
               accuracy: float | None = None, battery: float | None = None,
               charging: bool | None = None) -> None:
        """Add one position (the next in device time)."""
        self.lat.append(lat)
        self.lon.append(lon)
        self.ts.append(ts)
        self.altitude.append(altitude)
        self.speed.append(speed)
        self.heading.append(heading)
        self.accuracy.append(accuracy)
        self.battery.append(battery)
        self.charging.append(charging)


@dataclass(slots=True, frozen=True)
class Stay:
    """A stay: where (the centre, degrees), from and to when (epoch ms), how many fixes."""

    lat: float
    lon: float
    start: int
    end: int
    points: int

    @property
    def duration_ms(self) -> int:
        return self.end - self.start


# -- geometry ----------------------------------------------------------------------------


def metres_per_pixel(zoom: float, lat: float) -> float:
    """Return the ground size in metres of one pixel at web-map ``zoom`` and ``lat``.

    Web Mercator with 256-pixel tiles, as Leaflet and OpenStreetMap draw:
    ``40,075,016.686 m * cos(lat) / 2 ** (zoom + 8)``.
    """
    return EQUATOR_M * math.cos(math.radians(lat)) / 2 ** (zoom + 8)


def local_metres(lat: npt.ArrayLike,
                 lon: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return ``(x, y)`` arrays in metres east and north of the positions' mean point.

    An equirectangular projection about the mean latitude: good to a few per cent over
    the extent of a day's track, exact enough for boxes of tens of metres and for
    pixel tolerances. Longitudes are unwrapped across the antimeridian.
    """
    lats = np.asarray(lat, dtype=float)
    lons = np.asarray(lon, dtype=float)
    lat0 = math.radians(float(lats.mean()))
    dlon = (lons - lons[0] + 180.0) % 360.0 - 180.0
    dlon -= dlon.mean()
    x = np.radians(dlon) * EARTH_RADIUS_M * math.cos(lat0)
    y = np.radians(lats - math.degrees(lat0)) * EARTH_RADIUS_M
    return x, y


def segment_bounds(ts: npt.ArrayLike, gap_ms: int = GAP_MS) -> list[tuple[int, int]]:
    """Return ``[(start, stop), ...]`` index ranges of ``ts`` cut at gaps over ``gap_ms``."""
    times = np.asarray(ts, dtype=np.int64)
    if len(times) == 0:
        return []
    cuts = np.flatnonzero(np.diff(times) > gap_ms) + 1
    starts = [0, *cuts.tolist()]
    stops = [*cuts.tolist(), len(times)]
    return list(zip(starts, stops))


def _kept_by_time(scaled_t, values, tolerance):
    """Indices shapely's Douglas-Peucker keeps of the curve ``(scaled_t, values)``."""
    line = shapely.linestrings(np.column_stack([scaled_t, values]))
    kept = shapely.get_coordinates(
        shapely.simplify(line, tolerance, preserve_topology=False)
    )[:, 0]
    return np.searchsorted(scaled_t, kept)


def simplify_indices(lat: npt.ArrayLike, lon: npt.ArrayLike, ts: npt.ArrayLike,
                     tolerance_m: float) -> npt.NDArray[np.intp]:
    """Return the indices of the positions to draw, for one segment (sorted array).

    Every position dropped lies within ``tolerance_m`` of where the kept ones put the
    member at its time (linear between kept positions). shapely's ``simplify``
    (Douglas-Peucker, GEOS) runs on ``x(t)`` and ``y(t)`` in local metres, each with a
    quarter of the tolerance, and the union of what either keeps is drawn. Time is
    scaled to metres at ten times the fastest step of the segment, so that the
    perpendicular distance Douglas-Peucker measures is within 0.5 % of the error in
    place at that time; the quarter leaves room for that and for the union (a point
    within ``e`` of a chord is within ``2e`` of a chord between two points that are
    themselves within ``e``): the error is at most ``0.71 * tolerance_m``. Positions
    with the same time as the one before are not drawn.
    """
    times = np.asarray(ts, dtype=np.int64)
    n = len(times)
    if n <= 2 or tolerance_m <= 0:
        return np.arange(n)
    unique = np.concatenate([[True], np.diff(times) > 0])
    index = np.flatnonzero(unique)
    if len(index) <= 2:
        return index
    x, y = local_metres(np.asarray(lat)[index], np.asarray(lon)[index])
    seconds = (times[index] - times[index[0]]) / 1000.0
    dt = np.diff(seconds)
    fastest = float(np.max(np.hypot(np.diff(x), np.diff(y)) / dt))
    scaled = seconds * max(10.0 * fastest, 1.0)
    keep = np.union1d(_kept_by_time(scaled, x, tolerance_m / 4),
                      _kept_by_time(scaled, y, tolerance_m / 4))
    return index[keep]


def _window_extent(values, stops):
    """Return ``(min, max)`` of ``values[i:stops[i] + 1]`` for every ``i``.

    Sparse-table range queries, built one level at a time so that memory stays linear:
    ``O(n log w)`` for windows of up to ``w`` values.
    """
    n = len(values)
    length = stops - np.arange(n) + 1
    level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    low = np.empty(n)
    high = np.empty(n)
    cur_min = cur_max = values
    for k in range(int(level.max()) + 1 if n else 0):
        span = 1 << k
        rows = np.flatnonzero(level == k)
        if len(rows):
            other = stops[rows] - span + 1
            low[rows] = np.minimum(cur_min[rows], cur_min[other])
            high[rows] = np.maximum(cur_max[rows], cur_max[other])
        if len(cur_min) > span:
            cur_min = np.minimum(cur_min[:-span], cur_min[span:])
            cur_max = np.maximum(cur_max[:-span], cur_max[span:])
    return low, high


def find_stays(lat: Sequence[float], lon: Sequence[float], ts: npt.ArrayLike, *,
               radius_m: float = STAY_RADIUS_M, min_ms: int = STAY_MIN_MS) -> list[Stay]:
    """Return the :class:`Stay` list of a track (positions in device-time order).

    The rule is the module's: at least ``min_ms`` within a box whose diagonal is at
    most ``2 * radius_m``. A stay starts at the first position ``i`` whose window
    ``i .. j`` (``j`` the first position at least ``min_ms`` after ``i``) fits, grows
    while the box still fits, and the search goes on after its last position.
    ``O(n log w)`` for windows of ``w`` positions.
    """
    times = np.asarray(ts, dtype=np.int64)
    n = len(times)
    if n < 2:
        return []
    x, y = local_metres(lat, lon)
    limit = (2.0 * radius_m) ** 2
    ends = np.searchsorted(times, times + min_ms)  # the first position min_ms later
    long_enough = ends < n
    stops = np.where(long_enough, ends, n - 1)
    xmin, xmax = _window_extent(x, stops)
    ymin, ymax = _window_extent(y, stops)
    fits = long_enough & ((xmax - xmin) ** 2 + (ymax - ymin) ** 2 <= limit)
    starts = np.flatnonzero(fits)
    stays = []
    i = 0
    while True:
        found = np.searchsorted(starts, i)
        if found >= len(starts):
            break
        i = int(starts[found])
        last = _grow(x, y, i, int(stops[i]), limit)
        first, end, cx, cy = _core(x, y, times, i, last, radius_m)
        if times[end] - times[first] >= min_ms:
            centre = first + int(np.argmin((x[first:end + 1] - cx) ** 2
                                           + (y[first:end + 1] - cy) ** 2))
            stays.append(Stay(lat=float(lat[centre]), lon=float(lon[centre]),
                              start=int(times[first]), end=int(times[end]),
                              points=end - first + 1))
        i = last + 1
    return stays


def _grow(x, y, first, last, limit):
    """Return the last index ``>= last`` such that ``first .. it`` still fits the box."""
    n = len(x)
    chunk = 256
    while last + 1 < n:
        stop = min(n, last + 1 + chunk)
        xs = x[first:stop]
        ys = y[first:stop]
        diag = ((np.maximum.accumulate(xs) - np.minimum.accumulate(xs)) ** 2
                + (np.maximum.accumulate(ys) - np.minimum.accumulate(ys)) ** 2)
        over = np.flatnonzero(diag[last + 1 - first:] > limit)
        if len(over):
            return last + int(over[0])
        last = stop - 1
        chunk *= 2
    return last


def _weighted_median(values, weights):
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return values[order][np.searchsorted(cumulative, cumulative[-1] / 2)]


def _core(x, y, ts, first, last, radius_m):
    """Return ``(first, last, cx, cy)``: the stay without its approach and departure.

    The centre is the time-weighted median of the positions (each weighs the time
    until the next one), where the member spent most of the stretch; positions at
    either end farther than ``radius_m`` from it are the way in and out, not the stay.
    """
    xs, ys = x[first:last + 1], y[first:last + 1]
    weights = np.diff(ts[first:last + 2]).astype(float) if last + 1 < len(ts) else \
        np.append(np.diff(ts[first:last + 1]), 0).astype(float)
    weights = np.maximum(weights, 1.0)
    cx, cy = _weighted_median(xs, weights), _weighted_median(ys, weights)
    near = np.flatnonzero((xs - cx) ** 2 + (ys - cy) ** 2 <= radius_m ** 2)
    if len(near) == 0:
        return first, first, cx, cy
    return first + int(near[0]), first + int(near[-1]), cx, cy


# -- GeoJSON (RFC 7946) ------------------------------------------------------------------

_EXTRAS = ("altitude", "speed", "heading", "accuracy", "battery", "charging")


def _line(track, index):
    """RFC 7946 positions ``[lon, lat]`` of ``index``; one position is given twice.

    A LineString needs two positions (RFC 7946 3.1.4); a lone fix between two gaps
    is a line of no length, its time given twice too.
    """
    if len(index) == 1:
        index = [index[0], index[0]]
    return index, [[track.lon[i], track.lat[i]] for i in index]


def track_feature(track: Track, *, tolerance_m: float | None = None,
                  extras: bool = True) -> dict[str, Any] | None:
    """Return one member's GeoJSON Feature: a LineString, or a MultiLineString per gap.

    ``properties``: ``member`` (id), ``name``, ``color``, ``times`` (epoch ms, the
    coordinates' shape: a list, or a list per line), ``points`` (positions in the
    track); with ``extras`` also ``altitude``, ``speed``, ``heading``, ``accuracy``,
    ``battery`` and ``charging`` (booleans) in the same shape (``null`` unknown). With
    ``tolerance_m`` the lines are simplified for drawing (:func:`simplify_indices`).
    ``None`` for an empty track.
    """
    if not len(track):
        return None
    lines: list[list[list[float]]] = []
    times: list[list[int]] = []
    extra: dict[str, list[list[Any]]] = {name: [] for name in _EXTRAS}
    for start, stop in segment_bounds(track.ts):
        if tolerance_m:
            index = (simplify_indices(track.lat[start:stop], track.lon[start:stop],
                                      track.ts[start:stop], tolerance_m) + start).tolist()
        else:
            index = list(range(start, stop))
        index, coordinates = _line(track, index)
        lines.append(coordinates)
        times.append([track.ts[i] for i in index])
        if extras:
            for name in _EXTRAS:
                values = getattr(track, name)
                extra[name].append([values[i] for i in index])
    single = len(lines) == 1
    geometry = ({"type": "LineString", "coordinates": lines[0]} if single
                else {"type": "MultiLineString", "coordinates": lines})
    properties: dict[str, Any] = {
        "member": track.member["id"],
        "name": track.member["name"],
        "color": track.member["color"],
        "points": len(track),
        "times": times[0] if single else times,
    }
    if extras:
        for name in _EXTRAS:
            properties[name] = extra[name][0] if single else extra[name]
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def stay_feature(member: MemberInfo, stay: Stay) -> dict[str, Any]:
    """Return a stay as a GeoJSON Point Feature (``properties.kind`` is ``"stay"``)."""
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [stay.lon, stay.lat]},
        "properties": {"kind": "stay", "member": member["id"], "name": member["name"],
                       "color": member["color"], "start": stay.start, "end": stay.end,
                       "duration_ms": stay.duration_ms, "points": stay.points},
    }


def feature_collection(tracks: Iterable[Track], *, tolerance_m: float | None = None,
                       stays: bool = False, extras: bool = True,
                       foreign: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a GeoJSON FeatureCollection: one track Feature per non-empty track.

    With ``stays`` each member's stays follow as Point Features. ``foreign`` are
    foreign members of the collection (RFC 7946 6.1): ``since``, ``until``, ...
    """
    features = []
    for track in tracks:
        feature = track_feature(track, tolerance_m=tolerance_m, extras=extras)
        if feature is None:
            continue
        feature["properties"]["kind"] = "track"
        features.append(feature)
        if stays:
            for stay in find_stays(track.lat, track.lon, track.ts):
                features.append(stay_feature(track.member, stay))
    return {"type": "FeatureCollection", **(foreign or {}), "features": features}


def drawing_tolerance(tracks: Sequence[Track], *, zoom: float | None = None,
                      tolerance_m: float | None = None) -> float | None:
    """Return the simplification tolerance in metres: as given, or a pixel at ``zoom``.

    A pixel is measured at the latitude of the tracks' positions nearest a pole, where
    it is smallest, so that no track is simplified beyond what is visible.
    """
    if tolerance_m is not None:
        return float(tolerance_m)
    if zoom is None:
        return None
    lats = [abs(v) for track in tracks if len(track) for v in (min(track.lat),
                                                                 max(track.lat))]
    return metres_per_pixel(zoom, max(lats, default=0.0))
