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
app's format), builds a :class:`DoorRequest` (Django's ``ASGIRequest`` with the body
already read and the query string as a plain ``dict``), calls the view, and sends its
response. What the middleware did that still applies is done here:

- ``ALLOWED_HOSTS``: a request for another host is refused (400), as
  ``CommonMiddleware`` does (Django's ``get_host``, its answer kept per host header
  until a setting changes);
- ``SecurityMiddleware``: the redirect to HTTPS (``SECURE_SSL_REDIRECT``) and its
  response headers (HSTS, ``nosniff``, referrer and opener policies), by calling the
  middleware's own hooks (the headers once per setting change, then added to each
  answer that does not set them itself, as the middleware's ``setdefault`` does);
- ``Content-Length`` on every answer, as ``CommonMiddleware`` sets it;
- an exception in a view is logged on ``django.request`` and answered 500 with the
  JSON error the doors use.

Everything else (the door check, the limits, the durable publish) is the views' own,
unchanged: :func:`maps.access.doors.ingest_door`.
"""

import io
import logging

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest, get_script_prefix
from django.core.signals import setting_changed
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver, set_script_prefix
from django.utils.functional import cached_property

from maps.ingest.common import form_params

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
    return HttpResponse(orjson.dumps(data), status=status,
                        content_type="application/json")


# Header name (bytes) -> its META key ("" for a name with "_", which Django leaves out),
# for the names seen first; past MAX_META_NAMES a name is translated each time.
_META_NAMES = {}
MAX_META_NAMES = 1000
# Content-Type value -> (content_type, content_params) as Django parses it.
_CONTENT_TYPES = {}
MAX_CONTENT_TYPES = 100


def _meta_name(name):
    """Return the ``META`` key of header ``name`` (bytes) as ``ASGIRequest`` makes it,
    or ``""`` for a name with an underscore (left out against spoofing)."""
    key = _META_NAMES.get(name)
    if key is not None:
        return key
    text = name.decode("latin1")
    if "_" in text:
        key = ""
    elif text == "content-length":
        key = "CONTENT_LENGTH"
    elif text == "content-type":
        key = "CONTENT_TYPE"
    else:
        key = "HTTP_" + text.upper().replace("-", "_")
    if len(_META_NAMES) < MAX_META_NAMES:
        _META_NAMES[name] = key
    return key


class DoorRequest(ASGIRequest):
    """Django's ``ASGIRequest`` of a phone door, with less work per request.

    The same attributes and ``META`` as ``ASGIRequest.__init__`` makes (Django 5.2,
    ``django/core/handlers/asgi.py``; tests/test_ingest_front.py holds them against
    it), with the header names' ``META`` keys and the parsed ``Content-Type`` kept
    from one request to the next. ``body`` is the bytes the front read (no stream to
    read again), and ``GET`` is a plain ``dict`` of the query string
    (:func:`maps.ingest.common.form_params`: the last of a repeated name wins, as
    ``QueryDict.get`` answers; more than 1,000 parameters raise
    :class:`maps.domain.fixes.InvalidFix`, which the door answers 400). Django's
    ``QueryDict`` builds a list per parameter and checks mutability on every insert:
    in ``make bench``'s phone ingest that was a twentieth of a request.
    """

    def __init__(self, scope, body):
        self.scope = scope
        self._post_parse_error = False
        self._read_started = False
        self.resolver_match = None
        path = self.path = scope["path"]
        script_name = self.script_name = get_script_prefix(scope)
        self.path_info = path.removeprefix(script_name) if script_name else path
        method = self.method = scope["method"].upper()
        query_string = scope.get("query_string", "")
        if isinstance(query_string, bytes):
            query_string = query_string.decode()
        meta = self.META = {
            "REQUEST_METHOD": method,
            "QUERY_STRING": query_string,
            "SCRIPT_NAME": script_name,
            "PATH_INFO": self.path_info,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
        }
        client = scope.get("client")
        if client:
            meta["REMOTE_ADDR"] = meta["REMOTE_HOST"] = client[0]
            meta["REMOTE_PORT"] = client[1]
        server = scope.get("server")
        if server:
            meta["SERVER_NAME"] = server[0]
            meta["SERVER_PORT"] = str(server[1])
        else:
            meta["SERVER_NAME"] = "unknown"
            meta["SERVER_PORT"] = "0"
        # Header keys (HTTP_*, CONTENT_*) are never one of the keys above.
        for name, value in scope.get("headers", ()):
            key = _meta_name(name)
            if not key:
                continue
            value = value.decode("latin1")
            # A repeated header: its values joined with commas, as Django does.
            meta[key] = meta[key] + "," + value if key in meta else value
        self._content_type(meta.get("CONTENT_TYPE", ""))
        self._stream = io.BytesIO(body)
        self._body = body

    def _content_type(self, value):
        known = _CONTENT_TYPES.get(value)
        if known is None:
            self._set_content_type_params({"CONTENT_TYPE": value})
            if "charset" in self.content_params:
                return  # encoding set (or not) by Django's own check, never kept
            known = (self.content_type, dict(self.content_params))
            if len(_CONTENT_TYPES) < MAX_CONTENT_TYPES:
                _CONTENT_TYPES[value] = known
            return
        self.content_type = known[0]
        self.content_params = dict(known[1])

    @cached_property
    def GET(self):  # noqa: N802 (Django's name)
        return form_params(self.META["QUERY_STRING"], "query")


class _Secure:
    """What ``SecurityMiddleware.process_response`` asks of a request."""

    def __init__(self, secure):
        self.secure = secure

    def is_secure(self):
        return self.secure


class IngestFront:
    """The ASGI app of the phone doors; ``fallback`` serves what it does not resolve."""

    def __init__(self, fallback):
        self.fallback = fallback
        self._settings_changed()
        # SecurityMiddleware reads its settings once; so does this front, again when
        # a test changes them.
        setting_changed.connect(self._settings_changed, weak=False)

    def _settings_changed(self, **kwargs):
        self.security = SecurityMiddleware(lambda request: None)
        # (X-Forwarded-Host and -Port, Host, server name and port) -> allowed: the answer
        # of Django's get_host, which splits and matches against ALLOWED_HOSTS.
        self._hosts = {}
        # secure? -> [(lower-case name, (name, value) as bytes)] the middleware adds.
        self._headers = {secure: self._security_headers(secure) for secure in (False, True)}

    def _security_headers(self, secure):
        added = self.security.process_response(_Secure(secure), HttpResponse())
        return [(name.lower(), (name.encode("latin-1"), value.encode("latin-1")))
                for name, value in added.items()
                if name.lower() != "content-type"]

    def _host_allowed(self, request):
        meta = request.META
        key = (meta.get("HTTP_X_FORWARDED_HOST"), meta.get("HTTP_X_FORWARDED_PORT"),
               meta.get("HTTP_HOST"), meta.get("SERVER_NAME"), meta.get("SERVER_PORT"))
        allowed = self._hosts.get(key)
        if allowed is None:
            try:
                request.get_host()
                allowed = True
            except DisallowedHost:
                allowed = False
            if len(self._hosts) < 256:
                self._hosts[key] = allowed
        return allowed

    async def __call__(self, scope, receive, send):
        match = _resolve(get_resolver(), scope["path"])
        if match is None or not getattr(match.func, "ingest_door", False):
            return await self.fallback(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return
        root = scope.get("root_path", "")
        if root:
            # Without one, the default ("/") is what every request's context has.
            set_script_prefix(root)
        request = DoorRequest(scope, body)
        request.resolver_match = match
        response = await self._respond(request, match)
        await self._send(response, self._headers[request.is_secure()], send)

    async def _respond(self, request, match):
        if not self._host_allowed(request):
            return _plain(400, {"error": "this host is not served here"})
        redirect = self.security.process_request(request)
        if redirect is not None:
            return redirect
        try:
            response = await match.func(request, *match.args, **match.kwargs)
        except Exception:
            log.exception("Internal Server Error: %s", request.path,
                          extra={"status_code": 500, "request": request})
            response = _plain(500, {"error": "internal error; try again later"})
        return response

    @staticmethod
    async def _send(response, security, send):
        content = response.content
        headers = []
        names = set()
        for name, value in response.items():
            names.add(name.lower())
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
        # SecurityMiddleware's headers, unless the response set its own (a set, not
        # has_header: its miss is a KeyError raised and caught, per header).
        for lower, header in security:
            if lower not in names:
                headers.append(header)
        if "content-length" not in names:
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
