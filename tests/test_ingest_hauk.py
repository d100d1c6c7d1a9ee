"""The Hauk parser (maps.ingest.hauk): forms as bilde2910/Hauk's Android app posts them.

Field names and formats from the app's ``android/app/src/main/java/info/varden/hauk/
http/SessionInitiationPacket.java`` and ``LocationUpdatePacket.java``: ``time`` is
``String.valueOf(System.currentTimeMillis() / 1000.0)``, which Java writes in
scientific notation for numbers this large (``1.763700000123E9``).
"""

import pytest

from maps.domain.fixes import InvalidFix
from maps.ingest import hauk
from tests.phone_payloads import T, hauk_create_form, hauk_post_form


def test_hauk_create_alone_gives_the_duration():
    assert hauk.parse_create(hauk_create_form("k", dur=3600)) == 3600


@pytest.mark.parametrize("fields, field", [
    ({"e2e": "1", "salt": "c2FsdA=="}, "e2e"),
    ({"mod": "1", "nic": "Ana"}, "mod"),
    ({"mod": "2", "nic": "Ana", "pin": "123456"}, "mod"),
    ({"dur": "0"}, "dur"),
    ({"dur": "forever"}, "dur"),
    ({"dur": str(8 * 24 * 3600)}, "dur"),
    ({"dur": None}, "dur"),
    ({"int": "0"}, "int"),
])
def test_hauk_create_refusals_name_the_field(fields, field):
    form = hauk_create_form("k")
    form.update(fields)
    with pytest.raises(InvalidFix) as caught:
        hauk.parse_create({k: v for k, v in form.items() if v is not None})
    assert caught.value.field == field


def test_hauk_post_in_geoshare_units():
    fix = hauk.parse_post(hauk_post_form("sid", time_s=T + 0.123, spd=3.5, acc=12.0))
    assert (fix.lat, fix.lon) == (45.2735, 13.7142)
    assert fix.ts == T * 1000 + 123  # fractional epoch seconds
    assert fix.speed == 3.5 and fix.accuracy == 12.0


def test_hauk_post_java_double_time_and_missing_speed():
    # String.valueOf(1.763700000123E9) is how Java writes a double this large.
    form = hauk_post_form("sid", time_s=None)
    form["time"] = "1.763700000123E9"
    fix = hauk.parse_post(form)
    assert fix.ts == 1_763_700_000_123
    assert fix.speed is None and fix.accuracy is None


@pytest.mark.parametrize("fields, field", [
    ({"lat": "north"}, "lat"),
    ({"lat": "91"}, "lat"),
    ({"lon": None}, "lon"),
    ({"time": None}, "time"),
    ({"time": "soon"}, "time"),
    ({"spd": "-"}, "spd"),
    ({"acc": "-3"}, "acc"),
    ({"iv": "aXY="}, "iv"),
])
def test_hauk_post_refusals_name_the_field(fields, field):
    form = hauk_post_form("sid")
    form.update(fields)
    with pytest.raises(InvalidFix) as caught:
        hauk.parse_post({k: v for k, v in form.items() if v is not None})
    assert caught.value.field == field
