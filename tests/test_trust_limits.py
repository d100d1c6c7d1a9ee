"""Guessing tokens, caching of token pages, the admin's login: limits and headers
(issue 25, item 10). In-process tests."""

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client as HttpClient

from maps.access import limits
from maps.services import invite_create, watch_link_create
from tests.conftest import Client

pytestmark = pytest.mark.django_db(transaction=True)


# -- unknown watch tokens count against the address ----------------------------------


def test_unknown_watch_tokens_are_rate_limited_and_a_real_link_still_opens(client, member):
    allowed, _ = settings.GEOSHARE["RATE_LIMITS"]["redeem"]
    statuses = [client.get(f"/w/guess{i}/").status_code for i in range(allowed + 1)]
    assert statuses[:allowed] == [404] * allowed and statuses[-1] == 429
    assert limits.counts.peek("redeem", "127.0.0.1") == allowed + 1
    # The same budget as invites and sign-in links: guessing one kind spends them all.
    assert client.get("/join/another-guess/").status_code == 429
    assert client.get("/signin/another-guess/").status_code == 429
    # A link that exists is never refused for its address's failures.
    _link, token = watch_link_create(member=member, minutes=60)
    response = client.get(f"/w/{token}/")
    assert response.status_code == 200
    assert f"/ws/watch/{token}/" in response.content.decode()


async def test_unknown_watch_tokens_on_the_socket_get_4429_past_the_limit(hubs, member):
    allowed, _ = settings.GEOSHARE["RATE_LIMITS"]["redeem"]
    codes = []
    for i in range(allowed + 1):
        client = Client(f"/ws/watch/guess{i}/")
        connected, _ = await client.connect()
        assert connected
        codes.append(await client.close_code())
    assert codes[:allowed] == [4404] * allowed and codes[-1] == 4429
    _link, token = await database_sync_to_async(watch_link_create)(member=member, minutes=60)
    watch = Client(f"/ws/watch/{token}/")
    connected, _ = await watch.connect()
    assert connected
    assert (await watch.receive_type("snapshot"))["type"] == "snapshot"
    await watch.disconnect()


# -- pages that carry a token or this browser's rooms are not kept --------------------


def test_the_home_and_join_pages_are_sent_with_no_store(client, room):
    invite = invite_create(room=room)
    pages = {
        "home": client.get("/"),
        "join": client.get(invite.path()),
        "join, no such invite": client.get("/join/no-such-invite/"),
        "join, a name refused": client.post(invite.path(), {"name": ""}),
    }
    assert {name: response.status_code for name, response in pages.items()} == {
        "home": 200, "join": 200, "join, no such invite": 404, "join, a name refused": 200}
    for name, response in pages.items():
        assert "no-store" in response.headers.get("Cache-Control", ""), name
    # Once joined, the home page lists the room: that list is not kept either.
    client.post(invite.path(), {"name": "Ana"})
    response = client.get("/")
    assert room.name in response.content.decode()
    assert "no-store" in response.headers["Cache-Control"]


# -- the admin's sign-in -----------------------------------------------------------------


def test_admin_sign_in_attempts_are_limited_per_address(django_user_model):
    django_user_model.objects.create_superuser("admin", "a@example.org", "right horse")
    allowed, window = settings.GEOSHARE["RATE_LIMITS"]["admin_login"]
    here = HttpClient()
    wrong = {"username": "admin", "password": "wrong", "next": "/admin/"}
    statuses = [here.post("/admin/login/", wrong).status_code for _ in range(allowed)]
    assert statuses == [200] * allowed  # the form again, with Django's error
    response = here.post("/admin/login/", wrong)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= window
    assert f"at most {allowed} in {window // 60} minutes" in response.content.decode()
    # Past the limit the right password is refused too: a right guess tells nothing.
    right = {**wrong, "password": "right horse"}
    assert here.post("/admin/login/", right).status_code == 429
    assert here.get("/admin/").status_code == 302  # still not signed in
    # Another address is not held back by this one's attempts.
    there = HttpClient(REMOTE_ADDR="198.51.100.7")
    response = there.post("/admin/login/", right)
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert there.get("/admin/").status_code == 200


def test_admin_sign_in_without_the_csrf_token_is_refused_uncounted(django_user_model):
    forged = HttpClient(enforce_csrf_checks=True)
    for _ in range(3):
        response = forged.post("/admin/login/", {"username": "admin", "password": "x"})
        assert response.status_code == 403
    assert limits.counts.peek("admin_login", "127.0.0.1") == 0
