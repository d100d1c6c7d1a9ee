"""The OwnTracks parser (maps.ingest.owntracks): payloads as the booklet shows them."""

import json

import pytest

from maps.domain.fixes import InvalidFix
from maps.ingest import owntracks
from tests.phone_payloads import T, owntracks_location

# -- OwnTracks: parsing -----------------------------------------------------------------------


def test_owntracks_location_is_converted_to_geoshare_units():
    fix = owntracks.parse(json.dumps(owntracks_location()).encode())
    assert (fix.lat, fix.lon) == (45.2735, 13.7142)
    assert fix.ts == T * 1000
    assert fix.accuracy == 8 and fix.altitude == 211 and fix.heading == 270
    assert fix.speed == pytest.approx(10.0)  # 36 km/h
    assert fix.battery == 81


def test_owntracks_fields_that_are_zero_may_be_absent():
    message = {"_type": "location", "lat": 45.0, "lon": 13.0, "tst": T}
    fix = owntracks.parse(json.dumps(message).encode())
    assert fix.ts == T * 1000
    assert (fix.accuracy, fix.altitude, fix.speed, fix.heading, fix.battery) == (
        None, None, None, None, None)


def test_owntracks_negative_speed_and_course_are_unknown():
    fix = owntracks.parse(json.dumps(owntracks_location(vel=-1, cog=-1)).encode())
    assert fix.speed is None and fix.heading is None


@pytest.mark.parametrize("kind", ["transition", "waypoint", "waypoints", "lwt", "status",
                                  "card", "steps", "beacon"])
def test_owntracks_other_types_give_no_fix(kind):
    assert owntracks.parse(json.dumps({"_type": kind, "tst": T}).encode()) is None


@pytest.mark.parametrize(
    "body, field",
    [
        (b"garbage", "body"),
        (b'{"_type": "location", "lat": 45.1, "lo', "body"),
        (b"[1, 2]", "body"),
        (b'{"lat": 45.0, "lon": 13.0, "tst": 1}', "_type"),
        (b'{"_type": "encrypted", "data": "c2VjcmV0"}', "_type"),  # no secret set
        (b'{"_type": "location", "lat": NaN, "lon": 13.0, "tst": 1700000000}', "body"),
        (b'{"_type": "location", "lat": 1e999, "lon": 13.0, "tst": 1700000000}', "body"),
        (b'{"_type": "location", "lon": 13.0, "tst": 1700000000}', "lat"),
        (b'{"_type": "location", "lat": "45.0", "lon": 13.0, "tst": 1700000000}', "lat"),
        (b'{"_type": "location", "lat": 91, "lon": 13.0, "tst": 1700000000}', "lat"),
        (b'{"_type": "location", "lat": 45.0, "lon": 181, "tst": 1700000000}', "lon"),
        (b'{"_type": "location", "lat": 45.0, "lon": 13.0}', "tst"),
        (b'{"_type": "location", "lat": 45.0, "lon": 13.0, "tst": "now"}', "tst"),
        (b'{"_type": "location", "lat": 45.0, "lon": 13.0, "tst": 5}', "tst"),
        (b'{"_type": "location", "lat": 45.0, "lon": 13.0, "tst": 1700000000, "acc": -3}',
         "acc"),
        (b'{"_type": "location", "lat": 45.0, "lon": 13.0, "tst": 1700000000, "batt": 140}',
         "batt"),
        (b'{"_type": "location", "lat": 45.0, "lon": 13.0, "tst": 1700000000, "vel": true}',
         "vel"),
    ],
)
def test_owntracks_bad_input_names_the_field(body, field):
    with pytest.raises(InvalidFix) as caught:
        owntracks.parse(body)
    assert caught.value.field == field


def test_owntracks_tids_are_unique_per_member():
    assert owntracks.tid(7, "Ana") == "AN7"
    assert owntracks.tid(12, "Ana") == "AN12"
    assert owntracks.tid(3, "  ") == "M3"


# -- payload encryption (owntracks/android model/EncryptionProvider.kt) -----------------------


def _app_encrypt(secret, plaintext):
    """Encrypt as EncryptionProvider.encrypt: key = secret bytes padded/cut to 32,
    random 24-byte nonce, output base64(nonce | mac | ciphertext) (PyNaCl)."""
    import base64

    import nacl.secret
    import nacl.utils

    key = secret.encode()[:32].ljust(32, b"\0")
    nonce = nacl.utils.random(24)
    sealed = nacl.secret.SecretBox(key).encrypt(plaintext, nonce)
    assert bytes(sealed)[:24] == nonce
    return {"_type": "encrypted", "data": base64.b64encode(bytes(sealed)).decode()}


def test_encrypted_location_is_decrypted_with_the_devices_secret():
    plain = json.dumps(owntracks_location()).encode()
    body = json.dumps(_app_encrypt("correct horse battery", plain)).encode()
    fix = owntracks.parse(body, secret="correct horse battery")
    assert (fix.lat, fix.ts) == (45.2735, T * 1000)
    assert fix.speed == pytest.approx(10.0)


def test_secret_is_cut_to_32_bytes_as_the_app_does():
    long_secret = "x" * 40
    body = json.dumps(_app_encrypt(long_secret, json.dumps(owntracks_location()).encode()))
    assert owntracks.parse(body.encode(), secret="x" * 32).lat == 45.2735


@pytest.mark.parametrize("data, secret", [
    ("not base64!", "s"),
    ("c2hvcnQ=", "s"),  # too short
    (None, "s"),
])
def test_undecryptable_data_is_a_clear_refusal(data, secret):
    body = json.dumps({"_type": "encrypted", "data": data}).encode()
    with pytest.raises(InvalidFix) as caught:
        owntracks.parse(body, secret=secret)
    assert caught.value.field == "data"


def test_wrong_secret_is_a_clear_refusal():
    body = json.dumps(_app_encrypt("right", json.dumps(owntracks_location()).encode()))
    with pytest.raises(InvalidFix) as caught:
        owntracks.parse(body.encode(), secret="wrong")
    assert caught.value.field == "data" and "secret" in caught.value.detail


def test_encrypted_answer_round_trip_with_pynacl():
    import base64

    import nacl.secret

    friends = [{"_type": "card", "tid": "BO2", "name": "Bo"}]
    sealed = json.loads(owntracks.answer(friends, "s3cret"))
    assert sealed["_type"] == "encrypted"
    raw = base64.b64decode(sealed["data"])
    opened = nacl.secret.SecretBox(b"s3cret".ljust(32, b"\0")).decrypt(raw)
    assert json.loads(opened) == friends
    assert json.loads(owntracks.decrypt("s3cret", sealed["data"])) == friends
    assert json.loads(owntracks.answer(friends)) == friends  # no secret: plain


def test_friend_messages_fit_the_android_parser():
    # owntracks/android model/messages/MessageLocation.kt: acc, alt, vel, cog are Int
    # (LenientIntSerializer), batt Int?, tst Long, lat/lon Double; MessageCard: name, tid.
    from datetime import UTC, datetime
    from types import SimpleNamespace

    position = SimpleNamespace(lat=45.3, lon=13.8, accuracy=12.6, altitude=99.5,
                               speed=5.2778, heading=359.6, battery=55.5,
                               device_time=datetime.fromtimestamp(T + 0.9, tz=UTC))
    card, location = owntracks.friend_messages(12, "Bo", position)
    assert card == {"_type": "card", "tid": "BO12", "name": "Bo"}
    assert location == {"_type": "location", "tid": "BO12", "lat": 45.3, "lon": 13.8,
                        "tst": T, "acc": 13, "alt": 100, "vel": 19, "cog": 0, "batt": 56}
    for key in ("tst", "acc", "alt", "vel", "cog", "batt"):
        assert type(location[key]) is int
    bare = SimpleNamespace(lat=1.0, lon=2.0, accuracy=None, altitude=None, speed=None,
                           heading=None, battery=None,
                           device_time=datetime.fromtimestamp(T, tz=UTC))
    _, location = owntracks.friend_messages(3, "Ćiro", bare)
    assert location == {"_type": "location", "tid": "ĆI3", "lat": 1.0, "lon": 2.0,
                        "tst": T}


@pytest.mark.parametrize(("bs", "charging"), [
    (0, None), (1, False), (2, True), (3, True), (None, None), (4, None), ("2", None),
    (True, None),
])
def test_owntracks_battery_status_is_charging(bs, charging):
    body = json.dumps(owntracks_location(bs=bs)).encode()
    assert owntracks.parse(body).charging is charging
