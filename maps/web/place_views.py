"""Places and their events over HTTP (docs/api.md, "Places").

Authenticated as the history API (:func:`maps.access.api_member`: browser session or
``Authorization: Bearer <device key>``). A browser session's writes need Django's CSRF
token (``X-CSRFToken``); a device key is not sent by browsers on their own, so Bearer
requests are exempt. Errors are JSON ``{"error", "field"}``.
"""

import orjson
from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from maps import services
from maps.access import doors
from maps.access.doors import Refused
from maps.access.scope import api_member, history_scope
from maps.models import AlertRule, Place, PlaceEvent
from maps.storage.selectors import to_ms
from maps.web.api_views import parse_time

EVENTS_PAGE = 1000
MAX_BODY_BYTES = 16 * 1024


def _json(data, status=200):
    return HttpResponse(orjson.dumps(data), status=status,
                        content_type="application/json")


def _csrf_refused(request):
    # Only browser sessions: a Bearer key is never sent by a browser on its own.
    if doors.bearer_key(request)[0]:
        return None
    return CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})


def _body(request):
    if len(request.body) > MAX_BODY_BYTES:
        raise Refused(413, f"a place is at most {MAX_BODY_BYTES} bytes", "body")
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise Refused(400, "send a JSON object", "body") from None


def _call(request, room_id, allowed, handler):
    if request.method not in allowed:
        return _json({"error": f"use {' or '.join(allowed)}"}, status=405)
    if request.method != "GET":
        refused = _csrf_refused(request)
        if refused is not None:
            return refused
    try:
        member = api_member(request, room_id)
        return handler(request, member)
    except Refused as exc:
        return doors.json_refusal(exc)
    except services.PlaceInvalid as exc:
        return _json({"error": str(exc), "field": exc.field}, status=400)
    except services.TooManyPlaces as exc:
        return _json({"error": str(exc), "field": "room"}, status=409)
    except services.NotAllowed as exc:
        return _json({"error": str(exc)}, status=403)


@csrf_exempt
@never_cache
def places(request, room_id):
    """``GET``: the room's places; ``POST`` ``{"name", "lat", "lon", "radius"}``: make one.

    Any member of the room may list; members and the owner (not viewers) make places,
    at most ``services.MAX_PLACES_PER_ROOM`` per room (409 past it). 201 with the place.
    """

    def handle(request, member):
        if request.method == "GET":
            found = Place.objects.filter(room_id=member.room_id)
            return _json({"places": [p.to_dict() for p in found]})
        values = services.place_values(_body(request))
        place = services.place_create(member=member, values=values)
        return _json(place.to_dict(), status=201)

    return _call(request, room_id, ("GET", "POST"), handle)


@csrf_exempt
@never_cache
def place(request, room_id, place_id):
    """``PATCH`` (some of ``name``, ``lat``, ``lon``, ``radius``) or ``DELETE`` a place:
    its maker or the room's owner only (403 otherwise)."""

    def handle(request, member):
        found = Place.objects.filter(room_id=member.room_id, pk=place_id).first()
        if found is None:
            raise Refused(404, "no such place", "place")
        if request.method == "DELETE":
            services.place_delete(member=member, place=found)
            return HttpResponse(status=204)
        values = services.place_values(_body(request), partial=True)
        services.place_update(member=member, place=found, values=values)
        return _json(found.to_dict())

    return _call(request, room_id, ("PATCH", "DELETE"), handle)


@csrf_exempt
@never_cache
def place_events(request, room_id):
    """``GET ?since=``: arrivals and departures in the room from device time ``since``
    (epoch ms or ISO 8601; default: all kept), oldest first, at most
    :data:`EVENTS_PAGE`; ``next`` is the ``since`` of the following page or null.

    The history's rule, read now (:func:`maps.access.scope.history_scope`): only the
    events of the members whose history the caller may see (everyone's, or only
    their own), 403 as the history API answers when they may see none (a viewer
    where history is for members), and nothing from before the room's retention
    floor by device time or by when it was stored (a live-only room lists none),
    whether or not the prune has run yet.
    """

    def handle(request, member):
        scope = history_scope(member)
        found = PlaceEvent.objects.filter(room_id=member.room_id,
                                          member_id__in=scope.member_ids,
                                          device_time__gte=scope.floor,
                                          created__gte=scope.floor)
        if "since" in request.GET:
            found = found.filter(device_time__gte=parse_time("since",
                                                             request.GET["since"]))
        rows = list(found.order_by("device_time", "pk")
                    .values("member_id", "place_id", "kind", "device_time")
                    [:EVENTS_PAGE + 1])
        more = len(rows) > EVENTS_PAGE
        rows = rows[:EVENTS_PAGE]
        items = [{"member": r["member_id"], "place": r["place_id"], "kind": r["kind"],
                  "ts": to_ms(r["device_time"])} for r in rows]
        return _json({"events": items, "next": items[-1]["ts"] if more else None})

    return _call(request, room_id, ("GET",), handle)


@csrf_exempt
@never_cache
def alerts(request, room_id):
    """``GET``: the caller's alert rules; ``PUT`` ``{"rules": [{"member", "place"}]}``:
    replace them (ids of the room's members and places, null meaning any). Only the
    caller's own rules are read or written; the map page filters the room's
    ``place_event`` frames by them."""

    def handle(request, member):
        if request.method == "PUT":
            body = _body(request)
            rules = services.alert_rules_set(
                member=member, rules=body.get("rules") if type(body) is dict else None)
            return _json({"rules": rules})
        found = AlertRule.objects.filter(member_id=member.pk)
        return _json({"rules": [rule.to_dict() for rule in found]})

    return _call(request, room_id, ("GET", "PUT"), handle)
