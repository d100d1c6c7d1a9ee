"""Security headers on pages (maps.web.middleware, the views' cache control)."""

import pytest

from maps.services import invite_create
from maps.web.middleware import content_security_policy, tile_source

pytestmark = pytest.mark.django_db


def _directives(response):
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def _as(client, room, member):
    session = client.session
    session["members"] = {room.public_id: member.pk}
    session.save()


def test_every_html_page_gets_a_strict_policy(client, room, owner):
    invite = invite_create(room=room)
    _as(client, room, owner)
    pages = ["/", invite.path(), f"/r/{room.public_id}/", f"/r/{room.public_id}/manage/",
             f"/r/{room.public_id}/connect/", "/r/nope/", "/admin/login/"]
    for path in pages:
        response = client.get(path)
        assert response["Content-Type"].startswith("text/html"), path
        csp = _directives(response)
        assert csp["default-src"] == ["'self'"], path
        assert csp["script-src"] == ["'self'"]
        assert csp["style-src"] == ["'self'"]
        assert csp["img-src"] == ["'self'", "data:", "https://tile.openstreetmap.org"]
        assert csp["connect-src"] == ["'self'", "ws://testserver"]
        assert csp["font-src"] == ["'self'"]
        assert csp["object-src"] == ["'none'"]
        assert csp["base-uri"] == ["'none'"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert csp["form-action"] == ["'self'"]
        assert response["Permissions-Policy"] == (
            "geolocation=(self), camera=(), microphone=(), payment=(), usb=()")


def test_secure_site_allows_only_its_own_wss_origin(client, settings):
    settings.ALLOWED_HOSTS = ["maps.example.org"]
    response = client.get("/", secure=True, HTTP_HOST="maps.example.org")
    assert _directives(response)["connect-src"] == ["'self'", "wss://maps.example.org"]
    response = client.get("/", HTTP_HOST="maps.example.org:8080")
    assert _directives(response)["connect-src"] == ["'self'", "ws://maps.example.org:8080"]


def test_non_html_responses_carry_no_policy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
        ("https://{s}.tile.example.com/{z}/{x}/{y}.png", "https://*.tile.example.com"),
        ("https://tiles.example.com:8443/{z}/{x}/{y}.png", "https://tiles.example.com:8443"),
        ("http://{s}.example.com/{z}/{x}/{y}.png?key=abc", "http://*.example.com"),
        ("/tiles/{z}/{x}/{y}.png", None),  # served by this site: 'self' covers it
        ("https://ti les.example.com/{z}", None),  # nothing a policy could carry safely
        ("https://tiles.example.com;script-src *", None),
    ],
)
def test_tile_source_is_the_origin_of_the_tile_url(url, source):
    assert tile_source(url) == source


def test_policy_follows_the_tile_setting(client, settings):
    settings.GEOSHARE = {**settings.GEOSHARE,
                         "TILE_URL": "https://{s}.tile.example.com/{z}/{x}/{y}.png"}
    response = client.get("/")
    assert _directives(response)["img-src"] == ["'self'", "data:", "https://*.tile.example.com"]
    assert "img-src 'self' data:;" in content_security_policy(None, "/x/{z}")


def test_pages_with_invite_links_or_keys_are_not_cached(client, room, owner):
    _as(client, room, owner)
    for path in (f"/r/{room.public_id}/", f"/r/{room.public_id}/manage/",
                 f"/r/{room.public_id}/connect/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response["Cache-Control"], path


def test_manage_page_has_no_inline_style_or_script(client, room, owner, member):
    _as(client, room, owner)
    html = client.get(f"/r/{room.public_id}/manage/").content.decode()
    assert "style=" not in html
    assert " onsubmit=" not in html and " onclick=" not in html
    assert "<script>" not in html
    assert f'fill="{member.color}"' in html
