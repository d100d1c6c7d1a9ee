"""History over HTTP: the track API, the map's history, exports, "download my data".

Every endpoint of a room authenticates with :func:`maps.access.api_member` (browser
session or ``Authorization: Bearer <device key>``) and reads only what
:func:`maps.access.history_scope` allows: the room's visibility setting and its
retention. Errors are JSON, ``{"error": ..., "field": ...}`` (docs/api.md).
"""

import io
import math
import zipfile
from datetime import UTC, datetime, timedelta

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from maps.access import doors, limits
from maps.access.doors import Refused
from maps.access.scope import api_member, history_scope
from maps.domain import exports, tracks
from maps.models import AlertRule, Place, PlaceEvent
from maps.protocol import events
from maps.storage import selectors
from maps.storage.selectors import exact_ms, from_ms

PAGE_DEFAULT = 1000
PAGE_MAX = 5000
# Device times may run up to 10 minutes ahead of the server (maps.domain.fixes).
_AHEAD = timedelta(minutes=10, milliseconds=1)
_MAX_ZOOM = 30
_MAX_TOLERANCE_M = 1_000_000


def _json(data, status=200):
    return HttpResponse(orjson.dumps(data), status=status,
                        content_type="application/json")


def _refusal(exc):
    return doors.json_refusal(exc)


def api_view(view):
    """Wrap a history view: GET only, never cached, :class:`Refused` answered as JSON."""

    @require_GET
    @never_cache
    def wrapper(request, **kwargs):
        try:
            return view(request, **kwargs)
        except Refused as exc:
            return _refusal(exc)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


# -- parameters -----------------------------------------------------------------------


def parse_time(field: str, value: str) -> datetime:
    """Return ``value`` as an aware UTC datetime: epoch milliseconds, or ISO 8601 with
    a zone.

    Raises :class:`Refused` (400, naming ``field``) for anything else, for a time
    without a zone, and for an instant outside UTC years 1 to 9999 (such as
    ``9999-12-31T23:59:59-23:59``), which no datetime can hold.
    """
    text = value.strip()
    if text.lstrip("-").isdigit() and len(text) <= 16:
        try:
            return from_ms(int(text))
        except (OverflowError, OSError, ValueError):
            raise Refused(400, f"{field} is out of range", field) from None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"{field} must be epoch milliseconds or ISO 8601 "
                      "(2025-06-01T08:00:00Z)", field) from None
    if parsed.tzinfo is None:
        raise Refused(400, f"{field} needs a time zone (Z or +01:00)", field)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise Refused(400, f"{field} is out of range", field) from None


def _id(field, value):
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        raise Refused(400, f"{field} must be a member id (a positive integer)", field)
    return int(value)


def _number(field, value, low, high):
    try:
        number = float(value)
    except ValueError:
        raise Refused(400, f"{field} must be a number", field) from None
    if not (math.isfinite(number) and low <= number <= high):
        raise Refused(400, f"{field} must be between {low:g} and {high:g}", field)
    return number


def _range(request, now, *, default_since=None):
    """Return ``(since, until)`` of the request: ``since`` and ``until`` parameters."""
    get = request.GET.get
    since = parse_time("since", get("since")) if get("since") else default_since
    until = parse_time("until", get("until")) if get("until") else now + _AHEAD
    if since is not None and until < since:
        raise Refused(400, "until must not be before since", "until")
    return since, until


def _caller_scope(request, room_id, now):
    """``(the calling member, their history scope)`` of a request."""
    member = api_member(request, room_id)
    only = request.GET.get("member")
    return member, history_scope(member, only=None if not only else _id("member", only),
                                 now=now)


def _scope(request, room_id, now):
    return _caller_scope(request, room_id, now)[1]


def _export_name(scope, since, until, extension):
    who = scope.members[0].name if len(scope.members) == 1 else scope.room.name
    start = since.astimezone(UTC).strftime("%Y%m%d-%H%M")
    end = until.astimezone(UTC).strftime("%Y%m%d-%H%M")
    return f"geoshare-{slugify(who) or 'track'}-{start}-{end}.{extension}"


# -- the track API ---------------------------------------------------------------------


@api_view
def track(request, room_id):
    """``GET /api/rooms/<room_id>/track``: one page of positions, oldest first.

    Parameters: ``member`` (id; default every member the caller may see), ``since``
    and ``until`` (epoch ms or ISO 8601; ``since <= ts < until``, default the whole
    retained history), ``cursor`` (from the previous page's ``next``), ``limit``
    (1 to 5,000, default 1,000). Answers ``{"positions": [wire position, ...],
    "next": cursor or null}``; positions in the shape of docs/protocol.md.
    """
    now = timezone.now()
    scope = _scope(request, room_id, now)
    since, until = _range(request, now, default_since=scope.floor)
    after = None
    if request.GET.get("cursor"):
        try:
            after = selectors.decode_cursor(request.GET["cursor"])
        except ValueError:
            raise Refused(400, "cursor is not one this API gave", "cursor") from None
    limit = PAGE_DEFAULT
    if request.GET.get("limit"):
        limit = int(_number("limit", request.GET["limit"], 1, PAGE_MAX))
    positions, cursor = selectors.history_page(
        scope.member_ids, since=since, until=until, floor=scope.floor, after=after,
        limit=limit,
    )
    return _json({"positions": positions, "next": cursor})


# -- the map's history -----------------------------------------------------------------


@api_view
def history(request, room_id):
    """``GET /api/rooms/<room_id>/history``: tracks to draw and stays, as GeoJSON.

    Parameters: ``member``, ``since``, ``until`` (as the track API; ``since`` defaults
    to an hour ago), and ``zoom`` (the map's zoom: the tolerance is one pixel there) or
    ``tolerance`` (metres). A FeatureCollection (RFC 7946) with foreign members
    ``since``, ``until`` (epoch ms), ``tolerance_m``, ``gap_ms`` and ``stay_rule``
    (``radius_m``, ``min_ms``); features: one simplified track per member
    (:func:`maps.domain.tracks.track_feature`, ``kind`` ``"track"``), then that member's
    stays (``kind`` ``"stay"``).
    """
    now = timezone.now()
    scope = _scope(request, room_id, now)
    since, until = _range(request, now, default_since=now - timedelta(hours=1))
    get = request.GET.get
    zoom = _number("zoom", get("zoom"), 0, _MAX_ZOOM) if get("zoom") else None
    tolerance = (_number("tolerance", get("tolerance"), 0, _MAX_TOLERANCE_M)
                 if get("tolerance") else None)
    found = selectors.history_tracks(scope.members, since=since, until=until,
                                     floor=scope.floor, full=False)
    tolerance_m = tracks.drawing_tolerance(found, zoom=zoom, tolerance_m=tolerance)
    collection = tracks.feature_collection(
        found, tolerance_m=tolerance_m, stays=True, extras=False,
        foreign={
            "since": exact_ms(max(since, scope.floor)), "until": exact_ms(until),
            "tolerance_m": tolerance_m, "gap_ms": tracks.GAP_MS,
            "stay_rule": {"radius_m": tracks.STAY_RADIUS_M,
                          "min_ms": tracks.STAY_MIN_MS},
        },
    )
    return _json(collection)


# -- exports ---------------------------------------------------------------------------


def _export_size(count):
    """Refuse (413, naming ``since``) an export of more positions than the cap."""
    cap = settings.GEOSHARE["EXPORT_MAX_POINTS"]
    if count > cap:
        raise Refused(413, f"this export would hold {count:,} positions; at most {cap:,} "
                      "fit in one: ask for a shorter time (a later since, an earlier "
                      "until) or one member", "since")


def _export_slot(member_ids):
    """Take an export slot for ``member_ids`` (their ``release``), or refuse with 429."""
    release = limits.export_slots.take(member_ids)
    if release is None:
        raise Refused(429, "an export is already running for this member, or too many "
                      "in all; wait for it to finish",
                      headers={"Retry-After": str(limits.EXPORT_RETRY_AFTER_S)})
    return release


def _streamed(pieces, release, filename, content_type):
    """A download streamed from the sync iterator ``pieces`` (text or bytes).

    Under ASGI Django would read a sync iterator whole before sending it, so each
    piece is taken in the request's thread (database reads included) and handed on
    from an async iterator. ``release`` (the export slot) runs when the stream ends,
    fails, or its client goes away (Django then cancels the response), and at the
    latest when Django closes the response.
    """

    async def stream():
        taking = False
        try:
            while True:
                taking = True
                piece = await sync_to_async(next)(pieces, None)
                taking = False
                if piece is None:
                    break
                if piece:
                    yield piece.encode() if isinstance(piece, str) else piece
        finally:
            release()
            if not taking:
                # A piece still being taken in a thread when the client went away
                # cannot be closed from here; that thread lets it go when done.
                pieces.close()

    response = StreamingHttpResponse(stream(), content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response._resource_closers.append(release)
    return response


def _export(request, room_id):
    """Check an export (scope, range, cap) and take its slot: ``(scope, since, until,
    release)``."""
    now = timezone.now()
    caller, scope = _caller_scope(request, room_id, now)
    since, until = _range(request, now, default_since=scope.floor)
    since = max(since, scope.floor)
    _export_size(selectors.history_count(scope.member_ids, since=since, until=until,
                                         floor=scope.floor))
    return scope, since, until, _export_slot([caller.pk])


def _chunks(member, since, until, floor):
    """One member's positions in keyset chunks, read as they are asked for."""
    return selectors.history_chunks(member, since=since, until=until, floor=floor)


@api_view
def export_gpx(request, room_id):
    """``GET /r/<room_id>/export.gpx``: GPX 1.1, a track per member, complete, streamed.

    413 past ``GEOSHARE["EXPORT_MAX_POINTS"]`` positions; 429 with ``Retry-After`` while
    the caller's export slot (or the process's) is taken (docs/security.md).
    """
    scope, since, until, release = _export(request, room_id)
    pieces = exports.gpx_pieces(
        ((m.name, _chunks(m, since, until, scope.floor)) for m in scope.members),
        name=scope.room.name)
    return _streamed(pieces, release, _export_name(scope, since, until, "gpx"),
                     "application/gpx+xml")


@api_view
def export_geojson(request, room_id):
    """``GET /r/<room_id>/export.geojson``: a FeatureCollection, a track per member,
    streamed; the same cap and slots as :func:`export_gpx`."""
    scope, since, until, release = _export(request, room_id)
    pieces = exports.geojson_pieces(
        ((events.member_info(m), {}, _chunks(m, since, until, scope.floor))
         for m in scope.members),
        foreign={"since": exact_ms(since), "until": exact_ms(until)})
    return _streamed(pieces, release, _export_name(scope, since, until, "geojson"),
                     "application/geo+json")


# -- download my data ------------------------------------------------------------------

README = """geoshare: your data, as of {generated}

members.json        your membership of each room this browser is in: the room, your
                    display name, colour, role, when you joined, when you were last
                    seen and stopped sharing (UTC epoch milliseconds), whether a
                    device key is set, how many positions are kept; the places
                    you made, your arrivals at and departures from places (within
                    the room's retention) and your alert rules
positions.geojson   your positions, one track per room (RFC 7946, [longitude, latitude];
                    times, altitude, speed, heading, accuracy, battery, charging
                    per point)
positions.gpx       the same as GPX 1.1, one track per room

Only positions within each room's retention are kept; older ones are deleted.
"""


def _member_record(member, count, now):
    room = member.room
    return {
        "room": {"id": room.public_id, "name": room.name,
                 "retention_days": room.retention_days,
                 "history_visibility": room.history_visibility},
        "member": {"id": member.pk, "name": member.name, "color": member.color,
                   "role": member.role, "created": selectors.to_ms(member.created),
                   "last_seen": selectors.to_ms(member.last_seen),
                   "stopped_at": selectors.to_ms(member.stopped_at),
                   "share": member.share_state(),
                   "sharing_until": selectors.to_ms(member.sharing_until)},
        # Keys are stored only as hashes: a device's key cannot be given back.
        "devices": [{"name": d.name, "created": selectors.to_ms(d.created),
                     "last_seen": selectors.to_ms(d.last_seen),
                     "owntracks_secret_set": bool(d.secret)}
                    for d in member.devices.all()],
        "watch_links": [{"created": selectors.to_ms(w.created),
                         "expires": selectors.to_ms(w.expires_at),
                         "ends_with_share": w.bound_to_share, "revoked": w.revoked}
                        for w in member.watch_links.all()],
        "positions": count,
        **_own_places(member, now),
    }


def _own_places(member, now):
    """The member's places (those they made), place events and alert rules.

    Events are the member's own arrivals and departures, within the room's retention
    as the events API reads them (none where the member may see no history, none in a
    live-only room), oldest first.
    """
    try:
        floor = history_scope(member, only=member.pk, now=now).floor
    except Refused:
        floor = None
    events = [] if floor is None else list(
        PlaceEvent.objects.filter(member_id=member.pk, device_time__gte=floor,
                                  created__gte=floor)
        .select_related("place").order_by("device_time", "pk"))
    return {
        "places": [{**place.to_dict(), "created": selectors.to_ms(place.created),
                    "updated": selectors.to_ms(place.updated)}
                   for place in Place.objects.filter(created_by_id=member.pk)],
        "place_events": [{"place": event.place_id, "place_name": event.place.name,
                          "kind": event.kind, "ts": selectors.to_ms(event.device_time),
                          "recorded": selectors.to_ms(event.created)}
                         for event in events],
        "alert_rules": [rule.to_dict() for rule in
                        AlertRule.objects.filter(member_id=member.pk)],
    }


def _own_range(member, now):
    """``(since, until, floor)`` of the member's own retained positions, or ``None``
    when the room shows them none."""
    try:
        scope = history_scope(member, only=member.pk, now=now)
    except Refused:
        return None
    return scope.floor, now + _AHEAD, scope.floor


def _own_info(member):
    info = {"id": member.pk, "name": f"{member.name} in {member.room.name}",
            "color": member.color, "role": member.role}
    return info


class _Sink(io.RawIOBase):
    """Where a streamed zip is written: what was written since the last :meth:`take`."""

    def __init__(self):
        super().__init__()
        self._parts = []

    def writable(self):
        return True

    def write(self, data):
        self._parts.append(bytes(data))
        return len(data)

    def take(self):
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _my_data_pieces(own, records, now):
    """The zip of :func:`my_data`, piece by piece; ``own`` is ``[(member, range)]``."""
    sink = _Sink()
    generated = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", README.format(generated=generated))
        archive.writestr("members.json", orjson.dumps(
            {"generated": exact_ms(now), "members": records},
            option=orjson.OPT_INDENT_2))
        yield sink.take()
        present = [(m, r) for m, r in own if r is not None]
        with archive.open("positions.geojson", "w", force_zip64=True) as entry:
            for piece in exports.geojson_pieces(
                    (_own_info(m), {"room": m.room.public_id},
                     _chunks(m, *r)) for m, r in present):
                entry.write(piece)
                yield sink.take()
        with archive.open("positions.gpx", "w", force_zip64=True) as entry:
            for text in exports.gpx_pieces(
                    ((_own_info(m)["name"], _chunks(m, *r)) for m, r in present),
                    name="geoshare: my data"):
                entry.write(text.encode())
                yield sink.take()
    yield sink.take()


@require_GET
@never_cache
def my_data(request):
    """``GET /me/data.zip``: everything geoshare holds about this browser's members.

    One zip, streamed: ``members.json`` (a record per room: the membership, devices,
    watch links, the places the member made, their place events and alert rules),
    ``positions.geojson`` and
    ``positions.gpx`` (a track per room). Only the members bound to this browser
    session; 401 (JSON) when it holds none; the exports' cap (413) and slots (429,
    one per member of the session) apply.
    """
    pairs = selectors.rooms_for_session(request.session)
    if not pairs:
        return _refusal(Refused(401, "this browser is in no room", "session"))
    now = timezone.now()
    own = [(member, _own_range(member, now)) for _room, member in pairs]
    counts = [0 if r is None else selectors.history_count(
        [member.pk], since=r[0], until=r[1], floor=r[2]) for member, r in own]
    try:
        _export_size(sum(counts))
        release = _export_slot([member.pk for member, _ in own])
    except Refused as exc:
        return _refusal(exc)
    records = [_member_record(member, count, now) for (member, _), count in zip(own, counts)]
    stamp = now.astimezone(UTC).strftime("%Y%m%d-%H%M")
    return _streamed(_my_data_pieces(own, records, now), release,
                     f"geoshare-my-data-{stamp}.zip", "application/zip")
