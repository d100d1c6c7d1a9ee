"""GPSLogger for Android, custom URL ("Log to custom URL").

Source: ``CustomUrlManager.getFormattedTextblock`` in https://github.com/mendhak/gpslogger
(``gpslogger/src/main/java/com/mendhak/gpslogger/senders/customurl/CustomUrlManager.java``)
and its test ``CustomUrlManagerTest.getFormattedUrl_WhenValuesMissing_UrlReturnsWhatsAvailable``,
which shows a value GPSLogger lacks written as ``0.0`` (``acc=0.0``, ``battery=0.0``).
``%ISCHARGING`` is ``String.valueOf`` of the phone's "battery charging" flag: ``true``
or ``false``.
"""

from collections.abc import Mapping

from maps.domain.fixes import Fix
from maps.ingest.common import (
    fix_named,
    iso_ms,
    parse_timestamp,
    text_bool,
    text_number,
    unknown_if_negative,
    unknown_if_zero,
)

NAMES = {"accuracy": "acc", "altitude": "alt", "speed": "spd", "heading": "dir",
         "battery": "batt"}


def parse(params: Mapping[str, object]) -> Fix:
    """Return the :class:`~maps.domain.fixes.Fix` of GPSLogger custom-URL parameters.

    ``params`` maps the names of the template on the "Connect a phone" page to the
    strings GPSLogger put in place of its placeholders: ``lat`` (``%LAT``), ``lon``
    (``%LON``), ``acc`` (``%ACC``, m), ``alt`` (``%ALT``, m), ``spd`` (``%SPD``, m/s),
    ``dir`` (``%DIR``, degrees), ``batt`` (``%BATT``, %), ``charging`` (``%ISCHARGING``,
    ``true``/``false``; anything else is unknown), ``timestamp``
    (``%TIMESTAMP``, epoch seconds) or ``time`` (``%TIME``, ISO 8601). Empty values
    are absent; negative speed, direction or battery are unknown; GPSLogger writes
    ``0.0`` for a value it does not have, so ``acc`` 0 and ``batt`` 0 are unknown too
    (a speed, direction or altitude of 0 is a real value and kept). Raises
    :class:`InvalidFix`.
    """
    get = params.get
    if get("timestamp") not in (None, ""):
        ts, ts_name = parse_timestamp("timestamp", get("timestamp")), "timestamp"
    elif get("time") not in (None, ""):
        ts, ts_name = iso_ms("time", str(get("time"))), "time"
    else:
        ts, ts_name = None, "timestamp"
    return fix_named(
        {**NAMES, "ts": ts_name},
        lat=text_number("lat", get("lat")),
        lon=text_number("lon", get("lon")),
        ts=ts,
        accuracy=unknown_if_zero(text_number("acc", get("acc"))),
        altitude=text_number("alt", get("alt")),
        speed=unknown_if_negative(text_number("spd", get("spd"))),
        heading=unknown_if_negative(text_number("dir", get("dir"))),
        battery=unknown_if_zero(unknown_if_negative(text_number("batt", get("batt")))),
        charging=text_bool(get("charging")),
    )


