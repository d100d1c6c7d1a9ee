"""The "Connect a phone" page: a member's devices, and how to set up each phone app.

A member connects any number of devices (phone, tablet, car tracker), each with its own
name and key (:class:`maps.models.Device`). Only a key's hash is stored, so a key is
shown once: when its device is added, or when it gets a new key. Then the page shows,
for each app, the values to enter with a copy button each, and a QR code where the app
can be configured by one (OwnTracks' ``owntracks:///config?inline=``, Traccar Client's
settings scanner, Overland's ``overland://setup``). Each device shows when it last
reported, which is how a person checks that the setup worked. How each app is set up,
and why, is in docs/phones.md.
"""

import base64
from urllib.parse import quote, urlencode

import orjson
import segno
from django.http import HttpResponseBadRequest
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from maps import services
from maps.access import address, limits
from maps.domain import policy
from maps.models import SECRET_MAX_BYTES, Device, SetupLink, hash_key, key_groups
from maps.storage import selectors
from maps.web import error_views

# Placeholders the apps replace before each request (docs/phones.md has the sources).
# OsmAnd's {5} is m/s and {3} metres (LiveSender.getLiveUrl): geoshare's own names,
# not Traccar's speed (knots) and hdop. {11} is the battery in %.
OSMAND_PLACEHOLDERS = (
    "lat={0}&lon={1}&timestamp={2}&accuracy={3}&altitude={4}&speed_mps={5}"
    "&bearing={6}&batt={11}"
)
GPSLOGGER_PLACEHOLDERS = (
    "lat=%LAT&lon=%LON&acc=%ACC&alt=%ALT&spd=%SPD&dir=%DIR&batt=%BATT"
    "&charging=%ISCHARGING&timestamp=%TIMESTAMP"
)
# OwnTracks' ConnectionMode.HTTP (owntracks/android preferences/types/ConnectionMode.kt).
OWNTRACKS_MODE_HTTP = 3


def qr_svg(text, title):
    """Return an inline SVG QR code of ``text`` (segno, error correction M)."""
    code = segno.make(text, error="m", micro=False)
    return mark_safe(code.svg_inline(scale=4, border=2, title=title))


def owntracks_config_link(url, secret=""):
    """Return the ``owntracks:///config?inline=...`` link that sets the app up.

    The OwnTracks app (``LoadViewModel.extractPreferencesFromUri`` in owntracks/android)
    URL-decodes ``inline``, base64-decodes it and imports the JSON as a
    ``configuration`` message; ``mode`` 3 is HTTP. The base64 is percent-encoded
    whole, since the app's URL decoding would turn a ``+`` into a space.
    """
    config = {"_type": "configuration", "mode": OWNTRACKS_MODE_HTTP, "url": url,
              "encryptionKey": secret}
    inline = base64.b64encode(orjson.dumps(config)).decode("ascii")
    return f"owntracks:///config?inline={quote(inline, safe='')}"


def overland_setup_link(endpoint, key, device_name):
    """Return Overland's ``overland://setup?url=...&token=...&device_id=...`` link.

    Source: "Configuration by Custom URL" in aaronpk/Overland-iOS's README.
    """
    return "overland://setup?" + urlencode(
        {"url": endpoint, "token": key, "device_id": device_name}, quote_via=quote)


def phone_apps(base_url, key, device_name="Phone", secret=""):
    """Return, per app, what to enter in it, its QR code (if any) and plain steps.

    ``base_url`` is the site's absolute root without the trailing slash, ``key`` the
    device's key in clear. Shape: a list of dicts with ``id``, ``name``, ``fields``
    (``(label, value)`` pairs, each shown with a copy button), ``qr`` (``None``, or
    ``{"text", "label"}``: what the QR code holds and what scanning it does),
    ``steps`` and ``check`` (how to see that it works).
    """
    owntracks_url = f"{base_url}/ingest/owntracks/?{urlencode({'key': key})}"
    traccar_url = f"{base_url}/ingest/osmand/"
    osmand_url = f"{traccar_url}?{urlencode({'id': key})}&{OSMAND_PLACEHOLDERS}"
    gpslogger_url = f"{base_url}/ingest/gpslogger/{key}/?{GPSLOGGER_PLACEHOLDERS}"
    overland_url = f"{base_url}/ingest/overland/"
    check = _("Walk a few steps or tap the app's send button, then reload this page: "
              "“%(device)s” shows the time of its last report.") % {"device": device_name}
    return [
        {
            "id": "owntracks",
            "name": "OwnTracks (Android, iPhone)",
            "fields": [("URL", owntracks_url)] + (
                [(_("Encryption key"), secret)] if secret else []),
            "qr": {"text": owntracks_config_link(owntracks_url, secret),
                   "label": _("Scan with the phone's camera: OwnTracks opens and sets "
                              "itself up.")},
            "steps": [
                _("On Android, first allow it: in OwnTracks open Preferences, then Remote "
                  "Control, and switch on “Allow external configuration”."),
                _("Scan the QR code with the phone's camera and accept the import. "
                  "Or by hand: Preferences, Connection, Mode: choose HTTP; paste the URL "
                  "above into URL (Host on iPhone); leave user name and password empty."),
                _("Leave the encryption key empty, unless you set a secret for this device "
                  "below (Preferences, Advanced, Encryption key)."),
                _("The others in this room who share appear under Friends."),
            ],
            "check": check,
        },
        {
            "id": "traccar",
            "name": "Traccar Client (Android, iPhone)",
            "fields": [(_("Server URL"), traccar_url), (_("Device identifier"), key)],
            "qr": {"text": f"{traccar_url}?{urlencode({'id': key})}",
                   "label": _("Scan it from Traccar Client's settings (the QR icon at the "
                              "top): it fills in the server URL and the identifier.")},
            "steps": [
                _("Open Settings and tap the QR icon at the top, then scan the code. "
                  "Or type the server URL and replace the device identifier with the key."),
                _("Turn on Tracking on the main screen."),
            ],
            "check": check,
        },
        {
            "id": "osmand",
            "name": "OsmAnd (Android, iPhone)",
            "fields": [(_("Web address"), osmand_url)],
            "qr": None,
            "steps": [
                _("On the phone, open this setup (scan the one-time QR code at the top "
                  "with the phone's camera) and copy the web address."),
                _("Menu, Plugins: switch on Trip recording. In its settings, open Online "
                  "tracking and paste the address into Web address. OsmAnd fills in the "
                  "parts in curly brackets itself: leave them as they are."),
                _("Switch on Online tracking and start a trip recording."),
            ],
            "check": check,
        },
        {
            "id": "gpslogger",
            "name": "GPSLogger (Android)",
            "fields": [("URL", gpslogger_url)],
            "qr": None,
            "steps": [
                _("On the phone, open this setup (scan the one-time QR code at the top "
                  "with the phone's camera) and copy the URL."),
                _("Menu, Logging details, Log to custom URL: switch it on and paste the "
                  "URL. GPSLogger fills in the words that start with % itself."),
                _("HTTP method: GET. Leave the HTTP body and headers empty. Then start "
                  "logging."),
            ],
            "check": check,
        },
        {
            "id": "hauk",
            "name": "Hauk (Android)",
            "fields": [(_("Server"), f"{base_url}/hauk/"), (_("Password"), key)],
            "qr": None,
            "steps": [
                _("On Hauk's start screen enter the server and the password above (the "
                  "password is this device's key). Leave the user name empty."),
                _("Pick how long to share and tap Start sharing. Leave “password "
                  "protect” (end-to-end encryption) off: geoshare must read the "
                  "position to show it. Group shares are not available here."),
                _("Tap Stop sharing when you are done: your marker goes from the map."),
            ],
            "check": check,
        },
        {
            "id": "overland",
            "name": "Overland (iPhone)",
            "fields": [(_("Receiver endpoint"), overland_url), (_("Access token"), key),
                       (_("Device ID"), device_name)],
            "qr": {"text": overland_setup_link(overland_url, key, device_name),
                   "label": _("Scan with the iPhone's camera: Overland opens and saves the "
                              "endpoint and token.")},
            "steps": [
                _("Scan the QR code with the camera and open it in Overland. Or in "
                  "Overland's settings tap Receiver Endpoint and enter the endpoint, the "
                  "access token and the device ID above."),
                _("Set Tracking to on, and Send Interval to a few seconds or minutes."),
            ],
            "check": check,
        },
    ]


def _with_qr(apps):
    for app in apps:
        if app["qr"] is not None:
            app["qr"]["svg"] = qr_svg(app["qr"]["text"],
                                      _("QR code for %(app)s") % {"app": app["name"]})
    return apps


def _device_of(member, raw_id):
    """Return the member's device with id ``raw_id``, or ``None`` for a malformed one."""
    try:
        pk = int(raw_id)
    except (TypeError, ValueError):
        return None
    return Device.objects.select_related("member").filter(member=member, pk=pk).first()


def _bad(field, detail):
    return HttpResponseBadRequest(f"{field}: {detail}", content_type="text/plain")


@never_cache
@require_http_methods(["GET", "POST"])
def connect_phone(request, room_id):
    """List the member's devices and set one up; POST acts on one.

    For the session's member of the room with the owner or member role; others get
    403 (a viewer cannot share, a stranger is not in the room). POST ``action``:
    ``add`` (``name``) makes a device and shows its key and setup once; ``rotate``
    (``device``) gives it a new key (the old one stops at once) and shows the setup;
    ``remove`` (``device``) ends its key; ``secret`` (``device``, ``secret``) sets its
    OwnTracks encryption secret. A malformed or foreign device id is a 400 naming
    ``device``.
    """
    room = selectors.room_by_public_id(room_id)
    if room is None:
        return error_views.not_found(request, "room")
    member = selectors.session_member(request.session, room)
    if member is None or not policy.may_publish(member):
        return render(request, "maps/not_member.html", {"room": room}, status=403)
    shown = key = apps = None
    notice = error = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "add":
            try:
                shown, key = services.device_create(member=member,
                                                    name=request.POST.get("name", ""))
            except ValueError as exc:  # an empty name, or too many devices
                error = str(exc) if str(exc) != "a name is required" else (
                    _("Give the device a name, such as “Phone” or “Car”."))
        elif action in ("rotate", "remove", "secret"):
            device = _device_of(member, request.POST.get("device"))
            if device is None:
                return _bad("device", "not a device of yours")
            if action == "rotate":
                shown, key = device, services.device_rotate_key(device=device)
            elif action == "remove":
                services.device_revoke(device=device)
                notice = _("“%(name)s” is removed: its key no longer works.") % {
                    "name": device.name}
            else:
                try:
                    services.device_set_secret(device=device,
                                               secret=request.POST.get("secret", ""))
                except ValueError as exc:
                    error = str(exc)
                else:
                    notice = (_("The OwnTracks encryption key of “%(name)s” is set: enter "
                                "the same one in OwnTracks (Preferences, Advanced, "
                                "Encryption key).") if device.secret
                              else _("The OwnTracks encryption key of “%(name)s” is "
                                     "cleared: clear it in OwnTracks too.")) % {
                                         "name": device.name}
        else:
            return _bad("action", "must be add, rotate, remove or secret")
    setup = None
    if key is not None:
        base_url = request.build_absolute_uri("/").rstrip("/")
        apps = _with_qr(phone_apps(base_url, key, shown.name, shown.secret))
        setup = _setup_link(request, shown, key)
    return render(request, "maps/connect.html", {
        "setup": setup,
        "room": room, "member": member, "devices": selectors.member_devices(member),
        "shown": shown, "key": key, "key_groups": key_groups(key) if key else None,
        "apps": apps, "notice": notice, "error": error,
        "max_devices": services.MAX_DEVICES_PER_MEMBER, "secret_max": SECRET_MAX_BYTES,
    })


def _setup_link(request, device, key):
    """Return ``{"url", "qr", "minutes"}`` of a new one-time link that opens ``device``'s
    setup on the phone, or ``{"error"}`` past the cap of links."""
    try:
        _link, token = services.setup_link_create(device=device, key=key)
    except ValueError as exc:
        return {"error": str(exc)}
    url = request.build_absolute_uri(f"/setup/{token}/")
    return {"url": url, "minutes": services.SETUP_MINUTES,
            "qr": qr_svg(url, _("QR code of the setup link"))}


SETUP_GONE = (_("This setup link no longer works"),
              _("A setup link works once, for a few minutes. On the device where you "
                "are signed in, open “Connect a phone” and choose “New key and setup”."))


@never_cache  # the page shows a device key once
@require_http_methods(["GET", "POST"])
def phone_setup(request, token):
    """``/setup/<token>/``: a one-time link that opens one device's setup on the phone.

    GET asks first (a chat app's link preview must not use it up); POST uses the link
    (:func:`maps.services.setup_link_redeem`) and shows the device's key and the apps'
    settings, as "Connect a phone" does. An unknown, used or expired token is the styled
    404, counted against the address like invites and sign-in links (429 past it).
    """
    link = (SetupLink.objects.select_related("device__member__room")
            .filter(token_hash=hash_key(token)).first())
    if link is None or not link.is_usable():
        if not limits.limit_hit("redeem", address.client_address(request)):
            return render(request, "maps/too_many.html", status=429)
        return error_views.error_page(request, 404, *SETUP_GONE)
    device = link.device
    if request.method == "POST":
        if not limits.limit_hit("redeem", address.client_address(request)):
            return render(request, "maps/too_many.html", status=429)
        try:
            device, key = services.setup_link_redeem(token=token)
        except services.SetupUnusable:
            return error_views.error_page(request, 404, *SETUP_GONE)
        base_url = request.build_absolute_uri("/").rstrip("/")
        return render(request, "maps/phone_setup.html", {
            "room": device.member.room, "member": device.member, "shown": device,
            "key": key, "key_groups": key_groups(key),
            "apps": _with_qr(phone_apps(base_url, key, device.name, device.secret)),
        })
    return render(request, "maps/phone_setup.html", {
        "room": device.member.room, "member": device.member, "shown": device,
        "ask": True})
