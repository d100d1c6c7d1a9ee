"""Hauk (Android): what the app posts to a Hauk server, read without Django.

Sources, in https://github.com/bilde2910/Hauk:

- the server's ``backend-php/api/create.php``, ``post.php`` and ``stop.php``: form
  POSTs; answers are lines, the first ``OK`` or an error message, with the
  ``X-Hauk-Version`` header;
- the app's ``android/app/src/main/java/info/varden/hauk/http/``:
  ``SessionInitiationPacket.java`` (``create.php``: ``pwd``, ``dur`` seconds, ``int``
  seconds, ``mod`` 0 alone / 1 create group / 2 join group, ``ado``, ``e2e`` 0/1 with
  ``salt``, optional ``usr``, ``lid``, ``nic``, ``pin``), ``LocationUpdatePacket.java``
  (``post.php``: ``sid``, ``lat``, ``lon``, ``prv``, ``time`` =
  ``System.currentTimeMillis() / 1000.0``, so epoch seconds with a fraction; ``spd``
  (m/s) and ``acc`` (m) only when the fix has them; encrypted shares add ``iv``),
  ``StopSharingPacket.java`` (``stop.php``: ``sid``, optional ``lid``) and
  ``ConnectionThread.java`` (a non-200 answer is shown only as its status code: the
  app reads the lines of a 200 answer, so refusals are 200 with the reason as line 1).
"""

from collections.abc import Mapping

from maps.domain.fixes import Fix, InvalidFix
from maps.ingest.common import fix_named, text_number

# Hauk's own Constants.java SHARE_MODE_* and backend-php/include/inc.php.
MODE_ALONE = 0
E2E_REFUSED = ("End-to-end encrypted shares cannot be read by a server, so geoshare "
               "cannot show them: turn off password protection (E2E) in Hauk's settings")
GROUP_REFUSED = ("geoshare does not take Hauk group shares: start a share on your own "
                 "(the room's map already shows everyone)")
# The longest share geoshare starts: Hauk's own server allows a day by default
# (max_duration in config-sample.php); a week covers a trip.
MAX_DURATION_S = 7 * 24 * 3600

NAMES = {"ts": "time", "accuracy": "acc", "speed": "spd", "altitude": "alt"}


def parse_create(params: Mapping[str, str]) -> int:
    """Return the duration in seconds of a Hauk ``create.php`` form (``params``).

    Only a share of one's own (``mod`` absent or 0) in plain text (``e2e`` absent or
    0) is taken. Raises :class:`InvalidFix` naming ``dur``, ``int``, ``mod`` or ``e2e``.
    """
    get = params.get
    if get("e2e") not in (None, "", "0"):
        raise InvalidFix("e2e", E2E_REFUSED)
    mode = get("mod")
    if mode not in (None, "", "0"):
        raise InvalidFix("mod", GROUP_REFUSED)
    duration = text_number("dur", get("dur"))
    if duration is None:
        raise InvalidFix("dur", "dur (the share's duration in seconds) is required")
    if not 0 < duration <= MAX_DURATION_S:
        raise InvalidFix("dur", f"dur must be between 1 and {MAX_DURATION_S} seconds")
    interval = text_number("int", get("int"))
    if interval is None or interval <= 0:
        raise InvalidFix("int", "int (the interval in seconds) must be a positive number")
    return int(duration)


def parse_post(params: Mapping[str, str]) -> Fix:
    """Return the :class:`~maps.domain.fixes.Fix` of a Hauk ``post.php`` form (``params``).

    ``lat``, ``lon`` (degrees) and ``time`` (epoch seconds, possibly fractional)
    required; ``acc`` (m), ``spd`` (m/s) and ``alt`` (m) optional. ``prv`` (the
    location provider) is not kept. A post with ``iv`` is end-to-end encrypted and
    refused. Raises :class:`InvalidFix` naming the field.
    """
    get = params.get
    if get("iv") not in (None, ""):
        raise InvalidFix("iv", E2E_REFUSED)
    seconds = text_number("time", get("time"))
    if seconds is None:
        raise InvalidFix("time", "time (epoch seconds) is required")
    return fix_named(
        NAMES,
        lat=text_number("lat", get("lat")),
        lon=text_number("lon", get("lon")),
        ts=round(seconds * 1000),
        accuracy=text_number("acc", get("acc")),
        speed=text_number("spd", get("spd")),
        altitude=text_number("alt", get("alt")),
    )
