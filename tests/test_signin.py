"""Open on another device: one-time sign-in links (maps.web.signin_views, services)."""

import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from maps import services
from maps.models import SignInLink, hash_key

pytestmark = pytest.mark.django_db


def _as(client, member):
    session = client.session
    session["members"] = {member.room.public_id: member.pk}
    session.save()


def _make_link(client, room):
    page = client.post(f"/r/{room.public_id}/other-device/", {"action": "create"})
    assert page.status_code == 200
    return re.search(r'id="signin-url"[^>]*value="([^"]+)"', page.content.decode()).group(1)


def test_a_sign_in_link_signs_another_browser_in_as_the_same_member_once(room, owner):
    first = Client()
    _as(first, owner)
    url = _make_link(first, room)
    path = url.split("testserver", 1)[1]
    link = SignInLink.objects.get()
    assert link.token_hash == hash_key(path.split("/")[2]) and path.split("/")[2] not in (
        link.token_hash)
    assert link.expires_at - link.created <= timedelta(minutes=10)

    second = Client()
    ask = second.get(path)
    assert ask.status_code == 200 and b"Sign in as Olga" in ask.content
    assert second.session.get("members") in (None, {})  # a GET signs nobody in
    response = second.post(path)
    assert response.status_code == 302
    assert response["Location"] == f"/r/{room.public_id}/"
    assert second.session["members"] == {room.public_id: owner.pk}
    assert second.get(f"/r/{room.public_id}/").context["config"]["memberId"] == owner.pk

    third = Client()
    again = third.post(path)
    assert again.status_code == 404 and b"no longer works" in again.content
    assert third.session.get("members") in (None, {})


def test_an_expired_or_revoked_link_signs_nobody_in(client, room, member):
    link, token = services.signin_link_create(member=member)
    services.signin_link_revoke(link=link)
    assert Client().post(f"/signin/{token}/").status_code == 404
    link, token = services.signin_link_create(member=member)
    SignInLink.objects.filter(pk=link.pk).update(expires_at=timezone.now())
    assert Client().post(f"/signin/{token}/").status_code == 404


def test_links_are_listed_and_revocable(client, room, member):
    _as(client, member)
    _make_link(client, room)
    link = SignInLink.objects.get()
    page = client.get(f"/r/{room.public_id}/other-device/")
    assert b'id="signin-links"' in page.content and b"works until" in page.content
    assert b"signin-url" not in page.content  # the link itself is shown once
    client.post(f"/r/{room.public_id}/other-device/", {"action": "revoke", "link": link.pk})
    link.refresh_from_db()
    assert link.revoked


def test_a_stranger_cannot_make_links(client, room):
    response = client.post(f"/r/{room.public_id}/other-device/", {"action": "create"})
    assert response.status_code == 403
    assert not SignInLink.objects.exists()


def _paragraph(page):
    """The sign-in page's sentence about what the link does."""
    return re.search(r"<p>([^<]*)</p>\s*<form", page.content.decode()).group(1)


@pytest.mark.parametrize("language, by_device, by_command", [
    ("en", "as on the device that made the link", "made on the server, by a command"),
    ("zh-CN", "和生成链接的设备一样", "由服务器上的命令生成"),
])
def test_the_sign_in_page_names_who_made_the_link(room, owner, language, by_device,
                                                   by_command):
    # manage.py demo's owner link (`make run`): no device made it.
    out = io.StringIO()
    call_command("demo", "--port", "8000", stdout=out)
    path = re.search(r"/signin/[A-Za-z0-9_-]+/", out.getvalue()).group(0)
    assert SignInLink.objects.get().by_command
    page = Client(HTTP_ACCEPT_LANGUAGE=language).get(path)
    assert page.status_code == 200
    assert by_command in _paragraph(page) and by_device not in _paragraph(page)
    # "Open on another device" on the map: a browser of the member made it.
    browser = Client()
    _as(browser, owner)
    url = _make_link(browser, room)
    page = Client(HTTP_ACCEPT_LANGUAGE=language).get(url.split("testserver", 1)[1])
    assert by_device in _paragraph(page) and by_command not in _paragraph(page)
