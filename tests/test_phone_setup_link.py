"""A one-time link that opens a device's setup on the phone (issue 25, item 20).

"Connect a phone" shows a device's key once, in the browser that added it; the page's
steps said "Open this page on the phone", which shows no key. Now the key card carries
a one-time link (and its QR code) that opens that device's setup on the phone: stored
hashed, the key sealed with the token, 10 minutes, once, at most 5 at a time.
"""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from maps.models import Role, SetupLink, hash_key
from maps.services import (
    MAX_SETUP_LINKS,
    device_rotate_key,
    member_create,
    room_create,
    setup_link_create,
)
from maps.storage.selectors import member_for_key
from maps.telemetry.logging import redact

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}


@pytest.fixture
def ana(db):
    room, _owner = room_create(name="Family", owner_name="Olga")
    member, _key = member_create(room=room, name="Ana", role=Role.MEMBER)
    return member


def signed_in(member, **extra):
    client = Client(**extra)
    session = client.session
    session["members"] = {member.room.public_id: member.pk}
    session.save()
    return client


def add_device(member, name="Pixel", **extra):
    client = signed_in(member, **extra)
    response = client.post(f"/r/{member.room.public_id}/connect/",
                           {"action": "add", "name": name})
    assert response.status_code == 200
    page = response.content.decode()
    key = re.search(r'id="device-key" class="copy-value mono" readonly value="([^"]+)"',
                    page).group(1)
    url = re.search(r'id="setup-url" class="copy-value mono" readonly value="([^"]+)"',
                    page).group(1)
    return page, key, url


def test_a_new_device_offers_a_one_time_link_that_opens_its_setup_on_the_phone(ana):
    page, key, url = add_device(ana)
    assert re.fullmatch(r"http://testserver/setup/[A-Za-z0-9_-]{32}/", url)
    assert 'id="setup-link"' in page and page.count("<svg") >= 4  # its QR, the apps'
    assert "Open this page on the phone" not in page
    token = url.rstrip("/").rsplit("/", 1)[1]
    link = SetupLink.objects.get()
    assert link.token_hash == hash_key(token)
    assert key.encode() not in bytes(link.sealed) and token not in link.token_hash
    assert link.expires_at - link.created == timedelta(minutes=10)

    phone = Client()  # no session: the phone is not signed in
    asked = phone.get(url)
    assert asked.status_code == 200 and "no-cache" in asked["Cache-Control"]
    assert key not in asked.content.decode()  # a link preview does not use it up
    shown = phone.post(url)
    assert shown.status_code == 200
    setup = shown.content.decode()
    assert key in setup and f"/ingest/owntracks/?key={key}" in setup
    assert "Pixel" in setup and "Overland" in setup
    assert member_for_key(key).device.name == "Pixel"
    # Once.
    again = Client().post(url)
    assert again.status_code == 404
    assert "This setup link no longer works" in again.content.decode()
    assert key not in again.content.decode()


def test_a_setup_link_ends_with_its_time_and_with_a_new_key(ana):
    _page, key, url = add_device(ana)
    SetupLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(url).status_code == 404
    _page, key, url = add_device(ana, name="Car")
    device = member_for_key(key).device
    device_rotate_key(device=device)
    response = Client().post(url)
    assert response.status_code == 404
    assert key not in response.content.decode()


def test_at_most_five_setup_links_work_at_a_time(ana):
    device = member_for_key(add_device(ana)[1]).device
    for _ in range(MAX_SETUP_LINKS - 1):
        setup_link_create(device=device, key="k")
    with pytest.raises(ValueError, match="at most 5 setup links"):
        setup_link_create(device=device, key="k")
    page = signed_in(ana).post(f"/r/{ana.room.public_id}/connect/",
                               {"action": "rotate", "device": device.pk}).content.decode()
    # A new key ends the device's links, so there is room for one again.
    assert 'id="setup-url"' in page


def test_unknown_setup_tokens_count_against_the_address(ana, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "RATE_LIMITS": {
        **settings.GEOSHARE["RATE_LIMITS"], "redeem": (2, 60)}}
    client = Client(REMOTE_ADDR="198.51.100.25")
    statuses = [client.get(f"/setup/{'x' * 32}/").status_code for _ in range(3)]
    assert statuses == [404, 404, 429]


def test_setup_tokens_are_redacted_from_logs():
    line = '127.0.0.1:5 - "GET /setup/AbC-123_xyz/ HTTP/1.1" 200'
    assert redact(line) == '127.0.0.1:5 - "GET /setup/[redacted]/ HTTP/1.1" 200'


def test_the_setup_link_and_its_page_in_chinese(ana):
    page, key, url = add_device(ana, **ZH)
    assert "在手机上打开此设置" in page
    phone = Client(**ZH)
    assert "显示设置" in phone.get(url).content.decode()
    assert key in phone.post(url).content.decode()
