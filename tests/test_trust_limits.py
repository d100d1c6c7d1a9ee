"""Guessing tokens, caching of token pages, the admin's login: limits and headers
(issue 25, item 10). In-process tests."""

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

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
