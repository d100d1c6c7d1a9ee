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
app's format), builds a :class:`DoorRequest` (a plain object of the attributes the
doors read of Django's request, built from the scope: the body already read, the query
string a plain ``dict``), calls the view, and sends its response. What the
middleware did that still applies is done here:

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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest, get_script_prefix
from django.core.signals import setting_changed
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver, set_script_prefix
from django.utils.http import parse_header_parameters

from maps.ingest.common import form_params

log = logging.getLogger("django.request")

# ASGI's callables, as asgiref's own handler types them.
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

# The paths this front serves; everything else goes to Django.
PREFIXES = ("/ingest/", "/hauk/api/")
# The most body bytes kept: the largest door's limit (Overland's 1,000 points) plus
# one, so that the door sees the body is too large and refuses it in its own format.
MAX_BODY = 1024 * 1000 + 1


def serves(scope: dict) -> bool:
    """Return whether ``scope`` (an ASGI HTTP scope) has a phone door's path prefix
    (:data:`PREFIXES`); the path may still resolve to something else."""
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


_RESOLVED: dict = {}  # (resolver, path) -> ResolverMatch, for paths without arguments


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
_META_NAMES: dict[bytes, str] = {}
MAX_META_NAMES = 1000
# Content-Type value -> its media type as Django parses it.
_CONTENT_TYPES: dict[str, str] = {}
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


class DoorRequest:
    """A phone door's request: what the doors read of Django's ``HttpRequest``, built from
    the ASGI scope and nothing more.

    The doors (:func:`maps.access.doors.ingest_door`, :mod:`maps.ingest.views`) are also
    served by Django's own handler (``GEOSHARE_INGEST_FRONT=0``), so they use only
    attributes both requests have, under the same names. This object promises these,
    each equal to what Django's ``ASGIRequest`` (Django 5.2,
    ``django/core/handlers/asgi.py``) gives for the same scope (tests/test_ingest_front.py
    holds them against it):

    - ``scope`` (the ASGI scope), ``method`` (upper case), ``path``, ``path_info`` and
      ``script_name`` (text);
    - ``META``: ``dict`` of text, as Django builds it: ``REQUEST_METHOD``,
      ``QUERY_STRING``, ``SCRIPT_NAME``, ``PATH_INFO``, ``REMOTE_ADDR``/``HOST``/``PORT``
      from the client, ``SERVER_NAME``/``PORT`` from the server (``"unknown"``, ``"0"``
      without one), ``CONTENT_TYPE``, ``CONTENT_LENGTH`` and an ``HTTP_*`` key per other
      header (repeated ones joined with commas, names with ``_`` left out against
      spoofing). The doors read ``REMOTE_ADDR``, ``HTTP_X_FORWARDED_FOR``,
      ``CONTENT_LENGTH`` and ``HTTP_AUTHORIZATION``;
    - ``content_type``: the media type of ``Content-Type`` without parameters, as
      Django parses it (``""`` without one);
    - ``body``: the bytes the front read (at most :data:`MAX_BODY`);
    - ``GET``: the query string as a plain ``dict`` of text, parsed on first use by
      :func:`maps.ingest.common.form_params` (the last of a repeated name wins, as
      ``QueryDict.get`` answers; more than 1,000 parameters raise
      :class:`maps.domain.fixes.InvalidFix`, which the doors answer 400). The doors use
      ``get``, ``items`` and its truth, which ``QueryDict`` has too;
    - ``scheme`` and ``is_secure()``: ``SECURE_PROXY_SSL_HEADER``'s header when the
      setting names one and the request carries it, else the scope's scheme;
    - ``get_host()``, ``get_full_path()``, ``build_absolute_uri(location)``: answered by
      Django's own request (:meth:`django_request`), built the first time one is asked
      (the front keeps ``get_host``'s answer per host; Hauk's answers carry a link);
    - ``resolver_match``: Django's ``ResolverMatch`` of the path, set by the front.

    Anything else (``POST``, ``COOKIES``, ``headers``, ``session``, ``user``, reading the
    body as a stream) raises ``AttributeError``: the doors use none of it. Django's
    ``QueryDict`` builds a list per parameter and checks mutability on every insert, and
    ``ASGIRequest`` a ``defaultdict`` of lists of the headers, a ``BytesIO`` and the
    parsed ``Content-Type`` per request; this object keeps the header names' ``META``
    keys and the parsed ``Content-Type`` from one request to the next
    (docs/benchmarks.md, "DoorRequest: a plain object").

    Raises ``UnicodeDecodeError`` for a query string that is not UTF-8, as
    ``ASGIRequest`` does (Django's handler answers it 400, and so does the front).
    """

    __slots__ = ("scope", "method", "path", "path_info", "script_name", "META",
                 "content_type", "body", "resolver_match", "_get", "_django")
    META: dict[str, Any]
    _get: dict[str, str] | None
    _django: ASGIRequest | None

    def __init__(self, scope: dict, body: bytes) -> None:
        self.scope = scope
        self.body = body
        self.resolver_match = None
        self._get = None
        self._django = None
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
        self.content_type = _media_type(meta.get("CONTENT_TYPE", ""))

    @property
    def GET(self) -> dict[str, str]:  # noqa: N802 (Django's name)
        """The query string's parameters (see the class); raises ``InvalidFix``."""
        params = self._get
        if params is None:
            params = self._get = form_params(self.META["QUERY_STRING"], "query")
        return params

    @property
    def scheme(self) -> str:
        """``"https"`` or ``"http"``, as ``HttpRequest.scheme`` answers."""
        header = settings.SECURE_PROXY_SSL_HEADER
        if header:
            if len(header) != 2:
                # Django's ImproperlyConfigured, raised by its own request.
                return self.django_request().scheme or "http"
            value = self.META.get(header[0])
            if value is not None:
                return "https" if value.split(",", 1)[0].strip() == header[1] else "http"
        return self.scope.get("scheme") or "http"

    def is_secure(self) -> bool:
        """Whether the request came over HTTPS (:attr:`scheme`)."""
        return self.scheme == "https"

    def get_host(self) -> str:
        """Django's ``get_host``: the host checked against ``ALLOWED_HOSTS``; raises
        ``DisallowedHost``."""
        return self.django_request().get_host()

    def get_full_path(self) -> str:
        """Django's ``get_full_path``: the path and query string, as a URI."""
        return self.django_request().get_full_path()

    def build_absolute_uri(self, location: str | None = None) -> str:
        """Django's ``build_absolute_uri`` of ``location`` (a path or URL) for this
        request's scheme and host; raises ``DisallowedHost``."""
        return self.django_request().build_absolute_uri(location)

    def django_request(self) -> ASGIRequest:
        """Return Django's own ``ASGIRequest`` of this request (built once, on first
        use), with the same body and ``resolver_match``: for what the doors ask rarely,
        and for a log record's ``request``."""
        request = self._django
        if request is None:
            request = self._django = ASGIRequest(self.scope, io.BytesIO(self.body))
            request.resolver_match = self.resolver_match
        return request


def _media_type(value: str) -> str:
    """Return the media type of a ``Content-Type`` value as Django parses it
    (``parse_header_parameters``, lower case, no parameters); kept per value."""
    known = _CONTENT_TYPES.get(value)
    if known is None:
        known = parse_header_parameters(value)[0]
        if len(_CONTENT_TYPES) < MAX_CONTENT_TYPES:
            _CONTENT_TYPES[value] = known
    return known


class _Secure:
    """What ``SecurityMiddleware.process_response`` asks of a request."""

    def __init__(self, secure):
        self.secure = secure

    def is_secure(self):
        return self.secure


class IngestFront:
    """The ASGI app of the phone doors; ``fallback`` (an ASGI app, Django's) serves
    what does not resolve to a view marked ``ingest_door``."""

    def __init__(self, fallback: ASGIApp) -> None:
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
        # The scheme too: without a Host header, get_host adds a port that is not the
        # scheme's default.
        key = (meta.get("HTTP_X_FORWARDED_HOST"), meta.get("HTTP_X_FORWARDED_PORT"),
               meta.get("HTTP_HOST"), meta.get("SERVER_NAME"), meta.get("SERVER_PORT"),
               request.scheme)
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

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (ASGI 3): the door's answer, with ``Content-Length``
        and SecurityMiddleware's headers; 400 for a host not in ``ALLOWED_HOSTS`` or a
        query string that is not UTF-8, 301 to HTTPS when ``SECURE_SSL_REDIRECT`` says
        so, 500 (logged on ``django.request``) for a crash in the view. A client that
        hangs up before its body is read gets nothing."""
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
        try:
            request = DoorRequest(scope, body)
        except UnicodeDecodeError:
            # Django's handler answers 400 too ("Bad Request (UnicodeDecodeError)").
            log.warning("Bad Request (UnicodeDecodeError): %s", scope["path"],
                        extra={"status_code": 400})
            response = _plain(400, {"error": "the query string is not UTF-8",
                                    "field": "query"})
            return await self._send(response, self._headers[False], send)
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
            # Django's own request, as the handler would log it (an AdminEmailHandler
            # reads its POST, COOKIES, user).
            log.exception("Internal Server Error: %s", request.path,
                          extra={"status_code": 500, "request": request.django_request()})
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


def front(django_app: ASGIApp) -> ASGIApp:
    """Wrap Django's ASGI app: phone doors are served by :class:`IngestFront`.

    Set ``GEOSHARE_INGEST_FRONT=0`` to send them through Django's handler and its full
    middleware (slower; for comparing, docs/benchmarks.md).
    """
    if not settings.GEOSHARE.get("INGEST_FRONT", True):
        return django_app
    ingest = IngestFront(django_app)

    async def app(scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and serves(scope):
            return await ingest(scope, receive, send)
        return await django_app(scope, receive, send)

    return app
