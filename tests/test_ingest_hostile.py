"""Hostile input on every HTTP ingest door: a clean error, nothing stored or broadcast.

Mirrors the WebSocket list in test_privacy.py (issue 5), and throws generated input at
each parser (hypothesis): only ``InvalidFix`` may come out, and every fix is valid.
"""

import json
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from maps.domain.fixes import Fix, InvalidFix
from maps.ingest import gpslogger, osmand, owntracks
from maps.models import Position

pytestmark = pytest.mark.django_db(transaction=True)

# Out of range for lat and lon alike; 90.0000001 (lat only) is in the cases below.
HOSTILE_VALUES = ["", "abc", "NaN", "nan", "Infinity", "-inf", "1e999", "-180.5", "true", "[]", "null", "x" * 100_000, "0x10", "１２"]
HOSTILE_BODIES = [b"", b"not json", b"[]", b"null", b"[" * 5000 + b"]" * 5000,
                  b'{"_type": "location", "lat": NaN, "lon": 1, "tst": 1700000000}',
                  b'{"_type": "location", "lat": 1e999, "lon": 1, "tst": 1700000000}',
                  b'{"_type": "location", "lat": 90.0000001, "lon": 1, "tst": 1700000000}',
                  b'{"_type": "location", "lat": 1, "lon": -180.5, "tst": 1700000000}',
                  b'{"_type": "location", "lat": "46", "lon": "14", "tst": 1700000000}',
                  b'{"_type": "location", "lat": true, "lon": false, "tst": 1700000000}',
                  b'{"_type": "location", "lon": 1, "tst": 1700000000}',
                  b'{"_type": "location", "lat": 1, "lon": 1}',
                  json.dumps({"_type": "location", "lat": 1, "lon": 1, "tst": 1700000000,
                              "acc": "x" * 200_000}).encode(),
                  b"\xff\xfe garbage", b'{"_type": "location", "lat": 1, "lo']


def assert_clean_refusal(response):
    assert 400 <= response.status_code < 500, response.status_code
    if response.status_code != 413:
        body = orjson.loads(response.content)  # strict JSON
        assert "error" in body


def nothing_stored():
    return not Position.objects.exists()


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_owntracks_refuses_hostile_bodies(client, member_key, body):
    response = client.post(f"/ingest/owntracks/?key={member_key}", body,
                           content_type="application/json")
    if body == b"":
        # OwnTracks posts an empty body when a friend is deleted in the app; its HTTP
        # mode expects 200 and an array (issue 3), so this one is answered, not refused.
        assert (response.status_code, orjson.loads(response.content)) == (200, [])
    else:
        assert_clean_refusal(response)
    assert nothing_stored()


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_osmand_json_refuses_hostile_bodies(client, member_key, body):
    response = client.post(f"/ingest/osmand/?id={member_key}", body,
                           content_type="application/json")
    assert_clean_refusal(response)
    assert nothing_stored()


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("field", ["lat", "lon"])
def test_osmand_query_refuses_hostile_values(client, member_key, field, value):
    params = {"id": member_key, "lat": "46.05", "lon": "14.5", field: value}
    response = client.get("/ingest/osmand/", params)
    assert_clean_refusal(response)
    assert nothing_stored()


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("field", ["lat", "lon"])
def test_gpslogger_refuses_hostile_values(client, member_key, field, value):
    params = {"lat": "46.05", "lon": "14.5", field: value}
    response = client.get(f"/ingest/gpslogger/{member_key}/", params)
    assert_clean_refusal(response)
    assert nothing_stored()


def test_missing_fields_and_binary_bodies_are_refused(client, member_key):
    for response in (
        client.get("/ingest/osmand/", {"id": member_key, "lat": "90.0000001", "lon": "1"}),
        client.get(f"/ingest/gpslogger/{member_key}/", {"lat": "90.0000001", "lon": "1"}),
        client.get("/ingest/osmand/", {"id": member_key}),
        client.get(f"/ingest/gpslogger/{member_key}/"),
        client.post(f"/ingest/osmand/?id={member_key}", bytes(range(256)),
                    content_type="application/octet-stream"),
        client.post(f"/ingest/owntracks/?key={member_key}", bytes(range(256)),
                    content_type="application/json"),
    ):
        assert_clean_refusal(response)
    assert nothing_stored()


@pytest.mark.parametrize("digits", [4_300, 5_000, 100_000])
def test_a_timestamp_of_thousands_of_digits_is_a_400_naming_it(client, member_key, digits):
    # int() of more than 4,300 digits raises ValueError in CPython: it was a 500.
    huge = "1" * digits
    for response in (
        client.get("/ingest/osmand/", {"id": member_key, "lat": "1", "lon": "1",
                                       "timestamp": huge}),
        client.get(f"/ingest/gpslogger/{member_key}/", {"lat": "1", "lon": "1",
                                                         "timestamp": huge}),
        client.post(f"/ingest/osmand/?id={member_key}",
                    f"[{{\"id\": \"{member_key}\", \"lat\": 1, \"lon\": 1, "
                    f"\"timestamp\": \"{huge}\"}}]",
                    content_type="application/json"),
    ):
        assert response.status_code == 400, response.content[:200]
        assert orjson.loads(response.content)["field"] == "timestamp"
    assert nothing_stored()


def assert_valid(fix):
    assert isinstance(fix, Fix)
    for name in ("lat", "lon", "accuracy", "altitude", "speed", "heading", "battery"):
        value = getattr(fix, name)
        assert value is None or (type(value) is float and math.isfinite(value))
    assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
    orjson.dumps(fix.to_wire(1, 1))


text_or_number = (st.text(max_size=12) | st.integers() | st.floats(allow_nan=True)
                  | st.none() | st.booleans())
names = st.sampled_from(["lat", "lon", "location", "timestamp", "speed", "bearing",
                         "heading", "altitude", "accuracy", "hdop", "batt", "id", "acc",
                         "alt", "spd", "dir", "time", "battery"])


@given(params=st.dictionaries(names, st.text(max_size=24), max_size=8))
@hsettings(max_examples=300, deadline=None)
def test_query_parsers_raise_only_invalid_fix(params):
    for parse in (osmand.parse_params, gpslogger.parse):
        try:
            fix = parse(params)
        except InvalidFix:
            continue
        assert_valid(fix)


json_values = st.recursive(
    text_or_number, lambda c: st.lists(c, max_size=3) | st.dictionaries(names, c, max_size=4),
    max_leaves=10)


@given(obj=st.dictionaries(
    st.sampled_from(["_type", "lat", "lon", "tst", "acc", "alt", "vel", "cog", "batt",
                     "device_id", "location", "coords", "timestamp"]),
    json_values | st.just("location"), max_size=8))
@hsettings(max_examples=300, deadline=None)
def test_json_parsers_raise_only_invalid_fix(obj):
    body = json.dumps(obj, allow_nan=True).encode()
    try:
        fix = owntracks.parse(body)
    except InvalidFix:
        fix = None
    if fix is not None:
        assert_valid(fix)
    try:
        _device, fixes = osmand.parse_json(obj)
    except InvalidFix:
        return
    for fix in fixes:
        assert_valid(fix)
