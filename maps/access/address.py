"""The client's address, with forwarded headers believed only from trusted proxies."""

import functools
import ipaddress

from django.conf import settings


def geoshare_setting(name):
    """Return ``settings.GEOSHARE[name]``, read at call time so tests can override it."""
    return settings.GEOSHARE[name]


@functools.lru_cache(maxsize=8)
def _networks(proxies):
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(address, networks):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(scope_or_request):
    """Return the client's IP address (text) from an ASGI scope or a Django request.

    The direct peer, unless it is one of ``GEOSHARE["TRUSTED_PROXIES"]`` (addresses or
    CIDR networks): then the rightmost ``X-Forwarded-For`` entry that is not a trusted
    proxy, which is the address the first trusted proxy saw. Entries further left are
    the client's own words and are never believed. Run uvicorn with
    ``--no-proxy-headers`` (geoshare.serving does), or it rewrites the peer from
    ``X-Forwarded-For`` itself before geoshare sees it.
    """
    if isinstance(scope_or_request, dict):
        client = scope_or_request.get("client") or ("unknown", 0)
        peer = str(client[0])
        forwarded = b",".join(
            value for name, value in scope_or_request.get("headers", ())
            if name == b"x-forwarded-for"
        ).decode("latin-1")
    else:
        peer = scope_or_request.META.get("REMOTE_ADDR", "unknown")
        forwarded = scope_or_request.META.get("HTTP_X_FORWARDED_FOR", "")
    proxies = tuple(geoshare_setting("TRUSTED_PROXIES"))
    if not proxies or not forwarded:
        return peer
    networks = _networks(proxies)
    if not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            # A trusted proxy wrote something that is not an address: believe nothing.
            return peer
        if not _trusted(hop, networks):
            return hop
    return hops[0]
