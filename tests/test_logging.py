"""maps.telemetry.logging: secrets stay out of log lines, however the URL is encoded."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maps.telemetry.logging import RedactSecrets, redact

KEY = "Zk3xQ9_wLm2-Pq7rT5vY8uB1nC4dE6fG"


@pytest.mark.parametrize(
    "text",
    [
        f"/ws/rooms/abc/?k%65y={KEY}",
        f"/ws/rooms/abc/?%6Bey={KEY}",
        f"/ws/rooms/abc/?%6b%65%79={KEY}",
        f"/ws/rooms/abc/?%4B%45%59={KEY}",
        f"/ws/rooms/abc/?k%2565y={KEY}",  # encoded twice
        f"/ws/rooms/abc/?k%252565y={KEY}",  # three times
        f"/ws/rooms/abc/?x=1%26key={KEY}",  # the separator encoded
        f"/ws/rooms/abc/?key=%20{KEY}",
        f"/ws/rooms/abc/?key=%{KEY[:2]}{KEY}",
        f"/ws/rooms/abc/?key={KEY[:4]}%2{KEY[4:]}",
        f"/ingest/osmand/?%69d={KEY}&lat=46.1",
        f"/ingest/osmand/?device%5Fid={KEY}",
        f"/ingest/overland/?key={KEY}",
        f"/ingest/overland/?%6Bey={KEY}",
        f"/ingest/gpslogger/%4b{KEY}/",
        f"/ingest/gps%6Cogger/{KEY}/",
        f"/ingest%2Fgpslogger%2F{KEY}%2F",
        f"/ingest/gps%256Cogger/{KEY}/",
        f"/j%6Fin/{KEY}/",
        f"/join%252F{KEY}/",
        # Deeper than the decoder goes: the whole query is dropped.
        f"/ws/rooms/abc/?k%2525252525252565y={KEY}",
    ],
)
def test_percent_encoded_names_are_redacted(text):
    cleaned = redact(f'127.0.0.1:5 - "GET {text} HTTP/1.1" 200')
    assert KEY not in cleaned
    assert KEY[4:20] not in cleaned
    assert "[redacted]" in cleaned
    assert cleaned.startswith('127.0.0.1:5 - "GET /')
    assert cleaned.endswith(' HTTP/1.1" 200')


@pytest.mark.parametrize("coordinate", ["l%61t=46.12345", "%6C%6Fn=14.54321",
                                         "l%2561titude=46.12345"])
def test_percent_encoded_coordinates_are_redacted(coordinate):
    cleaned = redact(f"/ingest/osmand/?id=x&{coordinate}")
    assert "12345" not in cleaned and "54321" not in cleaned


def test_lines_without_secrets_are_left_as_they_were():
    line = '127.0.0.1:5 - "GET /static/maps/a%20b.css?v=1%2C2 HTTP/1.1" 200'
    assert redact(line) == line


def test_uvicorn_access_log_record_is_redacted():
    # uvicorn.protocols.utils.get_path_with_query_string: the path re-quoted, the query
    # string as the client sent it.
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("203.0.113.9:51234", "GET", f"/ingest/owntracks/?%6B%65y={KEY}&t=%2525", "1.1",
         200),
        None,
    )
    assert RedactSecrets().filter(record) is True
    message = record.getMessage()
    assert KEY not in message
    assert message.startswith('203.0.113.9:51234 - "GET /ingest/owntracks/?key=[redacted]')
    assert message.endswith(' HTTP/1.1" 200')


def test_sign_in_link_tokens_are_redacted():
    from maps.telemetry.logging import redact

    line = '127.0.0.1:5 - "GET /signin/AbC-123_xyz/ HTTP/1.1" 200'
    assert "AbC-123_xyz" not in redact(line)
    assert "/signin/[redacted]/" in redact(line)


# Run in a fresh interpreter: the test process's logging is pytest's, and Django
# configures logging (its DEFAULT_LOGGING, then settings.LOGGING) only at setup.
_DJANGO_LINES = """
import logging, django
django.setup()
from django.conf import settings
assert settings.DEBUG
logging.getLogger("django.request").warning("Not Found: %s", "/w/{token}/")
logging.getLogger("django.server").info('"%s" %s %s', "GET /signin/{token}/ HTTP/1.1",
                                        302, 0)
logging.getLogger("django").info("GET /join/{token}/ and /ws/watch/{token}/")
"""


def test_djangos_own_loggers_are_redacted_under_debug():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "geoshare.settings", "DEBUG": "1",
           "LOG_LEVEL": "INFO"}
    result = subprocess.run([sys.executable, "-c", _DJANGO_LINES.format(token=KEY)],
                            capture_output=True, text=True, env=env, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert KEY not in result.stdout + result.stderr
    # Each line once (not again through Django's own handler), redacted.
    assert lines == ["Not Found: /w/[redacted]/",
                     '"GET /signin/[redacted]/ HTTP/1.1" 302 0',
                     "GET /join/[redacted]/ and /ws/watch/[redacted]/"]
