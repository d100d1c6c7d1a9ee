"""Where a share's positions come from: one source at a time, pure.

A member's share has one source (docs/protocol.md, "One source per share"): the phone
app (a :class:`~maps.models.Device`, ``"device:<pk>"``) or the browser
(``"browser:<id>"``) that started it. A browser's id is a random string the page keeps
in ``localStorage`` and sends in the WebSocket URL (``?browser=``); it tells one
member's browsers apart and authenticates nothing (the session does). An empty source
is one not recorded yet: the next position claims it; :data:`ANY_DEVICE` is claimed by
the next position of one of the member's phone apps.
"""

import re

#: A browser id: 8 to 64 letters, digits, ``-`` or ``_``.
BROWSER_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")

#: The source of a share started for "my phone apps" (docs/protocol.md): the first
#: of the member's phone apps to send a position claims it.
ANY_DEVICE = "device:*"

#: The longest source name kept (a device name's limit).
SOURCE_NAME_MAX = 40


def device_source(device_pk: int) -> str:
    """Return the source string of the phone app with device ``device_pk``."""
    return f"device:{int(device_pk)}"


def browser_source(browser_id: str) -> str:
    """Return the source string of a browser; raises ``ValueError`` for an id that is
    not 8 to 64 letters, digits, ``-`` or ``_``."""
    if not BROWSER_ID_RE.fullmatch(browser_id):
        raise ValueError("a browser id is 8 to 64 letters, digits, - or _")
    return f"browser:{browser_id}"


def claimable(source: str) -> tuple[str, ...]:
    """Return the recorded sources of a running share that ``source`` may claim with
    its first position: none recorded, and "my phone apps" for a phone app."""
    return ("", ANY_DEVICE) if source.startswith("device:") else ("",)


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
             ("FxiOS/", "Firefox"), ("CriOS/", "Chrome"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"),
            ("Windows", "Windows"), ("Mac OS X", "Mac"), ("CrOS", "ChromeOS"),
            ("Linux", "Linux"))


def browser_label(user_agent: str) -> str:
    """Return a short name for a browser from its ``User-Agent``: ``"Chrome · Android"``,
    ``"Firefox"``, ``"Safari · iPhone"``, or ``"Browser"`` when nothing is known.

    Brand names only (nothing to translate); at most :data:`SOURCE_NAME_MAX`
    characters.
    """
    browser = next((name for token, name in _BROWSERS if token in user_agent), "")
    system = next((name for token, name in _SYSTEMS if token in user_agent), "")
    label = " · ".join(part for part in (browser or "Browser", system) if part)
    return label[:SOURCE_NAME_MAX]
