"""Logging filter that keeps secrets and coordinates out of logs."""

import logging
import re
from urllib.parse import unquote

# Device keys travel as ?key=... (WebSocket URL, OwnTracks, Overland), GPSLogger puts the
# key in the path (/ingest/gpslogger/<key>/), OsmAnd as id=/deviceid=, invites as
# /join/<token>/, sign-in links as /signin/<token>/, phone setup links as
# /setup/<token>/, watch links as /w/<token>/. Hauk sends its password and session id in POST bodies, never in a URL;
# Overland's token is a header.
_TEMPLATES = [
    (r"(?i)([?&](?:key|id|deviceid|device_id|token)=){gap}[^&\s\"']+", r"\1[redacted]"),
    (r"(?i)(/ingest/gpslogger/){gap}[^/\s\"'?]+", r"\1[redacted]"),
    (r"(?i)(/join/|/signin/|/setup/){gap}[^/\s\"'?]+", r"\1[redacted]"),
    # Watch-me links: the page /w/<token>/ and its socket /ws/watch/<token>/.
    (r"(?i)(/w/|/ws/watch/){gap}[^/\s\"'?]+", r"\1[redacted]"),
    (r"(?i)([?&](?:lat|lon|location|latitude|longitude)=){gap}[^&\s\"']+", r"\1[redacted]"),
]
# In a URL as sent a space ends it; once decoded, a value may start with spaces (%20).
_PATTERNS = [(re.compile(p.format(gap="")), r) for p, r in _TEMPLATES]
_DECODED_PATTERNS = [(re.compile(p.format(gap=" *")), r) for p, r in _TEMPLATES]

# Django and the phone apps' servers decode a URL once; decoding a few times more
# undoes double encoding (%256B -> %6B -> k). Text still encoded after that many rounds
# is not a URL anyone meant: what follows its first escape is dropped.
_DECODE_ROUNDS = 4
_ESCAPE_TO_END = re.compile(r"%[0-9A-Fa-f]{2}[^\s\"']*")


def _redact_plain(text, patterns=_PATTERNS):
    for pattern, replacement in patterns:
        text = pattern.sub(replacement, text)
    return text


def redact(text):
    """Return ``text`` with device keys, invite tokens and coordinates replaced.

    Parameter names and paths are matched after percent-decoding too (``?k%65y=``,
    ``/ingest/gps%6Cogger/``, double encoding), each round redacted before the next
    decodes it. A line that holds nothing to redact comes back unchanged; one that did
    comes back decoded as far as it was read.
    """
    current, patterns = text, _PATTERNS
    changed = False
    for _ in range(_DECODE_ROUNDS + 1):
        redacted = _redact_plain(current, patterns)
        changed = changed or redacted != current
        decoded = unquote(redacted)
        if decoded == redacted:
            return redacted if changed else text
        current, patterns = decoded, _DECODED_PATTERNS
    return _ESCAPE_TO_END.sub("[redacted]", _redact_plain(current, patterns))


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
