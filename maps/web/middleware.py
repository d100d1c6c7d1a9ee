"""Security headers on every HTML page: a strict Content-Security-Policy and a
Permissions-Policy (docs/security.md).

The pages run no inline script or style: scripts and style sheets are static files,
and Leaflet positions its elements through ``element.style``, which a policy allows.
"""

import re
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.utils.deprecation import MiddlewareMixin

PERMISSIONS_POLICY = "geolocation=(self), camera=(), microphone=(), payment=(), usb=()"

# What a host in a policy source may hold; anything else could end the directive.
_HOST = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*")
# A leading Leaflet subdomain template, {s} (or any {name}), stands for any subdomain.
_TEMPLATE_LABEL = re.compile(r"^\{[a-z0-9_]+\}\.")


@lru_cache(maxsize=16)
def tile_source(tile_url):
    """Return the policy source of the tile server in ``tile_url``, or ``None``.

    ``tile_url`` is a Leaflet URL template (``GEOSHARE["TILE_URL"]``); the source is its
    ``scheme://host[:port]``, with a ``{s}.`` subdomain template turned into ``*.``:
    ``https://{s}.tile.example.com/{z}/{x}/{y}.png`` gives
    ``https://*.tile.example.com``. ``None`` when the tiles come from this site (a
    relative URL, covered by ``'self'``) or the host is nothing a policy can carry.
    """
    try:
        parts = urlsplit(tile_url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = _TEMPLATE_LABEL.sub("*.", parts.hostname)
    if not _HOST.fullmatch(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def content_security_policy(ws_origin, tile_url):
    """Return the Content-Security-Policy header value of a page.

    ``ws_origin`` is the site's own WebSocket origin (``wss://maps.example.org``) or
    ``None``; ``tile_url`` the tile URL template. Only this site's scripts, styles and
    fonts; images from this site, ``data:`` (Leaflet) and the tile server; sockets and
    fetches to this site only; no plugins, no ``<base>``, no framing, forms post here.
    """
    images = " ".join(filter(None, ["'self'", "data:", tile_source(tile_url)]))
    connect = " ".join(filter(None, ["'self'", ws_origin]))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src {connect}; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


def _ws_origin(request):
    """Return the WebSocket origin of the site the request came to, or ``None``."""
    try:
        host = request.get_host()
    except DisallowedHost:  # the 400 page for a bad Host still gets a policy
        return None
    # 'self' alone would do in current browsers (CSP Level 3 lets it match ws: and
    # wss: of the page's own host); older ones need the origin spelt out.
    return f"{'wss' if request.is_secure() else 'ws'}://{host}"


class SecurityHeadersMiddleware(MiddlewareMixin):
    """Add ``Content-Security-Policy`` and ``Permissions-Policy`` to HTML responses.

    A view that sets either header itself keeps its own.
    """

    def process_response(self, request, response):
        if response.get("Content-Type", "").startswith("text/html"):
            if "Content-Security-Policy" not in response:
                response["Content-Security-Policy"] = content_security_policy(
                    _ws_origin(request), settings.GEOSHARE["TILE_URL"]
                )
            response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
