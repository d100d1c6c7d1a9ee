"""The OsmAnd / Traccar Client parser (maps.ingest.osmand): Traccar's decoder test vectors."""

import json
import time

import pytest

from maps.domain.fixes import InvalidFix
from maps.ingest import osmand
from maps.ingest.common import KNOT_MS
from tests.phone_payloads import T, traccar_json

# -- OsmAnd / Traccar Client: parsing -----------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp, expected_ms",
    [
        (str(T), T * 1000),
        (str(T * 1000 + 250), T * 1000 + 250),
        (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T)), T * 1000),
        (time.strftime("%Y-%m-%dT%H:%M:%S.500+00:00", time.gmtime(T)), T * 1000 + 500),
        (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T)), T * 1000),
    ],
)
def test_osmand_timestamp_forms(timestamp, expected_ms):
    fix = osmand.parse_params({"id": "k", "lat": "45", "lon": "13",
                                      "timestamp": timestamp})
    assert fix.ts == expected_ms


def test_osmand_query_is_converted_to_geoshare_units():
    fix = osmand.parse_params({
        "id": "k", "lat": "45.2735", "lon": "13.7142", "timestamp": str(T),
        "hdop": "3.2", "altitude": "211.5", "speed": "10", "bearing": "93.5",
        "accuracy": "6", "batt": "64", "charge": "true", "valid": "true",
    })
    assert (fix.lat, fix.lon, fix.ts) == (45.2735, 13.7142, T * 1000)
    assert fix.speed == pytest.approx(5.14444, abs=1e-4)  # 10 knots
    assert fix.heading == 93.5 and fix.altitude == 211.5
    assert fix.accuracy == 6 and fix.battery == 64


def test_osmand_location_parameter_and_heading_alias():
    fix = osmand.parse_params({"deviceid": "k", "location": "45.5,13.25",
                                      "heading": "360"})
    assert (fix.lat, fix.lon) == (45.5, 13.25)
    assert fix.heading == 0.0  # 360 folds to 0


def test_osmand_negative_speed_and_bearing_are_unknown():
    fix = osmand.parse_params({"lat": "45", "lon": "13", "speed": "-1",
                                      "bearing": "-1", "batt": "-1"})
    assert fix.speed is None and fix.heading is None and fix.battery is None


def test_osmand_without_timestamp_takes_the_servers_time():
    before = int(time.time() * 1000)
    fix = osmand.parse_params({"lat": "45", "lon": "13"})
    assert before <= fix.ts <= int(time.time() * 1000)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"lon": "13"}, "lat"),
        ({"lat": "45"}, "lon"),
        ({"lat": "north", "lon": "13"}, "lat"),
        ({"lat": "nan", "lon": "13"}, "lat"),
        ({"lat": "NaN", "lon": "13"}, "lat"),
        ({"lat": "45", "lon": "Infinity"}, "lon"),
        ({"lat": "45", "lon": "-inf"}, "lon"),
        ({"lat": "1e999", "lon": "13"}, "lat"),
        ({"lat": "0x1f", "lon": "13"}, "lat"),
        ({"lat": "4_5", "lon": "13"}, "lat"),
        ({"lat": "\u0664\u0665", "lon": "13"}, "lat"),  # Arabic-Indic digits
        ({"lat": "-90.5", "lon": "13"}, "lat"),
        ({"lat": "45", "lon": "180.01"}, "lon"),
        ({"location": "45"}, "location"),
        ({"location": "45,x"}, "location"),
        ({"lat": "45", "lon": "13", "timestamp": "yesterday"}, "timestamp"),
        ({"lat": "45", "lon": "13", "timestamp": "2024-13-45T99:00:00"}, "timestamp"),
        ({"lat": "45", "lon": "13", "timestamp": "5"}, "timestamp"),
        ({"lat": "45", "lon": "13", "speed": "fast"}, "speed"),
        ({"lat": "45", "lon": "13", "speed": "5000"}, "speed"),
        ({"lat": "45", "lon": "13", "bearing": "x"}, "bearing"),
        ({"lat": "45", "lon": "13", "altitude": "-20000"}, "altitude"),
        ({"lat": "45", "lon": "13", "accuracy": "-1"}, "accuracy"),
        ({"lat": "45", "lon": "13", "batt": "101"}, "batt"),
    ],
)
def test_osmand_bad_input_names_the_field(params, field):
    with pytest.raises(InvalidFix) as caught:
        osmand.parse_params(params)
    assert caught.value.field == field


def test_traccar_client_json_is_converted_to_geoshare_units():
    device_id, fixes = osmand.parse_json(traccar_json("k", speed=2.5, heading=90))
    assert device_id == "k"
    (fix,) = fixes
    assert (fix.lat, fix.lon, fix.ts) == (45.2735, 13.7142, T * 1000 + 862)
    assert fix.speed == 2.5  # m/s, unchanged
    assert fix.heading == 90 and fix.accuracy == 5 and fix.altitude == 5
    assert fix.battery == pytest.approx(42)  # level 0.42


def test_traccar_client_unknown_speed_heading_and_battery():
    body = traccar_json("k", speed=-1, heading=-1)
    body["location"]["battery"]["level"] = -1
    _, (fix,) = osmand.parse_json(body)
    assert fix.speed is None and fix.heading is None and fix.battery is None


def test_traccar_client_batch_of_locations():
    body = traccar_json("k")
    second = json.loads(json.dumps(body["location"]))
    second["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T + 5))
    body["location"] = [body["location"], second]
    _, fixes = osmand.parse_json(body)
    assert [f.ts for f in fixes] == [T * 1000 + 862, (T + 5) * 1000]


def test_osmand_json_array_batch_of_flat_objects():
    batch = [{"id": "k", "lat": 45.1, "lon": 13.1, "timestamp": T + 2, "speed": 1},
             {"id": "k", "lat": "45.2", "lon": "13.2", "timestamp": str(T + 1)}]
    device_id, fixes = osmand.parse_json(batch)
    assert device_id == "k"
    assert [(f.lat, f.ts) for f in fixes] == [(45.1, (T + 2) * 1000), (45.2, (T + 1) * 1000)]
    assert fixes[0].speed == pytest.approx(KNOT_MS)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda b: b["location"]["coords"].pop("latitude"), "latitude"),
        (lambda b: b["location"]["coords"].update(longitude="13"), "longitude"),
        (lambda b: b["location"]["coords"].update(latitude=-91), "latitude"),
        (lambda b: b["location"].pop("coords"), "coords"),
        (lambda b: b["location"].update(timestamp="soon"), "timestamp"),
        (lambda b: b["location"].pop("timestamp"), "timestamp"),
        (lambda b: b["location"]["battery"].update(level=2), "battery.level"),
        (lambda b: b.update(location="here"), "location"),
    ],
)
def test_traccar_client_bad_input_names_the_field(mutate, field):
    body = traccar_json("k")
    mutate(body)
    with pytest.raises(InvalidFix) as caught:
        osmand.parse_json(body)
    assert caught.value.field == field


def test_osmand_batch_with_two_ids_is_refused():
    with pytest.raises(InvalidFix) as caught:
        osmand.parse_json([{"id": "a", "lat": 1, "lon": 1},
                                   {"id": "b", "lat": 1, "lon": 1}])
    assert caught.value.field == "id"


# -- the OsmAnd app's own template (issue 11) ---------------------------------------------------
# Values as OsmAnd's LiveSender.getLiveUrl fills them (osmandapp/OsmAnd,
# OsmAnd/src/net/osmand/plus/plugins/monitoring/live/LiveSender.java): {3} is
# location.getAccuracy() in metres, {5} location.getSpeed() in m/s, {11} the battery.


def _osmand_app_params(**values):
    from urllib.parse import parse_qsl

    from maps.web.phone_views import OSMAND_PLACEHOLDERS
    from tests.phone_payloads import osmand_fill

    filled = osmand_fill(OSMAND_PLACEHOLDERS, **values)
    return dict(parse_qsl(filled, keep_blank_values=True))


def test_osmand_app_template_reads_speed_in_m_s_and_accuracy_in_metres():
    params = _osmand_app_params(lat=45.2735188, lon=13.7142099, time_ms=T * 1000 + 123,
                                accuracy=4.5, altitude=211.0, speed=12.5, bearing=93.0,
                                battery=77)
    fix = osmand.parse_params(params)
    assert (fix.lat, fix.lon, fix.ts) == (45.2735188, 13.7142099, T * 1000 + 123)
    assert fix.speed == 12.5  # m/s, as OsmAnd sent it: not knots
    assert fix.accuracy == 4.5 and fix.altitude == 211.0 and fix.heading == 93.0
    assert fix.battery == 77


def test_osmand_app_without_accuracy_or_battery_placeholder():
    # getAccuracy() is 0.0 without an accuracy; an OsmAnd without {11} leaves it as is.
    params = _osmand_app_params(lat=45.5, lon=13.25, time_ms=T * 1000, accuracy=0.0)
    assert params["batt"] == "{11}"
    fix = osmand.parse_params(params)
    assert fix.accuracy is None and fix.battery is None
    assert fix.speed == 0.0 and fix.heading == 0.0


def test_traccar_speed_stays_knots_beside_osmand_speed_mps():
    assert osmand.parse_params({"lat": "1", "lon": "1", "speed": "10"}).speed == (
        pytest.approx(10 * KNOT_MS))
    assert osmand.parse_params({"lat": "1", "lon": "1", "speed_mps": "10",
                                "speed": "99"}).speed == 10.0


def test_osmand_speed_mps_is_validated_by_its_own_name():
    with pytest.raises(InvalidFix) as caught:
        osmand.parse_params({"lat": "1", "lon": "1", "speed_mps": "fast"})
    assert caught.value.field == "speed_mps"


def test_traccar_client_token_upload_is_not_a_position():
    # traccar/traccar-client lib/push_service.dart, _uploadToken.
    assert osmand.is_token_upload({"id": "k", "notificationToken": "fcm:abc"})
    assert not osmand.is_token_upload({"id": "k", "notificationToken": "t", "lat": "1",
                                       "lon": "1"})
    assert not osmand.is_token_upload({"id": "k", "lat": "1", "lon": "1"})


@pytest.mark.parametrize(("value", "charging"), [
    ("true", True), ("false", False), ("True", True), (None, None), ("", None),
    ("yes", None),
])
def test_osmand_charge_is_charging(value, charging):
    params = {"id": "k", "lat": "45.2735", "lon": "13.7142", "timestamp": str(T),
              "charge": value}
    assert osmand.parse_params({k: v for k, v in params.items() if v is not None}
                               ).charging is charging


@pytest.mark.parametrize(("battery", "charging"), [
    ({"level": 0.5, "is_charging": True}, True),
    ({"level": 0.5, "is_charging": False}, False),
    ({"level": 0.5}, None),
    ({"level": 0.5, "is_charging": "true"}, None),
    (None, None),
])
def test_traccar_client_is_charging_is_charging(battery, charging):
    body = traccar_json("k")
    if battery is None:
        del body["location"]["battery"]
    else:
        body["location"]["battery"] = battery
    (fix,) = osmand.parse_json(body)[1]
    assert fix.charging is charging
