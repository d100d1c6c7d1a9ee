"""The door check (maps.access.auth): addresses, keys, roles and limits, on every door."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.test import RequestFactory

from maps.access import address, doors, identity, limits
from maps.domain import policy
from maps.models import Position
from maps.protocol import events
from maps.storage.history import history_writer
from tests.phone_payloads import T

pytestmark = pytest.mark.django_db(transaction=True)


def with_geoshare(settings, **values):
    settings.GEOSHARE = {**settings.GEOSHARE, **values}


# -- the client's address ------------------------------------------------------------------


def scope(peer, forwarded=None):
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return {"client": (peer, 5000), "headers": headers}


def test_forwarded_headers_are_ignored_without_trusted_proxies(settings):
    with_geoshare(settings, TRUSTED_PROXIES=[])
    assert address.client_address(scope("127.0.0.1", "203.0.113.9")) == "127.0.0.1"
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="203.0.113.9",
                                   REMOTE_ADDR="127.0.0.1")
    assert address.client_address(request) == "127.0.0.1"


def test_a_trusted_proxy_names_the_address_it_saw_and_forged_hops_are_ignored(settings):
    with_geoshare(settings, TRUSTED_PROXIES=["127.0.0.1", "10.0.0.0/8"])
    # The client forged "198.51.100.1"; the proxy appended the address it saw.
    assert address.client_address(scope("127.0.0.1", "198.51.100.1, 203.0.113.9")) == (
        "203.0.113.9")
    # Two trusted proxies in a row: the rightmost untrusted hop.
    assert address.client_address(scope("10.1.2.3", "198.51.100.1, 203.0.113.9, 10.9.9.9")) == (
        "203.0.113.9")
    # A peer that is not a trusted proxy is the client, whatever it says.
    assert address.client_address(scope("192.0.2.7", "203.0.113.9")) == "192.0.2.7"
    # Garbage from a proxy: believe nothing.
    assert address.client_address(scope("127.0.0.1", "not-an-address")) == "127.0.0.1"
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.9",
                                   REMOTE_ADDR="127.0.0.1")
    assert address.client_address(request) == "203.0.113.9"


# -- keys ---------------------------------------------------------------------------------------


def test_failures_from_an_address_never_lock_out_a_valid_key(member, member_key):
    allowed, _ = limits.limit("badkey")
    for _ in range(allowed + 5):
        identity.key_member("wrong", "203.0.113.9")
    assert identity.key_member("wrong", "203.0.113.9") is identity.BLOCKED
    assert identity.key_member(member_key, "203.0.113.9").pk == member.pk
    # Another address is not affected at all.
    assert identity.key_member("wrong", "198.51.100.1") is None


def test_the_role_rule(owner, member, viewer):
    assert policy.may_publish(owner) and policy.may_publish(member)
    assert not policy.may_publish(viewer)
    assert policy.may_publish(identity.member_ref(member))


# -- the limiter ------------------------------------------------------------------------------

WINDOW_START = 3600 * 480_000  # a moment at which every window of the buckets begins


def test_the_limiter_counts_in_windows_of_its_clock(settings, monkeypatch):
    with_geoshare(settings, RATE_LIMITS={**settings.GEOSHARE["RATE_LIMITS"],
                                         "redeem": (3, 60)})
    now = [WINDOW_START + 10.0]
    monkeypatch.setattr(limits, "clock", lambda: now[0])
    assert [limits.limit_hit("redeem", "203.0.113.9") for _ in range(5)] == [
        True, True, True, False, False]
    # Refused events count too: trying harder does not help.
    assert limits.counts.peek("redeem", "203.0.113.9") == 5
    assert limits.limit_blocked("redeem", "203.0.113.9")
    assert not limits.limit_blocked("redeem", "198.51.100.1")
    assert limits.retry_after("redeem") == 50
    now[0] = WINDOW_START + 59.5
    assert not limits.limit_hit("redeem", "203.0.113.9")
    assert limits.retry_after("redeem") == 1
    now[0] = WINDOW_START + 60.0  # the next window: a fresh budget, in every process
    assert limits.limit_hit("redeem", "203.0.113.9")
    assert limits.counts.peek("redeem", "203.0.113.9") == 1


def test_a_take_counts_all_it_takes_and_a_refused_take_nothing(settings, monkeypatch):
    with_geoshare(settings, RATE_LIMITS={**settings.GEOSHARE["RATE_LIMITS"],
                                         "positions": (5, 60)})
    monkeypatch.setattr(limits, "clock", lambda: WINDOW_START + 1.0)
    assert limits.limit_take("positions", 7, 4)
    assert not limits.limit_take("positions", 7, 2)
    assert not limits.limit_take("positions", 8, 6)  # more than a whole window holds
    assert limits.counts.peek("positions", 7) == 4
    assert limits.counts.peek("positions", 8) == 0
    assert limits.limit_take_positions(7, 1)
    assert not limits.limit_take_positions(7, 1)
    assert limits.counts.peek("positions", 7) == 5


@pytest.mark.slow
def test_processes_share_the_counts_through_redis(settings, monkeypatch):
    from tests.servers import redis_url

    with_geoshare(settings, RATE_LIMITS={**settings.GEOSHARE["RATE_LIMITS"],
                                         "badkey": (2, 60)})
    monkeypatch.setattr(limits, "clock", lambda: WINDOW_START + 1.0)
    with redis_url() as (url, _server):
        settings.REDIS_URL, settings.REDIS_PREFIX = url, "test-limits"
        limits.counts.clear()
        try:
            assert limits.limit_hit("badkey", "203.0.113.9")
            assert limits.limit_take("badkey", "203.0.113.9")
            assert not limits.limit_take("badkey", "203.0.113.9")
            # A second process's limiter: a new client of the same Redis.
            limits._limiter_for.cache_clear()
            assert limits.counts.peek("badkey", "203.0.113.9") == 2
            assert not limits.limit_hit("badkey", "203.0.113.9")
        finally:
            limits.counts.clear()
            limits._limiter_for.cache_clear()


# -- positions per member over HTTP ------------------------------------------------------------


def osmand_batch(key, count, start=0):
    return json.dumps([{"id": key, "lat": 45.0, "lon": 13.0, "timestamp": T + start + i}
                       for i in range(count)])


async def stored_count(member):
    await history_writer().flush()
    return await database_sync_to_async(Position.objects.filter(member=member).count)()


async def test_positions_per_member_are_limited_with_429_and_retry_after(
    settings, member, member_key, async_client, hubs
):
    with_geoshare(settings, RATE_LIMITS={**settings.GEOSHARE["RATE_LIMITS"],
                                         "positions": (5, 60)})
    post = async_client.post
    ok = await post("/ingest/osmand/", osmand_batch(member_key, 3),
                    content_type="application/json")
    assert ok.status_code == 200
    refused = await post("/ingest/osmand/", osmand_batch(member_key, 3, start=10),
                         content_type="application/json")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "5 positions per 60 s" in refused.json()["error"]
    # What fits still goes through: the refused request was not counted.
    fits = await async_client.get(f"/ingest/gpslogger/{member_key}/",
                                  {"lat": "1", "lon": "1", "timestamp": str(T + 30)})
    assert fits.status_code == 200
    assert await stored_count(member) == 4


async def test_a_request_over_the_point_cap_is_413_and_stores_nothing(
    member, member_key, async_client, hubs
):
    response = await async_client.post(
        "/ingest/osmand/", osmand_batch(member_key, doors.MAX_POINTS_PER_REQUEST + 1),
        content_type="application/json")
    assert response.status_code == 413
    assert "1000 positions per request" in response.json()["error"]
    assert await stored_count(member) == 0


# -- sockets ----------------------------------------------------------------------------------


async def test_sockets_per_member_are_limited(settings, room, member_key, connect):
    with_geoshare(settings, MAX_SOCKETS_PER_MEMBER=2)
    first = await connect(room, key=member_key)
    await connect(room, key=member_key)
    third = await connect(room, key=member_key, expect_snapshot=False)
    assert await third.close_code() == 4429
    await first.disconnect()
    again = await connect(room, key=member_key)
    assert again.snapshot["type"] == "snapshot"


async def test_sockets_per_address_are_limited(settings, room, member_key, other_key,
                                               connect):
    with_geoshare(settings, MAX_SOCKETS_PER_ADDRESS=2)
    first = await connect(room, key=member_key)
    await connect(room, key=other_key)
    third = await connect(room, key=other_key, expect_snapshot=False)
    assert await third.close_code() == 4429
    await first.disconnect()
    again = await connect(room, key=member_key)
    assert again.snapshot["type"] == "snapshot"


# -- handshakes in batches (a reconnect storm) ------------------------------------------


def _session(members, **extra):
    from importlib import import_module

    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store["members"] = members
    for name, value in extra.items():
        store[name] = value
    store.save()
    return store


def _handshakes_of_every_kind(room, member, member_key, other, stranger_key):
    """Handshakes of every outcome: ``[(room_id, session_key, key), ...]``."""
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from maps.services import device_revoke, member_create, member_remove

    gone, gone_key = member_create(room=room, name="Gone")
    gone_session = _session({room.public_id: gone.pk})
    revoked, revoked_key = member_create(room=room, name="Revoked")
    device_revoke(device=revoked.devices.get())
    member_remove(member=gone)
    valid = _session({room.public_id: other.pk})
    expired = _session({room.public_id: other.pk})
    Session.objects.filter(session_key=expired.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1))
    logged_out = _session({room.public_id: other.pk})
    logged_out.delete()
    elsewhere = _session({"someroom": other.pk})
    empty = _session({})
    return [
        (room.public_id, None, member_key),  # a valid key
        (room.public_id, None, revoked_key),  # a revoked key
        (room.public_id, None, "not-a-key-at-all"),  # an unknown key
        (room.public_id, None, stranger_key),  # a key of another room
        ("nosuchroom", None, member_key),  # a key, no such room
        (room.public_id, None, gone_key),  # the key of a removed member
        (room.public_id, valid.session_key, None),  # a valid session
        (room.public_id, expired.session_key, None),  # an expired session
        (room.public_id, logged_out.session_key, None),  # a logged-out session
        (room.public_id, gone_session.session_key, None),  # a removed member's
        (room.public_id, elsewhere.session_key, None),  # a session of another room
        (room.public_id, empty.session_key, None),  # a session in no room
        (room.public_id, "short", None),  # not a session key
        (room.public_id, None, None),  # no credentials
        ("nosuchroom", valid.session_key, None),  # a session, no such room
    ]


EXPECTED_CODES = [None, 4401, 4401, 4403, 4404, 4401, None, 4401, 4401, 4403, 4403, 4401,
                  4401, 4401, 4404]


def _outcome(answer):
    code, member, room = answer
    return code, member and member.pk, room and room.pk


async def test_handshakes_that_arrive_together_are_answered_by_one_query_each_as_alone(
    room, member, member_key, other, stranger_key
):
    from maps.access import keycache
    from maps.models import hash_key

    keycache.keys.clear()
    handshakes = await database_sync_to_async(_handshakes_of_every_kind)(
        room, member, member_key, other, stranger_key)
    alone = [await database_sync_to_async(identity.socket_member)(r, s, k, "198.51.100.7")
             for r, s, k in handshakes]
    assert [code for code, _m, _r in alone] == EXPECTED_CODES
    keycache.keys.clear()
    limits.counts.clear()
    keys_before, sessions_before = identity.key_loads.calls, identity.session_loads.calls
    together = await asyncio.gather(*(identity.asocket_member(r, s, k, "198.51.100.7")
                                      for r, s, k in handshakes))
    assert [_outcome(a) for a in together] == [_outcome(a) for a in alone]
    # Every key went in one lookup, every session in one.
    assert identity.key_loads.calls - keys_before == 1
    assert identity.session_loads.calls - sessions_before == 1
    # The valid key is kept in memory; the wrong ones are not.
    assert keycache.keys.get(hash_key(member_key)).pk == member.pk
    assert len(keycache.keys) == 1


def test_a_batch_of_keys_answers_each_and_counts_each_wrong_key_against_its_address(
    settings, member, member_key, stranger_and_key
):
    from maps.models import hash_key

    with_geoshare(settings, RATE_LIMITS={**settings.GEOSHARE["RATE_LIMITS"],
                                         "badkey": (2, 60)})
    stranger, stranger_key = stranger_and_key
    wrong = hash_key("wrong")
    answers = identity.keys_members([
        (hash_key(member_key), "203.0.113.9"),
        (wrong, "203.0.113.9"),
        (hash_key(stranger_key), "203.0.113.9"),
        (wrong, "203.0.113.9"),
        (wrong, "198.51.100.1"),
        (wrong, "203.0.113.9"),  # the third wrong key from this address
        (hash_key(member_key), "203.0.113.9"),  # a valid key still works
    ])
    assert [getattr(a, "pk", a) for a in answers] == [
        member.pk, None, stranger.pk, None, None, identity.BLOCKED, member.pk]
    assert answers[0].device.key_hash == hash_key(member_key)
    assert answers[2].room.pk == stranger.room_id


async def test_a_batch_that_raced_a_forget_is_not_kept(room, member, member_key):
    # A key's member changes while the batch holding its lookup is on the reads
    # thread: the answer serves the handshake that asked, but is not kept.
    from maps.access import keycache

    keycache.keys.clear()
    real = identity.key_loads.function

    def racing(requests):
        answers = real(requests)
        keycache.forget(events.keys_forget(member.room_id, member.pk))
        return answers

    identity.key_loads.function = racing
    try:
        code, found, _room = await identity.asocket_member(room.public_id, None, member_key,
                                                       "198.51.100.7")
    finally:
        identity.key_loads.function = real
    assert code is None and found.pk == member.pk
    assert len(keycache.keys) == 0


async def test_doors_key_lookups_that_arrive_together_go_in_one_query(
    member, member_key, stranger_and_key
):
    # The phone doors' key-cache misses share the handshakes' batches: each request
    # gets its own answer, a wrong key still counts against its address.
    from maps.access import keycache

    keycache.keys.clear()
    stranger, stranger_key = stranger_and_key
    before = identity.key_loads.calls
    found = await asyncio.gather(
        identity.akey_member(member_key, "203.0.113.9"),
        identity.akey_member("wrong", "203.0.113.9"),
        identity.akey_member(stranger_key, "198.51.100.1"),
    )
    assert identity.key_loads.calls - before == 1
    assert [getattr(m, "pk", m) for m in found] == [member.pk, None, stranger.pk]
    assert limits.counts.peek("badkey", "203.0.113.9", limits.limit("badkey")[1]) == 1
    assert len(keycache.keys) == 2
