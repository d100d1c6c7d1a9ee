"""Tracks without a database (maps.domain.tracks): segments, stays, simplification, GPX, GeoJSON.

The real walk around Lake Cerknica (../shared/data/gpx) is read with gpxpy.
"""

import math

import gpxpy
import numpy as np
import pytest

from maps.domain import exports, tracks
from maps.domain.tracks import GAP_MS, STAY_MIN_MS, Track
from tests.servers import gpx_file

ANA = {"id": 7, "name": "Ana", "color": "#1f77b4", "role": "member"}


def cerknica_points():
    """The recorded points of the walk: ``[(lat, lon, ele, epoch ms)]`` in file order."""
    with open(gpx_file("cerknicko-jezero.gpx")) as handle:
        gpx = gpxpy.parse(handle)
    return [
        (p.latitude, p.longitude, p.elevation, round(p.time.timestamp() * 1000))
        for t in gpx.tracks for s in t.segments for p in s.points
    ]


def track_of(points, member=ANA):
    track = Track(dict(member))
    for lat, lon, ele, ts in points:
        track.append(lat, lon, ts, altitude=ele)
    return track


def walk(n, *, start=1_750_000_000_000, step_ms=1000, lat=46.0, lon=14.5,
         metres_per_step=1.4, bearing=60.0):
    """A straight walk: ``n`` points ``step_ms`` apart, ``metres_per_step`` apart."""
    dy = metres_per_step * math.cos(math.radians(bearing)) / 111_195.0
    dx = metres_per_step * math.sin(math.radians(bearing)) / (
        111_195.0 * math.cos(math.radians(lat)))
    return [(lat + i * dy, lon + i * dx, None, start + i * step_ms) for i in range(n)]


def metres(a_lat, a_lon, b_lat, b_lon):
    """Haversine distance in metres (mean Earth radius)."""
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b_lon - a_lon) / 2) ** 2)
    return 2 * tracks.EARTH_RADIUS_M * math.asin(math.sqrt(h))


# -- segments -----------------------------------------------------------------------------


def test_segments_are_cut_at_gaps_over_five_minutes():
    ts = [0, 1000, 1000 + GAP_MS, 2000 + 2 * GAP_MS, 3000 + 2 * GAP_MS]
    assert tracks.segment_bounds(ts) == [(0, 3), (3, 5)]
    assert tracks.segment_bounds([]) == []


def test_the_cerknica_walk_has_the_gaps_its_file_has():
    points = cerknica_points()
    ts = [p[3] for p in points]
    bounds = tracks.segment_bounds(ts)
    gaps = [b - a for a, b in zip(ts, ts[1:]) if b - a > GAP_MS]
    assert len(bounds) == len(gaps) + 1
    assert sum(stop - start for start, stop in bounds) == len(points)


# -- stays ----------------------------------------------------------------------------------


def test_a_synthetic_stop_in_the_real_walk_is_found_where_and_when_it_is():
    points = cerknica_points()
    first = points[:60]
    lat, lon, ele, ts = first[-1]
    # Twelve minutes at one place, the fixes wandering within 15 m, every 20 s.
    rng = np.random.default_rng(3)
    stop = [(lat + rng.uniform(-1e-4, 1e-4), lon + rng.uniform(-1e-4, 1e-4), ele,
             ts + 20_000 * (i + 1)) for i in range(36)]
    shift = stop[-1][3] + 20_000 - points[60][3]
    rest = [(a, b, c, t + shift) for a, b, c, t in points[60:]]
    track = track_of(first + stop + rest)
    stays = tracks.find_stays(track.lat, track.lon, track.ts)
    ours = [s for s in stays if s.start <= ts + 20_000 and s.end >= stop[-1][3]]
    assert len(ours) == 1
    stay = ours[0]
    assert stay.duration_ms >= 12 * 60_000 - 20_000
    assert metres(stay.lat, stay.lon, lat, lon) < 20
    # The way in is not part of it: it starts within 50 m (and the fixes' 15 m).
    way_in = [p[3] for p in first if metres(p[0], p[1], lat, lon) > 65]
    assert stay.start > way_in[-1]


def test_walking_has_no_stays_and_a_short_pause_is_not_one():
    moving = walk(1200)
    pause_at = moving[600]
    # Two minutes still: with the walking on either side, no five minutes fit 50 m.
    pause = [(pause_at[0], pause_at[1], None, pause_at[3] + 1000 * i)
             for i in range(1, 120)]
    later = [(a, b, c, t + 120_000) for a, b, c, t in moving[601:]]
    track = track_of(moving[:601] + pause + later)
    assert tracks.find_stays(track.lat, track.lon, track.ts) == []


def test_a_stay_is_five_minutes_within_the_box_and_ends_when_the_box_is_left():
    still = [(46.0, 14.5, None, 1_750_000_000_000 + 10_000 * i) for i in range(31)]
    leave = walk(100, start=still[-1][3] + 1000, lat=46.0, lon=14.5, metres_per_step=5)
    track = track_of(still + leave[1:])
    (stay,) = tracks.find_stays(track.lat, track.lon, track.ts)
    assert stay.start == still[0][3]
    # 100 m of diagonal: the walk leaves the box within 20 steps of 5 m.
    assert still[-1][3] <= stay.end <= leave[20][3]
    assert stay.duration_ms >= STAY_MIN_MS


def test_a_stay_may_span_a_gap_when_the_phone_reports_only_on_moving():
    t0 = 1_750_000_000_000
    points = walk(50, start=t0) + [(46.003, 14.503, None, t0 + 60_000 + 3_600_000 * k)
                                  for k in range(2)]
    points += walk(50, start=t0 + 2 * 3_600_000, lat=46.003, lon=14.503,
                   metres_per_step=5)[1:]
    track = track_of(points)
    stays = tracks.find_stays(track.lat, track.lon, track.ts)
    (stay,) = stays
    assert stay.start == t0 + 60_000
    # It ends as the walk away leaves 50 m of the place: 10 steps of 5 m.
    assert t0 + 2 * 3_600_000 <= stay.end <= t0 + 2 * 3_600_000 + 11_000


# -- simplification ---------------------------------------------------------------------------


def _worst_error(track, keep):
    """Largest distance (m) from a recorded point to where the kept ones put it then."""
    keep = np.asarray(keep)
    ts = np.asarray(track.ts, dtype=float)
    lat = np.interp(ts, ts[keep], np.asarray(track.lat)[keep])
    lon = np.interp(ts, ts[keep], np.asarray(track.lon)[keep])
    return max(metres(a, b, c, d) for a, b, c, d in zip(track.lat, track.lon, lat, lon))


@pytest.mark.parametrize("zoom", [10, 13, 16, 19])
def test_simplified_walk_is_never_more_than_a_pixel_off_at_any_time(zoom):
    points = cerknica_points()
    start, stop = tracks.segment_bounds([p[3] for p in points])[0]
    track = track_of(points[start:stop])
    tolerance = tracks.metres_per_pixel(zoom, 45.77)
    keep = tracks.simplify_indices(track.lat, track.lon, track.ts, tolerance)
    assert keep[0] == 0 and keep[-1] == len(track) - 1
    assert _worst_error(track, keep) <= tolerance
    if zoom <= 13:
        assert len(keep) < len(track) / 2


def test_a_stop_on_a_straight_line_keeps_the_marker_still():
    # Walk east, stand still ten minutes, walk on along the same line: a plain
    # spatial simplification would keep two points and slide the marker through.
    there = walk(300)
    stand = [(there[-1][0], there[-1][1], None, there[-1][3] + 1000 * i)
             for i in range(1, 600)]
    on = walk(300, start=stand[-1][3] + 1000, lat=there[-1][0], lon=there[-1][1])
    track = track_of(there + stand + on)
    tolerance = 5.0
    keep = tracks.simplify_indices(track.lat, track.lon, track.ts, tolerance)
    assert len(keep) < 20
    assert _worst_error(track, keep) <= tolerance


def test_metres_per_pixel_follows_web_mercator():
    assert tracks.metres_per_pixel(0, 0) == pytest.approx(156_543.03, rel=1e-6)
    assert tracks.metres_per_pixel(18, 60) == pytest.approx(156_543.03 / 2**18 / 2,
                                                            rel=1e-6)


# -- GPX and GeoJSON --------------------------------------------------------------------------


def test_gpx_has_a_track_per_member_and_a_segment_per_gap_with_every_point():
    points = cerknica_points()
    track = track_of(points)
    track.speed[3] = 1.25
    track.heading[3] = 270.0
    track.accuracy[3] = 8.5
    document = exports.gpx_document([track, Track(dict(ANA, id=8, name="Bo"))])
    gpx = gpxpy.parse(document)
    assert gpx.version == "1.1"
    assert [t.name for t in gpx.tracks] == ["Ana"]
    read = [(p.latitude, p.longitude, p.elevation, round(p.time.timestamp() * 1000))
            for s in gpx.tracks[0].segments for p in s.points]
    assert read == points
    assert len(gpx.tracks[0].segments) == len(tracks.segment_bounds(track.ts))
    assert 'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2"' \
        in document
    assert "<gpxtpx:speed>1.25</gpxtpx:speed>" in document
    assert "<gpxtpx:course>270.0</gpxtpx:course>" in document
    assert "<geoshare:accuracy>8.5</geoshare:accuracy>" in document


def check_rfc7946(collection):
    """Fail unless ``collection`` has the shapes of RFC 7946 (sections 3.1-3.3)."""

    def position(p):
        assert isinstance(p, list) and len(p) in (2, 3)
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in p)
        assert -180 <= p[0] <= 180 and -90 <= p[1] <= 90

    def line(coordinates):
        assert isinstance(coordinates, list) and len(coordinates) >= 2
        for p in coordinates:
            position(p)

    assert collection["type"] == "FeatureCollection"
    assert isinstance(collection["features"], list)
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        assert isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        kind = geometry["type"]
        if kind == "Point":
            position(geometry["coordinates"])
        elif kind == "LineString":
            line(geometry["coordinates"])
        elif kind == "MultiLineString":
            assert isinstance(geometry["coordinates"], list)
            for coordinates in geometry["coordinates"]:
                line(coordinates)
        else:
            raise AssertionError(f"unexpected geometry {kind}")


def test_geojson_is_lon_lat_with_times_shaped_like_the_lines():
    points = cerknica_points()
    collection = tracks.feature_collection([track_of(points)])
    check_rfc7946(collection)
    (feature,) = collection["features"]
    assert feature["geometry"]["type"] == "MultiLineString"
    lines = feature["geometry"]["coordinates"]
    times = feature["properties"]["times"]
    assert [len(line) for line in lines] == [len(t) for t in times]
    flat = [p for line in lines for p in line]
    assert flat[0] == [points[0][1], points[0][0]]  # [lon, lat]
    assert [t for ts in times for t in ts] == [p[3] for p in points]
    assert feature["properties"]["altitude"][0][0] == points[0][2]
    assert feature["properties"]["name"] == "Ana"
    assert feature["properties"]["color"] == "#1f77b4"


def test_one_segment_is_a_linestring_and_a_lone_fix_a_line_of_no_length():
    track = track_of(walk(10))
    feature = tracks.track_feature(track)
    assert feature["geometry"]["type"] == "LineString"
    assert len(feature["properties"]["times"]) == 10
    lone = tracks.track_feature(track_of(walk(1)))
    assert lone["geometry"]["coordinates"][0] == lone["geometry"]["coordinates"][1]
    check_rfc7946({"type": "FeatureCollection", "features": [feature, lone]})
