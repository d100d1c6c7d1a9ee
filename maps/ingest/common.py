"""Conversions every phone door shares: numbers, timestamps and field names.

Pure functions, no Django: each takes what the app put on the wire and returns values
in geoshare's units for :func:`maps.domain.fixes.fix_from_values`, the one gate, or raises
:class:`maps.domain.fixes.InvalidFix` naming the field as the app spells it.
"""

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl

import orjson

from maps.domain.fixes import Fix, InvalidFix, fix_from_values

# 1 knot = 1852 m / 3600 s (international nautical mile); 1 km/h = 1 / 3.6 m/s.
KNOT_MS = 1852 / 3600
KMH_MS = 1 / 3.6
# Traccar's rule for a numeric ``timestamp``: below 2**31 - 1 it is seconds, else ms.
SECONDS_BELOW = 2**31 - 1

# Lengths are bounded: int() of a 4,300-digit string raises (CPython's digit limit),
# and no coordinate or time needs more than a few dozen characters.
_DECIMAL = re.compile(r"[+-]?(?:\d{1,40}(?:\.\d{0,40})?|\.\d{1,40})(?:[eE][+-]?\d{1,4})?",
                      re.ASCII)
_INTEGER = re.compile(r"[+-]?\d{1,20}", re.ASCII)
# The most parameters a query string or form body may carry (as Django's
# DATA_UPLOAD_MAX_NUMBER_FIELDS): the doors read a dozen.
MAX_PARAMETERS = 1000


def form_params(text: str, field: str = "body") -> dict[str, str]:
    """Return the parameters of a query string or form body (``text``) as a ``dict``.

    Parsed as ``application/x-www-form-urlencoded`` (:func:`urllib.parse.parse_qsl`,
    blank values kept, percent-escapes as UTF-8 with U+FFFD for bad bytes, as Django's
    ``QueryDict`` parses them); of a repeated name the last value wins, which is what
    ``QueryDict.get`` answers. More than :data:`MAX_PARAMETERS` raise
    :class:`InvalidFix` naming ``field``.
    """
    # parse_qsl's own max_num_fields count: one more field than separators.
    if text.count("&") >= MAX_PARAMETERS:
        raise InvalidFix(field, f"at most {MAX_PARAMETERS} parameters")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    # Nothing escaped (a phone's usual query): parse_qsl's answer without its unquote
    # per name and value, a fifth of the phone doors' parsing (python -m bench.door).
    params: dict[str, str] = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[name] = value
    return params


def fix_named(names: Mapping[str, str], **values: Any) -> Fix:
    """Return :func:`fix_from_values` of ``values``, naming fields as the app does.

    ``names`` maps geoshare's field names to the app's; an :class:`InvalidFix` is
    re-raised with the app's name so the client sees the field it sent.
    """
    try:
        return fix_from_values(**values)
    except InvalidFix as exc:
        wire = names.get(exc.field, exc.field)
        if wire == exc.field:
            raise
        raise InvalidFix(wire, f"{wire}: {exc.detail}") from None


def json_number(field: str, value: object) -> float | None:
    """Return a JSON number as ``float`` (``None`` stays ``None``); refuse anything else."""
    if value is None:
        return None
    if type(value) is not int and type(value) is not float:
        raise InvalidFix(field, f"{field} must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFix(field, f"{field} must be a finite number")
    return number


def text_number(field: str, value: object) -> float | None:
    """Return a query-string number (``"46.05"``, ``"1e-4"``) as ``float``.

    ``None`` and the empty string are absent (``None``). JSON numbers are accepted too,
    for the flat objects of an OsmAnd JSON batch. ``nan``, ``inf``, ``1_0``, hex and
    the like are refused: only plain decimal notation is a number on these wires.
    """
    if value is None:
        return None
    if type(value) is not str:
        return json_number(field, value)
    text = value.strip()
    if not text:
        return None
    if not _DECIMAL.fullmatch(text):
        raise InvalidFix(field, f"{field} must be a number")
    number = float(text)
    if not math.isfinite(number):
        raise InvalidFix(field, f"{field} must be a finite number")
    return number


def unknown_if_negative(value: float | None) -> float | None:
    # The apps use -1 for "unknown" speed, heading and battery (Traccar Client JSON,
    # iOS Core Location); a negative value of these never means anything else.
    return None if value is None or value < 0 else value


def unknown_if_zero(value: float | None) -> float | None:
    # Android's Location.getAccuracy() is 0.0 when the fix has no accuracy, and
    # GPSLogger writes 0.0 for every value it lacks: no receiver reports an accuracy
    # of exactly 0 m, and a battery at 0 % has switched the phone off.
    return None if value is None or value == 0 else value


_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def text_bool(value: object) -> bool | None:
    """Return a query-string flag as ``bool``: ``true``/``1`` and ``false``/``0`` (any
    case; a JSON ``true``/``false`` as it is), ``None`` for anything else.

    Used for charging, which the apps write with Java's ``String.valueOf(boolean)``.
    Unrecognised text is unknown, not a refusal: a phone would resend the position
    forever for the sake of a flag.
    """
    if type(value) is bool:
        return value
    if type(value) is not str:
        return None
    return _FLAGS.get(value.strip().lower())


def json_bool(value: object) -> bool | None:
    """Return a JSON ``true``/``false`` as it is; anything else (or absent): ``None``."""
    return value if type(value) is bool else None


def iso_ms(field: str, text: str) -> int:
    """Return an ISO 8601 date-time as epoch ms; a naive one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidFix(field, f"{field} must be an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def parse_timestamp(field: str, value: object) -> int | None:
    """Return an OsmAnd / GPSLogger ``timestamp`` as UTC epoch milliseconds, or ``None``.

    Accepted, as Traccar's ``OsmAndProtocolDecoder`` reads it: epoch seconds or epoch
    milliseconds (a number below 2**31 - 1 is seconds), an ISO 8601 date-time (with a
    ``T``), or ``yyyy-MM-dd HH:mm:ss`` (taken as UTC). Raises :class:`InvalidFix`.
    """
    if value is None or (type(value) is str and not value.strip()):
        return None
    if type(value) is not str:
        # Not None here, so a number (or json_number raised).
        number = cast(float, json_number(field, value))
    elif _INTEGER.fullmatch(value.strip()):
        number = int(value)
        return number * 1000 if number < SECONDS_BELOW else number
    elif _DECIMAL.fullmatch(value.strip()):
        number = float(value)
    elif "T" in value:
        return iso_ms(field, value)
    else:
        try:
            moment = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise InvalidFix(
                field, f"{field} must be epoch seconds or milliseconds, ISO 8601, "
                       "or yyyy-MM-dd HH:mm:ss"
            ) from None
        return round(moment.replace(tzinfo=UTC).timestamp() * 1000)
    if not math.isfinite(number):
        raise InvalidFix(field, f"{field} must be a finite number")
    return round(number * 1000) if number < SECONDS_BELOW else round(number)


def load_json(body: bytes | str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidFix("body", "the body is not valid JSON (UTF-8)") from None


