""""Watch me" links: made and revoked from the map page, opened by anyone with the URL.

A member's links are JSON endpoints under ``/r/<room_id>/watch-links/`` (the browser
session of that member, CSRF-checked); ``/w/<token>/`` is the page a link opens: one
member's marker and nothing else of the room (docs/protocol.md, "Watch links").
"""

import orjson
from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from maps import services
from maps.access import address, identity, limits
from maps.domain import policy
from maps.models import WatchLink
from maps.storage import selectors
from maps.web.tiles import tile_attribution


def _my_member(request, room_id):
    room = selectors.room_by_public_id(room_id)
    if room is None:
        raise Http404("No such room")
    member = selectors.session_member(request.session, room)
    if member is None:
        raise Http404("No such room")
    return member


def _link_dict(link, url=None):
    # A bound link stops with the share: its end is the share's end when that comes
    # first (the panel says "until your share ends" and shows that time).
    ends = [link.expires_at]
    if link.bound_to_share:
        ends.append(link.member.sharing_until)
    known = [end for end in ends if end is not None]
    data = {
        "id": link.pk,
        "created": selectors.to_ms(link.created),
        "expires": selectors.to_ms(min(known) if known else None),
        "ends_with_share": link.bound_to_share,
        "usable": link.is_usable(),
    }
    if url is not None:
        data["url"] = url
    return data


def watch_url(request, token):
    """Return the absolute URL of the watch page of ``token``."""
    return request.build_absolute_uri(f"/w/{token}/")


@never_cache
@require_http_methods(["GET", "POST"])
def watch_links(request, room_id):
    """List the member's watch links (GET) or make one (POST ``{"minutes"}``).

    POST answers 201 ``{"id", "url", "expires", ...}``, the URL shown this once;
    ``minutes`` is 15 to 10,080, or null for "until my share ends". 400 names the field
    for a bad value, 403 for a viewer.
    """
    member = _my_member(request, room_id)
    if request.method == "GET":
        links = member.watch_links.filter(revoked=False).order_by("-created")
        return JsonResponse({"links": [_link_dict(link) for link in links
                                       if link.is_usable()]})
    if not policy.may_publish(member):
        return JsonResponse({"error": "viewers do not share a position"}, status=403)
    try:
        body = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        return JsonResponse({"error": "the body is not JSON", "field": "body"}, status=400)
    minutes = body.get("minutes") if type(body) is dict else None
    if minutes is not None and type(minutes) is not int:
        return JsonResponse({"error": "minutes must be a whole number or null",
                             "field": "minutes"}, status=400)
    try:
        link, token = services.watch_link_create(member=member, minutes=minutes)
    except ValueError as exc:
        return JsonResponse({"error": str(exc), "field": "minutes"}, status=400)
    return JsonResponse(_link_dict(link, watch_url(request, token)), status=201)


@require_POST
def watch_link_revoke(request, room_id, link_id):
    """Revoke one of the member's watch links; whoever watches is closed out."""
    member = _my_member(request, room_id)
    link = WatchLink.objects.filter(pk=link_id, member=member).first()
    if link is None:
        raise Http404("No such link")
    services.watch_link_revoke(link=link)
    return JsonResponse({"id": link.pk, "revoked": True})


@never_cache
def watch_page(request, token):
    """The page a watch link opens: one member's live marker, no account needed.

    A token of no usable link answers 404, and counts against the address like a wrong
    invite or sign-in token does (``RATE_LIMITS["redeem"]``): past the limit, 429.
    """
    link = identity.watch_link(token)
    if link is None:
        if not limits.limit_hit("redeem", address.client_address(request)):
            return render(request, "maps/too_many.html", status=429)
        return render(request, "maps/watch_gone.html", status=404)
    config = {
        "socketPath": f"/ws/watch/{token}/",
        "tileUrl": settings.GEOSHARE["TILE_URL"],
        "tileAttribution": tile_attribution(),
        "color": link.member.color,
    }
    return render(request, "maps/watch.html", {"config": config})
