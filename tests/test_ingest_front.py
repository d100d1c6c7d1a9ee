"""The phone doors' own ASGI front (maps/ingest/front.py): the answers Django's handler
and middleware gave, without them. Driven through the project's ASGI application."""

import base64

import orjson
import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async

from geoshare.asgi import application
from maps.ingest import front, osmand
from maps.models import Position
from maps.storage.history import history_writer

pytestmark = pytest.mark.django_db(transaction=True)


async def call(path, *, method="GET", query=b"", body=b"", headers=(), host=b"testserver",
               scheme="http", chunks=None):
    """Send one HTTP request to the ASGI application; return ``(status, headers, body)``."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": scheme, "path": path, "raw_path": path.encode(),
        "query_string": query, "root_path": "",
        "headers": [(b"host", host), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    app = ApplicationCommunicator(application, scope)
    parts = chunks or [body]
    for i, part in enumerate(parts):
        await app.send_input({"type": "http.request", "body": part,
                              "more_body": i < len(parts) - 1})
    start = await app.receive_output(10)
    assert start["type"] == "http.response.start"
    content = b""
    while True:
        message = await app.receive_output(10)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await app.wait(10)
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, content


async def test_a_phone_position_goes_through_the_front_and_is_stored(member, member_key):
    status, headers, body = await call(
        "/ingest/osmand/", query=f"id={member_key}&lat=46.05&lon=14.5".encode())
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "0"
    assert headers["x-content-type-options"] == "nosniff"  # SecurityMiddleware's
    await history_writer().flush()
    stored = await database_sync_to_async(list)(
        Position.objects.filter(member=member).values_list("lat", "lon"))
    assert stored == [(46.05, 14.5)]


async def test_a_form_post_and_a_body_in_pieces_are_read_whole(member, member_key):
    form = f"id={member_key}&lat=46.06&lon=14.51".encode()
    status, _, _ = await call("/ingest/osmand/", method="POST", chunks=[form[:7], form[7:]],
                              headers=[(b"content-type",
                                        b"application/x-www-form-urlencoded")])
    assert status == 200
    await history_writer().flush()
    assert await database_sync_to_async(
        Position.objects.filter(member=member, lat=46.06).exists)()


async def test_refusals_keep_each_doors_format(member_key, viewer_key):
    status, _, body = await call("/ingest/osmand/", query=b"id=nobody&lat=1&lon=1")
    assert status == 400 and orjson.loads(body)["field"] == "id"
    auth = base64.b64encode(f"x:{viewer_key}".encode())
    status, _, body = await call("/ingest/owntracks/", method="POST",
                                 headers=[(b"authorization", b"Basic " + auth)],
                                 body=b'{"_type":"location","lat":1,"lon":1,"tst":1}')
    assert status == 403 and "viewer" in orjson.loads(body)["error"]
    status, headers, body = await call("/hauk/api/create.php", method="POST",
                                       body=b"pwd=wrong&dur=60&int=1")
    assert status == 200 and body.startswith(b"Incorrect password!")
    assert headers["x-hauk-version"]


async def test_a_body_over_the_limit_is_refused_without_being_kept(member_key):
    big = b"a=" + b"x" * (front.MAX_BODY + 10_000)
    status, _, body = await call(
        "/ingest/osmand/", method="POST", query=f"id={member_key}".encode(),
        chunks=[big[:300_000], big[300_000:]],
        headers=[(b"content-type", b"application/x-www-form-urlencoded")])
    assert status == 413 and orjson.loads(body)["field"] == "body"


async def test_another_host_is_refused(member_key):
    status, _, body = await call("/ingest/osmand/", host=b"evil.example",
                                 query=f"id={member_key}&lat=1&lon=1".encode())
    assert status == 400 and b"host" in body


async def test_the_host_answer_follows_the_settings(member_key, settings):
    """The front keeps get_host's answer per host header, and forgets it when a
    setting changes: a host allowed a moment ago is refused once it is not."""
    query = f"id={member_key}&lat=1&lon=1".encode()
    settings.ALLOWED_HOSTS = ["phones.example"]
    assert (await call("/ingest/osmand/", host=b"phones.example", query=query))[0] == 200
    settings.ALLOWED_HOSTS = ["maps.example"]
    assert (await call("/ingest/osmand/", host=b"phones.example", query=query))[0] == 400
    assert (await call("/ingest/osmand/", host=b"maps.example", query=query))[0] == 200


async def test_https_answers_carry_hsts_and_every_answer_the_security_headers(
        member_key, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    query = f"id={member_key}&lat=1&lon=1".encode()
    _, secure, _ = await call("/ingest/osmand/", scheme="https", query=query)
    _, plain, _ = await call("/ingest/osmand/", query=query)
    assert secure["strict-transport-security"].startswith("max-age=3600")
    assert "strict-transport-security" not in plain
    for headers in (secure, plain):
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == settings.SECURE_REFERRER_POLICY
    _, refused, _ = await call("/ingest/osmand/", query=b"id=nobody&lat=1&lon=1")
    assert refused["x-content-type-options"] == "nosniff"


async def test_query_parameters_as_the_doors_read_them(member, member_key):
    """The last of a repeated parameter wins (as QueryDict.get); percent-escapes are
    decoded; more than 1,000 parameters are refused, naming the query."""
    status, _, _ = await call("/ingest/osmand/", query=(
        f"id={member_key}&lat=10&lat=46.07&lon=14.52&accuracy=%38").encode())
    assert status == 200
    await history_writer().flush()
    stored = await database_sync_to_async(list)(
        Position.objects.filter(member=member).values_list("lat", "lon", "accuracy"))
    assert stored == [(46.07, 14.52, 8.0)]
    crowded = f"id={member_key}&lat=1&lon=1&".encode() + b"&".join(
        b"x%d=1" % n for n in range(1000))
    status, _, body = await call("/ingest/osmand/", query=crowded)
    assert status == 400 and orjson.loads(body)["field"] == "query"


async def test_plain_http_is_sent_to_https_when_the_site_says_so(member_key, settings):
    settings.SECURE_SSL_REDIRECT = True
    status, headers, _ = await call("/ingest/osmand/",
                                    query=f"id={member_key}&lat=1&lon=1".encode())
    assert status == 301
    assert headers["location"].startswith("https://testserver/ingest/osmand/")


async def test_a_crash_in_a_door_is_a_500_in_json_and_logged(member_key, monkeypatch,
                                                             caplog):
    def broken(params):
        raise RuntimeError("boom")

    monkeypatch.setattr(osmand, "parse_params", broken)
    status, _, body = await call("/ingest/osmand/",
                                 query=f"id={member_key}&lat=1&lon=1".encode())
    assert status == 500 and orjson.loads(body) == {"error": "internal error; try again later"}
    assert any("Internal Server Error" in r.getMessage() for r in caplog.records)


async def test_other_paths_are_still_djangos(db):
    status, headers, _ = await call("/ingest/nothing-here/")
    assert status == 404 and headers["content-type"].startswith("text/html")
    status, _, _ = await call("/healthz")
    assert status == 200


async def test_a_query_string_that_is_not_utf8_is_a_400_as_djangos_handler_answers(
        member_key):
    status, _, body = await call("/ingest/osmand/", query=b"id=k&lat=1&lon=\xff")
    assert status == 400 and orjson.loads(body)["field"] == "query"


# What DoorRequest promises (its docstring): the attributes and methods the doors and the
# front use, each also Django's request's (the doors run on both, GEOSHARE_INGEST_FRONT).
DOOR_ATTRIBUTES = ("scope", "method", "path", "path_info", "script_name", "META",
                   "content_type", "body", "resolver_match", "GET", "scheme")
DOOR_METHODS = (("is_secure", ()), ("get_host", ()), ("get_full_path", ()),
                ("build_absolute_uri", ()), ("build_absolute_uri", ("/r/abc/",)))


def _answer(method, *args):
    try:
        return method(*args)
    except Exception as exc:  # the same refusal, or the same answer
        return type(exc), str(exc)


@pytest.mark.parametrize("proxy_header", [None, ("HTTP_X_FORWARDED_PROTO", "https")])
@pytest.mark.parametrize("scope", [
    {"path": "/ingest/owntracks/", "method": "post", "query_string": b"key=a%20b&x=1&x=2",
     "headers": [(b"host", b"example.org"), (b"content-type", b"application/json"),
                 (b"content-length", b"12"), (b"authorization", b"Basic eDp5"),
                 (b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2"),
                 (b"x_forwarded_for", b"6.6.6.6"), (b"accept", b"*/*")],
     "client": ("192.0.2.7", 4242), "server": ("127.0.0.1", 8000)},
    {"path": "/sub/ingest/osmand/", "root_path": "/sub", "method": "GET",
     "query_string": "id=k", "headers": [(b"Content-Type", b"text/plain; charset=latin-1"),
                                         (b"user-agent", b"\xe9t\xe9")]},
    {"path": "/ingest/osmand/", "method": "POST", "headers": [
        (b"content-type", b"application/x-www-form-urlencoded; charset=nope; a=b")],
     "client": None, "server": None},
    {"path": "/hauk/api/post.php", "method": "POST", "scheme": "https",
     "headers": [(b"X-Forwarded-Proto", b"https, http"), (b"content-type", b"Text/Plain")],
     "client": ("127.0.0.1", 1), "server": ("localhost", 443)},
])
def test_door_request_has_what_django_request_has(scope, proxy_header, settings):
    # DoorRequest builds its attributes itself (with the header names' META keys and the
    # parsed Content-Type kept between requests): for every attribute the doors use, the
    # same as Django's ASGIRequest, twice in a row (the second time from what was kept).
    from io import BytesIO

    from django.core.handlers.asgi import ASGIRequest
    from django.http import HttpRequest

    settings.SECURE_PROXY_SSL_HEADER = proxy_header
    for _ in range(2):
        django_request = ASGIRequest(scope, BytesIO(b"{}"))
        door_request = front.DoorRequest(scope, b"{}")
        for name in DOOR_ATTRIBUTES:
            door, django = getattr(door_request, name), getattr(django_request, name)
            if name == "GET":  # a dict, where Django's is a QueryDict: what get answers
                assert door == dict(django.items()) and bool(door) == bool(django)
            else:
                assert door == django, name
        for name, args in DOOR_METHODS:
            assert (_answer(getattr(door_request, name), *args)
                    == _answer(getattr(django_request, name), *args)), name
        assert django_request.read() == door_request.django_request().read() == b"{}"
    assert not isinstance(door_request, HttpRequest)
    assert door_request.META.get("HTTP_X_FORWARDED_FOR") == (
        "10.0.0.1,10.0.0.2" if scope["path"] == "/ingest/owntracks/" else None)


def test_door_request_offers_only_what_it_promises():
    """Its own slots are the promised attributes (a new one is added to the test above
    too, or it is not held against Django's)."""
    own = {name for name in front.DoorRequest.__slots__ if not name.startswith("_")}
    assert own | {"GET", "scheme"} == set(DOOR_ATTRIBUTES)
    request = front.DoorRequest({"path": "/ingest/osmand/", "method": "GET"}, b"")
    with pytest.raises(AttributeError):
        request.POST  # noqa: B018
