"""The Overland parser (maps.ingest.overland): payloads from aaronpk/Overland-iOS README.md."""

import pytest

from maps.domain.fixes import InvalidFix
from maps.ingest import overland
from tests.phone_payloads import T, overland_feature


def test_overland_readme_location_in_geoshare_units():
    (fix,) = overland.parse({"locations": [overland_feature(course=271.5)]})
    assert (fix.lat, fix.lon) == (37.3318, -122.030581)  # GeoJSON is [lon, lat]
    assert fix.ts == T * 1000  # "-0700" offset read
    assert fix.speed == 4 and fix.accuracy == 30 and fix.heading == 271.5
    assert fix.battery == pytest.approx(80)  # battery_level 0.80
    assert fix.altitude is None  # vertical_accuracy -1: no altitude


def test_overland_unknown_values_are_negative():
    (fix,) = overland.parse({"locations": [overland_feature(
        speed=-1, course=-1, horizontal_accuracy=-1, battery_level=-1,
        vertical_accuracy=3, altitude=211.5)]})
    assert (fix.speed, fix.heading, fix.accuracy, fix.battery) == (None,) * 4
    assert fix.altitude == 211.5


@pytest.mark.parametrize("timestamp, expected", [
    ("2025-06-15T13:45:12Z", 1749995112000),
    ("2025-06-15T15:45:12.250+02:00", 1749995112250),
    ("2025-06-15T06:45:12-0700", 1749995112000),
])
def test_overland_timestamps_with_offsets(timestamp, expected):
    (fix,) = overland.parse({"locations": [overland_feature(timestamp=timestamp)]})
    assert fix.ts == expected


def test_overland_batch_skips_features_without_geometry_and_reads_current():
    batch = {"locations": [
        overland_feature(1.0, 2.0, ts=T),
        {"type": "Feature", "geometry": None, "properties": {"action": "app_terminated"}},
        {"type": "Feature", "properties": {"timestamp": "2025-06-15T13:45:12Z"}},
        overland_feature(3.0, 4.0, ts=T + 5),
    ], "current": overland_feature(5.0, 6.0, ts=T + 50), "trip": {"mode": "car"}}
    fixes = overland.parse(batch)
    assert [(f.lon, f.lat, f.ts) for f in fixes] == [
        (1.0, 2.0, T * 1000), (3.0, 4.0, (T + 5) * 1000), (5.0, 6.0, (T + 50) * 1000)]


def test_overland_empty_batch_is_no_fix():
    assert overland.parse({"locations": []}) == []


@pytest.mark.parametrize("body, field", [
    ([], "body"),
    ({}, "locations"),
    ({"locations": "here"}, "locations"),
    ({"locations": [5]}, "locations"),
    ({"locations": [{"geometry": {"type": "LineString", "coordinates": [[1, 2]]}}]},
     "geometry"),
    ({"locations": [{"geometry": {"type": "Point", "coordinates": [1]}}]}, "coordinates"),
    ({"locations": [overland_feature(200.0, 2.0)]}, "coordinates"),
    ({"locations": [overland_feature(timestamp=None)]}, "timestamp"),
    ({"locations": [overland_feature(timestamp="yesterday")]}, "timestamp"),
    ({"locations": [overland_feature(speed="4")]}, "speed"),
    ({"locations": [overland_feature(battery_level=1.5)]}, "battery_level"),
    ({"locations": [{"geometry": {"type": "Point", "coordinates": [1, 2]},
                     "properties": []}]}, "properties"),
])
def test_overland_bad_input_names_the_field(body, field):
    with pytest.raises(InvalidFix) as caught:
        overland.parse(body)
    assert caught.value.field == field


@pytest.mark.parametrize(("state", "charging"), [
    ("charging", True), ("full", True), ("unplugged", False), ("unknown", None),
    (None, None), (2, None),
])
def test_overland_battery_state_is_charging(state, charging):
    (fix,) = overland.parse({"locations": [overland_feature(battery_state=state)]})
    assert fix.charging is charging
