"""The GPSLogger parser (maps.ingest.gpslogger): what its custom URL fills in."""

import time

import pytest

from maps.domain.fixes import InvalidFix
from maps.ingest import gpslogger
from tests.phone_payloads import T, gpslogger_params

# -- GPSLogger: parsing -------------------------------------------------------------------------


def test_gpslogger_placeholders_are_converted_to_geoshare_units():
    fix = gpslogger.parse(gpslogger_params())
    assert (fix.lat, fix.lon, fix.ts) == (45.2735188, 13.7142099, T * 1000)
    assert fix.speed == 12.5  # %SPD is m/s already
    assert fix.heading == 93.0 and fix.accuracy == 4.5 and fix.altitude == 211.15
    assert fix.battery == 77.0


def test_gpslogger_iso_time_and_empty_values():
    fix = gpslogger.parse(gpslogger_params(
        timestamp=None, time=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(T)),
        acc="", batt="-1.0"))
    assert fix.ts == T * 1000 and fix.accuracy is None and fix.battery is None


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"lat": None}, "lat"),
        ({"lat": "%LAT"}, "lat"),
        ({"lon": "NaN"}, "lon"),
        ({"lon": "Infinity"}, "lon"),
        ({"lat": "95.0"}, "lat"),
        ({"spd": "abc"}, "spd"),
        ({"timestamp": None, "time": "noon"}, "time"),
        ({"acc": "-4.0"}, "acc"),
    ],
)
def test_gpslogger_bad_input_names_the_field(fields, field):
    with pytest.raises(InvalidFix) as caught:
        gpslogger.parse(gpslogger_params(**fields))
    assert caught.value.field == field


def test_gpslogger_missing_values_written_as_zero_are_unknown():
    # CustomUrlManagerTest.getFormattedUrl_WhenValuesMissing_UrlReturnsWhatsAvailable
    # (mendhak/gpslogger): "alt=0.0&acc=0.0&dir=0.0&spd=0.0&battery=0.0".
    fix = gpslogger.parse({"lat": "12.193", "lon": "19.111", "alt": "0.0", "acc": "0.0",
                           "dir": "0.0", "spd": "0.0", "batt": "0.0",
                           "time": "2016-03-05T19:24:29.949Z"})
    assert fix.accuracy is None and fix.battery is None
    assert fix.speed == 0.0 and fix.heading == 0.0 and fix.altitude == 0.0
    assert fix.ts == 1457205869949


@pytest.mark.parametrize("time_text, expected", [
    # %TIMEOFFSET (CustomUrlManagerTest.getFormattedUrl_WhenTimeOffsetParameter_...),
    # %TIME (UTC, "Z"), and %TIMESTAMP000 (seconds with "000" to fake milliseconds).
    ("2016-03-05T21:24:29.949+02:00", 1457205869949),
    ("2016-03-05T19:24:29.949Z", 1457205869949),
])
def test_gpslogger_iso_times_with_offsets(time_text, expected):
    fix = gpslogger.parse({"lat": "12.193", "lon": "19.456", "time": time_text})
    assert fix.ts == expected


def test_gpslogger_timestamp_in_seconds_or_milliseconds():
    base = {"lat": "12.193", "lon": "19.456"}
    assert gpslogger.parse({**base, "timestamp": "1457205869"}).ts == 1457205869000
    assert gpslogger.parse({**base, "timestamp": "1457205869000"}).ts == 1457205869000


@pytest.mark.parametrize(("value", "charging"), [
    ("true", True), ("false", False), ("TRUE", True), ("1", True), ("0", False),
    ("", None), (None, None), ("%ISCHARGING", None), ("maybe", None),
])
def test_gpslogger_ischarging_is_charging(value, charging):
    assert gpslogger.parse(gpslogger_params(charging=value)).charging is charging
