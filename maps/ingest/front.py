"""The phone doors' own ASGI front: ``/ingest/`` and ``/hauk/api/`` without Django's
request handler.

Phones post one position per request, thousands a second. Django's ASGI handler gives
each request its own thread-sensitive executor (a new thread), sends
``request_started`` and ``request_finished`` through it, and runs every synchronous
middleware's hooks in it; in ``make bench`` that, not the door, was most of the cost
of a phone's request (docs/benchmarks.md). The doors need none of it: they are async
views that read no session, no user, no CSRF token and no language.

This front resolves the path with Django's own URL resolver, reads the body (at most
:data:`MAX_BODY` bytes are kept: the doors refuse larger ones themselves, 413, in their
app's format), builds Django's ``ASGIRequest``, calls the view, and sends its response.
What the middleware did that still applies is done here:

- ``ALLOWED_HOSTS``: a request for another host is refused (400), as
  ``CommonMiddleware`` does;
- ``SecurityMiddleware``: the redirect to HTTPS (``SECURE_SSL_REDIRECT``) and its
  response headers (HSTS, ``nosniff``, referrer and opener policies), by calling the
  middleware's own hooks;
- ``Content-Length`` on every answer, as ``CommonMiddleware`` sets it;
- an exception in a view is logged on ``django.request`` and answered 500 with the
  JSON error the doors use.

Everything else (the door check, the limits, the durable publish) is the views' own,
unchanged: :func:`maps.auth.ingest_door`.
"""

import io
import logging

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.core.signals import setting_changed
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver, set_script_prefix

log = logging.getLogger("django.request")

# The paths this front serves; everything else goes to Django.
PREFIXES = ("/ingest/", "/hauk/api/")
# The most body bytes kept: the largest door's limit (Overland's 1,000 points) plus
# one, so that the door sees the body is too large and refuses it in its own format.
MAX_BODY = 1024 * 1000 + 1


def serves(scope):
    """Return whether ``scope`` (an ASGI HTTP scope) is for a phone door."""
    return scope["path"].startswith(PREFIXES)


async def _read_body(receive):
    """Return the request body, at most :data:`MAX_BODY` bytes, or ``None`` when the
    client went away first."""
    chunks = []
    size = 0
    while size < MAX_BODY:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk[: MAX_BODY - size])
        size += len(chunks[-1])
        if not message.get("more_body", False):
            break
    # Past MAX_BODY the rest is not read: the door refuses the request (413), and the
    # server closes the connection rather than read what was left.
    return b"".join(chunks)


_RESOLVED = {}  # (resolver, path) -> ResolverMatch, for paths without arguments


def _resolve(resolver, path):
    """Return Django's ``ResolverMatch`` of ``path``, or ``None``.

    The doors' fixed paths are remembered; a path with arguments (GPSLogger's carries
    the device key) is resolved each time and never kept.
    """
    found = _RESOLVED.get((resolver, path))
    if found is not None:
        return found
    try:
        match = resolver.resolve(path)
    except Resolver404:
        return None
    if not match.args and not match.kwargs and len(_RESOLVED) < 64:
        _RESOLVED[(resolver, path)] = match
    return match


def _plain(status, data):
    """Return a minimal JSON :class:`~django.http.HttpResponse`."""
    from django.http import HttpResponse

    return HttpResponse(orjson.dumps(data), status=status,
                        content_type="application/json")


class IngestFront:
    """The ASGI app of the phone doors; ``fallback`` serves what it does not resolve."""

    def __init__(self, fallback):
        self.fallback = fallback
        self.security = SecurityMiddleware(lambda request: None)
        # SecurityMiddleware reads its settings once; so does this front, again when
        # a test changes them.
        setting_changed.connect(self._settings_changed, weak=False)

    def _settings_changed(self, setting, **kwargs):
        if setting.startswith("SECURE_"):
            self.security = SecurityMiddleware(lambda request: None)

    async def __call__(self, scope, receive, send):
        match = _resolve(get_resolver(), scope["path"])
        if match is None or not getattr(match.func, "ingest_door", False):
            return await self.fallback(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return
        set_script_prefix(scope.get("root_path", "") or "/")
        request = ASGIRequest(scope, io.BytesIO(body))
        request.resolver_match = match
        response = await self._respond(request, match)
        await self._send(response, send)

    async def _respond(self, request, match):
        try:
            request.get_host()
        except DisallowedHost:
            return _plain(400, {"error": "this host is not served here"})
        redirect = self.security.process_request(request)
        if redirect is not None:
            return self.security.process_response(request, redirect)
        try:
            response = await match.func(request, *match.args, **match.kwargs)
        except Exception:
            log.exception("Internal Server Error: %s", request.path,
                          extra={"status_code": 500, "request": request})
            response = _plain(500, {"error": "internal error; try again later"})
        return self.security.process_response(request, response)

    @staticmethod
    async def _send(response, send):
        content = response.content
        headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in response.items()]
        if not response.has_header("Content-Length"):
            headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": headers})
        await send({"type": "http.response.body", "body": content})


def front(django_app):
    """Wrap Django's ASGI app: phone doors are served by :class:`IngestFront`.

    Set ``GEOSHARE_INGEST_FRONT=0`` to send them through Django's handler and its full
    middleware (slower; for comparing, docs/benchmarks.md).
    """
    if not settings.GEOSHARE.get("INGEST_FRONT", True):
        return django_app
    ingest = IngestFront(django_app)

    async def app(scope, receive, send):
        if scope["type"] == "http" and serves(scope):
            return await ingest(scope, receive, send)
        return await django_app(scope, receive, send)

    return app
