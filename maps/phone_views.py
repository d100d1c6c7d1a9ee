"""The "Connect a phone" page: server URLs, settings and QR codes for each phone app.

Only the hash of a device key is stored, so the page cannot show the member's current
key: "Show a new key" (POST) gives the member a new one with
:func:`maps.services.member_rotate_key`, which ends the old one, and shows the settings
with it once. How each app is set up, and why, is in docs/phones.md.
"""

from urllib.parse import urlencode

import segno
from django.http import Http404
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from . import auth, selectors, services

# Placeholders the apps replace before each request (docs/phones.md has the sources).
# OsmAnd's {5} is m/s and {3} metres (LiveSender.getLiveUrl): geoshare's own names,
# not Traccar's speed (knots) and hdop. {11} is the battery in %.
OSMAND_PLACEHOLDERS = (
    "lat={0}&lon={1}&timestamp={2}&accuracy={3}&altitude={4}&speed_mps={5}"
    "&bearing={6}&batt={11}"
)
GPSLOGGER_PLACEHOLDERS = (
    "lat=%LAT&lon=%LON&acc=%ACC&alt=%ALT&spd=%SPD&dir=%DIR&batt=%BATT&timestamp=%TIMESTAMP"
)


def qr_svg(text):
    """Return an inline SVG QR code of ``text`` (segno, error correction M)."""
    code = segno.make(text, error="m", micro=False)
    return mark_safe(code.svg_inline(scale=4, border=2, title="QR code of the URL above"))


def phone_apps(base_url, key):
    """Return, per app, the URL to enter, its QR code and the other settings.

    ``base_url`` is the site's absolute root without the trailing slash, ``key`` the
    member's device key in clear. Shape: a list of dicts with ``id``, ``name``,
    ``url`` and ``url_label`` (where the app takes it), ``settings`` (the other
    settings, as label, value pairs) and ``steps``; :func:`_with_qr` adds ``qr``.
    """
    owntracks_url = f"{base_url}/ingest/owntracks/?{urlencode({'key': key})}"
    traccar_url = f"{base_url}/ingest/osmand/"
    osmand_url = f"{traccar_url}?{urlencode({'id': key})}&{OSMAND_PLACEHOLDERS}"
    gpslogger_url = f"{base_url}/ingest/gpslogger/{key}/?{GPSLOGGER_PLACEHOLDERS}"
    return [
        {
            "id": "owntracks",
            "name": "OwnTracks (Android, iOS)",
            "url": owntracks_url,
            "url_label": "URL (Preferences, Connection, Host)",
            "settings": [
                ("Mode", "HTTP"),
                ("User name and password", "leave empty: the key is in the URL"),
                ("Encryption key", "leave empty (geoshare cannot decrypt)"),
                ("Tracker ID", "any; the others see you under your name here"),
            ],
            "steps": [
                "Open Preferences, Connection, and choose the HTTP mode.",
                "Paste the URL (or scan the QR code) into the URL / Host field.",
                "Go back to the map and press the publish button once to test.",
                "The other members of the room who share appear under Friends.",
            ],
        },
        {
            "id": "traccar",
            "name": "Traccar Client (Android, iOS)",
            "url": traccar_url,
            "url_label": "Server URL",
            "settings": [
                ("Device identifier", key),
                ("Location accuracy", "high (or medium to save battery)"),
            ],
            "steps": [
                "Open Settings and enter the server URL (or scan the QR code).",
                "Replace the device identifier with the key above.",
                "Turn on Service status (Tracking).",
            ],
        },
        {
            "id": "osmand",
            "name": "OsmAnd (Android, iOS)",
            "url": osmand_url,
            "url_label": "Web address (Trip recording, Online tracking)",
            "settings": [
                ("Online tracking", "on"),
            ],
            "steps": [
                "Turn on the Trip recording plugin (Menu, Plugins).",
                "In its settings, paste the web address above into Online tracking.",
                "Start trip recording with Online tracking on.",
            ],
        },
        {
            "id": "gpslogger",
            "name": "GPSLogger (Android)",
            "url": gpslogger_url,
            "url_label": "URL (Logging details, Log to custom URL)",
            "settings": [
                ("Log to custom URL", "on"),
                ("HTTP method", "GET"),
                ("HTTP body and headers", "leave empty"),
            ],
            "steps": [
                "Open Logging details, Log to custom URL, and switch it on.",
                "Paste the URL above: GPSLogger fills in the %PLACEHOLDERS itself.",
                "Start logging.",
            ],
        },
    ]


def _with_qr(apps):
    for app in apps:
        app["qr"] = qr_svg(app["url"])
    return apps


@never_cache
@require_http_methods(["GET", "POST"])
def connect_phone(request, room_id):
    """Show how to point a phone app at the room; POST makes and shows a new key.

    For the session's member of the room with the owner or member role; others get
    403 (a viewer cannot share, a stranger is not in the room). A POST ends the
    member's previous device key.
    """
    room = selectors.room_by_public_id(room_id)
    if room is None:
        raise Http404("No such room")
    member = selectors.session_member(request.session, room)
    if member is None or not auth.may_publish(member):
        return render(request, "maps/not_member.html", {"room": room}, status=403)
    apps = key = None
    if request.method == "POST":
        key = services.member_rotate_key(member=member)
        base_url = request.build_absolute_uri("/").rstrip("/")
        apps = _with_qr(phone_apps(base_url, key))
    return render(request, "maps/connect.html",
                  {"room": room, "member": member, "apps": apps, "key": key})
