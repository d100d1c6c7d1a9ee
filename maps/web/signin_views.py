"""Open on another device: one-time links that sign another browser in as the member.

``/r/<room>/other-device/`` makes (POST ``action=create``), lists and revokes (POST
``action=revoke``, ``link``) the member's links; the link ``/signin/<token>/`` asks
first (GET, so that a chat app's link preview cannot use it up) and signs in on POST:
the member is bound to that browser's session, as joining by invite does.
"""

from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from maps import services
from maps.access import address, limits
from maps.models import SignInLink, hash_key
from maps.storage import selectors
from maps.web import error_views
from maps.web.phone_views import qr_svg
from maps.web.views import _posted_id, _remember, _room_and_member

GONE = (_("This sign-in link no longer works"),
        _("A sign-in link works once, for a few minutes. Open “Open on another device” on "
          "the map where you are signed in, and make a new one."))


@never_cache  # the page shows a fresh sign-in link once
@require_http_methods(["GET", "POST"])
def other_device(request, room_id):
    """Make, list and revoke the member's one-time sign-in links."""
    room, member = _room_and_member(request, room_id)
    if room is None:
        return error_views.not_found(request, "room")
    if member is None:
        return render(request, "maps/not_member.html", {"room": room}, status=403)
    new_url = qr = error = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            try:
                _link, token = services.signin_link_create(member=member)
            except ValueError as exc:
                error = str(exc)
            else:
                new_url = request.build_absolute_uri(f"/signin/{token}/")
                qr = qr_svg(new_url, "QR code of the sign-in link")
        elif action == "revoke":
            pk = _posted_id(request, "link")
            link = member.signin_links.filter(pk=pk).first() if pk else None
            if link is not None:
                services.signin_link_revoke(link=link)
            return redirect("other_device", room_id=room_id)
    now = timezone.now()
    links = [{"link": link, "usable": link.is_usable(now)}
             for link in member.signin_links.order_by("-created")[:20]]
    return render(request, "maps/other_device.html", {
        "room": room, "member": member, "new_url": new_url, "qr": qr, "error": error,
        "links": links, "minutes": services.SIGNIN_MINUTES,
    })


@never_cache
@require_http_methods(["GET", "POST"])
def signin(request, token):
    """Ask, then sign this browser in as the link's member (once)."""
    link = (SignInLink.objects.select_related("member__room")
            .filter(token_hash=hash_key(token)).first())
    if link is None or not link.is_usable():
        # Guessing tokens counts against the address like redeeming invites does.
        if not limits.limit_hit("redeem", address.client_address(request)):
            return render(request, "maps/too_many.html", status=429)
        return error_views.error_page(request, 404, *GONE)
    if request.method == "POST":
        if not limits.limit_hit("redeem", address.client_address(request)):
            return render(request, "maps/too_many.html", status=429)
        try:
            member = services.signin_link_redeem(token=token)
        except services.SignInUnusable:
            return error_views.error_page(request, 404, *GONE)
        _remember(request, member)
        return redirect("room_map", room_id=member.room.public_id)
    already = selectors.session_member(request.session, link.member.room)
    return render(request, "maps/signin.html", {"link": link, "member": link.member,
                                                "room": link.member.room,
                                                "already": already})
