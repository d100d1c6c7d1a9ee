"""The one validation gate for positions (maps.domain.fixes)."""

import math

import pytest

from maps.domain.fixes import Fix, InvalidFix, fix_from_frame, fix_from_values

NOW = 1_763_700_000_000


def test_full_frame_becomes_fix_in_project_units():
    fix = fix_from_frame(
        {"type": "position", "lat": 46.05, "lon": 14.5, "accuracy": 8, "altitude": 295,
         "speed": 1.3, "heading": 270, "battery": 81, "ts": NOW}, now=NOW)
    assert fix == Fix(lat=46.05, lon=14.5, ts=NOW, accuracy=8.0, altitude=295.0, speed=1.3,
                      heading=270.0, battery=81.0)


def test_charging_is_a_boolean_and_kept():
    assert fix_from_frame({"lat": 1, "lon": 2, "charging": True}, now=NOW).charging is True
    assert fix_from_values(1, 2, charging=False, now=NOW).charging is False
    assert fix_from_frame({"lat": 1, "lon": 2, "charging": None}, now=NOW).charging is None


@pytest.mark.parametrize("value", [1, 0, "true", "false", 1.0, [], {}])
def test_charging_that_is_not_a_boolean_is_refused(value):
    with pytest.raises(InvalidFix) as caught:
        fix_from_frame({"lat": 1, "lon": 2, "charging": value}, now=NOW)
    assert caught.value.field == "charging"


def test_a_frame_cannot_name_its_device_only_the_door_can():
    fix = fix_from_frame({"lat": 1, "lon": 2, "device": "Someone's phone"}, now=NOW)
    assert fix.device is None
    assert fix.from_device("Pixel").to_wire(7, NOW)["device"] == "Pixel"


def test_wire_form_carries_charging_false_and_omits_it_when_unknown():
    assert fix_from_values(1, 2, charging=False, now=NOW).to_wire(7, NOW)["charging"] is False
    assert "charging" not in fix_from_values(1, 2, now=NOW).to_wire(7, NOW)


def test_missing_ts_is_filled_with_server_time():
    assert fix_from_frame({"lat": 0, "lon": 0}, now=NOW).ts == NOW


def test_null_optional_fields_are_unknown():
    fix = fix_from_frame({"lat": 1, "lon": 2, "accuracy": None, "heading": None}, now=NOW)
    assert (fix.accuracy, fix.heading) == (None, None)


def test_heading_360_folds_to_0():
    assert fix_from_values(1, 2, heading=360, now=NOW).heading == 0.0


def test_wire_form_omits_unknown_fields_and_echoes_ts():
    fix = fix_from_values(1.5, 2.5, ts=NOW - 5, accuracy=3, now=NOW)
    assert fix.to_wire(7, NOW) == {"member": 7, "lat": 1.5, "lon": 2.5, "accuracy": 3.0,
                                   "ts": NOW - 5, "seen": NOW}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"lat": None, "lon": 1}, "lat"),
        ({"lat": 1, "lon": None}, "lon"),
        ({"lat": 90.0000001, "lon": 1}, "lat"),
        ({"lat": -90.5, "lon": 1}, "lat"),
        ({"lat": 1, "lon": -180.5}, "lon"),
        ({"lat": 1, "lon": 180.0001}, "lon"),
        ({"lat": math.nan, "lon": 1}, "lat"),
        ({"lat": 1, "lon": math.inf}, "lon"),
        ({"lat": "1", "lon": 1}, "lat"),
        ({"lat": True, "lon": 1}, "lat"),
        ({"lat": [1], "lon": 1}, "lat"),
        ({"lat": 1, "lon": 1, "accuracy": -0.1}, "accuracy"),
        ({"lat": 1, "lon": 1, "speed": -1}, "speed"),
        ({"lat": 1, "lon": 1, "speed": 1001}, "speed"),
        ({"lat": 1, "lon": 1, "heading": -1}, "heading"),
        ({"lat": 1, "lon": 1, "battery": 101}, "battery"),
        ({"lat": 1, "lon": 1, "altitude": math.nan}, "altitude"),
        ({"lat": 1, "lon": 1, "ts": 1.5}, "ts"),
        ({"lat": 1, "lon": 1, "ts": "1763700000000"}, "ts"),
        ({"lat": 1, "lon": 1, "ts": 17637000000}, "ts"),  # seconds, not milliseconds
        ({"lat": 1, "lon": 1, "ts": NOW + 2 * 86_400_000}, "ts"),
        ({"lat": 1, "lon": 1, "ts": False}, "ts"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values, field):
    with pytest.raises(InvalidFix) as caught:
        fix_from_frame(values, now=NOW)
    assert caught.value.field == field


def test_extreme_valid_values_pass():
    fix = fix_from_values(-90, 180, ts=NOW, accuracy=0, speed=0, heading=0, battery=0,
                          altitude=-400, now=NOW)
    assert (fix.lat, fix.lon) == (-90.0, 180.0)


def test_minutes_of_clock_skew_are_allowed_hours_are_not():
    minute = 60_000
    assert fix_from_values(1, 2, ts=NOW + 9 * minute, now=NOW).ts == NOW + 9 * minute
    for ahead in (11 * minute, 3 * 60 * minute, 24 * 60 * minute - 1):
        with pytest.raises(InvalidFix) as refused:
            fix_from_values(1, 2, ts=NOW + ahead, now=NOW)
        assert refused.value.field == "ts" and "10 minutes" in refused.value.detail


def test_from_device_keeps_every_other_field():
    """``Fix.from_device`` copies field by field: a field added to ``Fix`` and not
    copied there fails here."""
    import dataclasses

    values = {}
    for number, field in enumerate(dataclasses.fields(Fix)):
        values[field.name] = {"charging": True, "device": "old", "ts": 1_763_700_000_000,
                              }.get(field.name, float(number + 1))
    fix = Fix(**values)
    assert fix.from_device("Pixel") == dataclasses.replace(fix, device="Pixel")
    assert fix.from_device(None) == dataclasses.replace(fix, device=None)
