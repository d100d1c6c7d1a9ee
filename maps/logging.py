"""Logging filter that keeps secrets and coordinates out of logs."""

import logging
import re

# Device keys travel as ?key=... (WebSocket URL, OwnTracks), GPSLogger puts the key in
# the path (/ingest/gpslogger/<key>/), OsmAnd as id=/deviceid=, invites as /join/<token>/.
_PATTERNS = [
    (re.compile(r"(?i)([?&](?:key|id|deviceid|device_id|token)=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(/ingest/gpslogger/)[^/\s\"'?]+"), r"\1[redacted]"),
    (re.compile(r"(/join/)[^/\s\"'?]+"), r"\1[redacted]"),
    (re.compile(r"(?i)([?&](?:lat|lon|location|latitude|longitude)=)[^&\s\"']+"), r"\1[redacted]"),
]


def redact(text):
    """Return ``text`` with device keys, invite tokens and coordinates replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrite each record's message so that no key, token or coordinate is logged.

    uvicorn's access log passes the request path with its query string as an argument
    (``'%s - "%s %s HTTP/%s" %d'``); the filter formats the message, redacts it and
    drops the arguments, so every handler sees the redacted text.
    """

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own handling
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
