"""Device keys kept in memory (maps/access/keycache.py): answered without a query, forgotten
when anything a door relies on changes, here at once and in other processes through
the channel layer, and in any case after ``GEOSHARE["KEY_CACHE_S"]``."""

import asyncio
import time

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from maps.access import keycache
from maps.models import Device, LivePosition, Position, hash_key
from maps.protocol import events
from maps.services import (
    amember_stop_sharing,
    device_revoke,
    device_rotate_key,
    device_set_secret,
    member_remove,
    publish,
)
from maps.storage.history import history_writer
from tests.servers import FakeClock, Project, Uvicorn, redis_url, until

pytestmark = pytest.mark.django_db(transaction=True)


class Member:
    def __init__(self, room_id, pk=None):
        self.room_id = room_id
        self.pk = pk if pk is not None else id(self)


@pytest.fixture(autouse=True)
def _empty_cache():
    keycache.keys.clear()
    yield
    keycache.keys.clear()


# -- the cache itself -------------------------------------------------------------------


def test_an_entry_lives_for_its_time_and_no_longer():
    cache = keycache.KeyCache(ttl_s=10)
    ana = Member(1)
    assert cache.put("h", ana, cache.generation)
    now = time.monotonic()
    assert cache.get("h", now) is ana
    assert cache.get("h", now + 10) is None
    assert cache.get("other") is None


def test_forgetting_a_room_forgets_its_keys_only():
    cache = keycache.KeyCache(ttl_s=10)
    cache.put("a1", Member(1), cache.generation)
    cache.put("a2", Member(1), cache.generation)
    cache.put("b1", Member(2), cache.generation)
    cache.forget_room(1)
    assert cache.get("a1") is None and cache.get("a2") is None
    assert cache.get("b1") is not None


def test_a_load_that_raced_a_change_of_its_room_is_not_kept():
    cache = keycache.KeyCache(ttl_s=10)
    started = cache.generation  # the load reads the database ...
    cache.forget_room(1)  # ... while a change of room 1 commits
    assert not cache.put("a1", Member(1), started)
    assert cache.get("a1") is None
    # A change elsewhere does not stop this room's load from being kept.
    started = cache.generation
    cache.forget_room(2)
    assert cache.put("a1", Member(1), started)
    started = cache.generation
    cache.clear()
    assert not cache.put("a1", Member(1), started)


def test_a_full_cache_drops_its_oldest_entries():
    cache = keycache.KeyCache(ttl_s=10, max_entries=20)
    for i in range(25):
        cache.put(f"k{i}", Member(i % 3), cache.generation)
    assert len(cache) <= 20
    assert cache.get("k24") is not None and cache.get("k0") is None


def test_only_changes_that_matter_to_a_door_forget_and_only_whom_they_concern():
    assert publish.forget_message(5, events.room_fix({"member": 7})) is None
    assert publish.forget_message(5, events.room_presence("hub", 7, True)) is None
    about_one = [events.room_share(7, None), events.room_stop(7, 1),
                 events.room_member({"id": 7, "name": "Ana", "color": "#000",
                                     "role": "member"}),
                 events.room_kick(7), events.room_rekey(7, 3)]
    for event in about_one:
        message = publish.forget_message(5, event)
        assert message == {"type": "keys.forget", "room": 5, "member": 7}
        events.check_room_event(message)
    for event in (events.room_deleted(), events.room_places([])):
        message = publish.forget_message(5, event)
        assert message == {"type": "keys.forget", "room": 5}
        events.check_room_event(message)


def test_forgetting_a_member_leaves_the_rest_of_the_room():
    cache = keycache.KeyCache(ttl_s=10)
    ana, bo = Member(1), Member(1)
    ana.pk, bo.pk = 10, 11
    cache.put("ana-phone", ana, cache.generation)
    cache.put("ana-tablet", ana, cache.generation)
    cache.put("bo", bo, cache.generation)
    started = cache.generation
    cache.forget_member(10)
    assert cache.get("ana-phone") is None and cache.get("ana-tablet") is None
    assert cache.get("bo") is bo
    assert not cache.put("ana-phone", ana, started)  # a load that raced it
    assert cache.put("bo", bo, started)


# -- the doors, in this process ---------------------------------------------------------


def osmand(async_client, key, lat=46.05):
    return async_client.get("/ingest/osmand/", {"id": key, "lat": str(lat), "lon": "14.5"})


async def warm(async_client, key):
    """Post twice: the first position starts the member's share, which (a change of
    the room) forgets the key again; the second leaves it in memory."""
    for lat in (46.05, 46.051):
        assert (await osmand(async_client, key, lat)).status_code == 200
    assert keycache.keys.get(hash_key(key)) is not None


@pytest.fixture
def on_commit():
    """Call a synchronous service as a view would (its events are sent on commit)."""

    async def run(function, **kwargs):
        return await database_sync_to_async(function)(**kwargs)

    return run


async def test_a_known_key_is_answered_from_memory(async_client, member, member_key):
    await warm(async_client, member_key)
    cached = keycache.keys.get(hash_key(member_key))
    assert cached is not None and cached.pk == member.pk
    await database_sync_to_async(Device.objects.filter(member=member).update)(
        name="renamed behind the cache's back")
    assert (await osmand(async_client, member_key, 46.06)).status_code == 200
    assert keycache.keys.get(hash_key(member_key)) is cached  # no query: not reloaded
    await history_writer().flush()
    assert await database_sync_to_async(Position.objects.filter(member=member).count)() == 3


async def test_a_replaced_key_stops_working_at_once(async_client, member, member_key,
                                                    on_commit):
    await warm(async_client, member_key)
    device = await database_sync_to_async(Device.objects.get)(member=member)
    new_key = await on_commit(device_rotate_key, device=device)
    assert (await osmand(async_client, member_key)).status_code == 400
    assert (await osmand(async_client, new_key)).status_code == 200


async def test_a_revoked_device_and_a_removed_member_stop_at_once(
        async_client, member, member_key, other, other_key, on_commit):
    for key in (member_key, other_key):
        await warm(async_client, key)
    device = await database_sync_to_async(Device.objects.get)(member=member)
    await on_commit(device_revoke, device=device)
    assert (await osmand(async_client, member_key)).status_code == 400
    await on_commit(member_remove, member=other)
    assert (await osmand(async_client, other_key)).status_code == 400


async def test_an_ended_share_is_seen_by_the_next_request(async_client, member,
                                                          member_key):
    await warm(async_client, member_key)
    ref = keycache.keys.get(hash_key(member_key))
    from maps.access.identity import member_ref

    await amember_stop_sharing(ref=member_ref(ref))
    # The phone still gets its 200 (its queue must not jam), but nothing is kept.
    assert (await osmand(async_client, member_key, 47.0)).status_code == 200
    await history_writer().flush()
    assert not await database_sync_to_async(
        LivePosition.objects.filter(member=member).exists)()
    assert not await database_sync_to_async(
        Position.objects.filter(member=member, lat=47.0).exists)()


async def test_a_new_owntracks_secret_is_used_at_once(async_client, member, member_key,
                                                      on_commit):
    await warm(async_client, member_key)
    device = await database_sync_to_async(Device.objects.get)(member=member)
    await on_commit(device_set_secret, device=device, secret="s3cret")
    assert keycache.keys.get(hash_key(member_key)) is None
    response = await async_client.post("/ingest/owntracks/", b"", content_type="",
                                       headers={"authorization": _basic(member_key)})
    assert response.status_code == 200
    assert keycache.keys.get(hash_key(member_key)).device.secret == "s3cret"


def _basic(key):
    import base64

    return "Basic " + base64.b64encode(f"phone:{key}".encode()).decode()


async def test_changes_are_announced_to_every_process(member, member_key, on_commit):
    """The message other processes listen for is sent to their group."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.KEYS_GROUP, channel)
    device = await database_sync_to_async(Device.objects.get)(member=member)
    await on_commit(device_rotate_key, device=device)
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message == {"type": "keys.forget", "room": member.room_id,
                       "member": member.pk}
    await layer.group_discard(events.KEYS_GROUP, channel)


async def test_the_listener_forgets_what_another_process_announces(member, member_key,
                                                                   async_client):
    layer = get_channel_layer()
    before = set(layer.groups.get(events.KEYS_GROUP, ()))
    listener = asyncio.get_running_loop().create_task(keycache.listen())
    try:
        await until(lambda: set(layer.groups.get(events.KEYS_GROUP, ())) - before)  # joined
        await warm(async_client, member_key)
        # As another process's services send it, without touching this one's memory.
        await layer.group_send(events.KEYS_GROUP, events.keys_forget(member.room_id, member.pk))
        await until(lambda: keycache.keys.get(hash_key(member_key)) is None)
        assert keycache.keys.get(hash_key(member_key)) is None
    finally:
        listener.cancel()


async def test_a_key_changed_behind_the_services_back_stops_after_the_cache_time(
        async_client, member, member_key, settings, monkeypatch):
    """No event at all (a change made in the database directly): the documented bound."""
    settings.GEOSHARE = {**settings.GEOSHARE, "KEY_CACHE_S": 1}
    clock = FakeClock()
    monkeypatch.setattr(keycache.keys, "clock", clock)
    await warm(async_client, member_key)
    await database_sync_to_async(Device.objects.filter(member=member).update)(
        key_hash=hash_key("something else"))
    clock.advance(0.9)
    assert (await osmand(async_client, member_key)).status_code == 200  # still trusted
    clock.advance(0.1)
    assert (await osmand(async_client, member_key)).status_code == 400


# -- two processes on Redis --------------------------------------------------------------


@pytest.mark.slow
def test_a_key_replaced_through_one_process_stops_on_the_other_at_once(tmp_path):
    with redis_url() as (url, _redis):
        project = Project(tmp_path, REDIS_URL=url).migrate()
        room = project.create_room("Keys", "Olga")
        ana = project.add_member(room, "Ana")
        with Uvicorn(project) as first, Uvicorn(project) as second:
            for server in (first, second):  # both processes now keep Ana's key
                response = httpx.get(f"{server.http}/ingest/osmand/",
                                     params={"id": ana["key"], "lat": "46", "lon": "14"})
                assert response.status_code == 200, response.text
            # Replaced by a third process (manage.py), which only Redis connects.
            project.manage("shell", "-c", (
                "from maps.models import Device\n"
                "from maps.services import device_rotate_key\n"
                f"device_rotate_key(device=Device.objects.get(member_id={ana['member']}))\n"
            ))
            deadline = time.monotonic() + 5  # the message crosses Redis, not a timer
            statuses = set()
            for server in (first, second):
                while True:
                    status = httpx.get(f"{server.http}/ingest/osmand/", params={
                        "id": ana["key"], "lat": "46", "lon": "14"}).status_code
                    if status != 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                statuses.add(status)
            assert statuses == {400}


def test_the_key_lookup_reads_what_the_orm_reads(member, member_key):
    """The plain query (maps.storage.selectors.member_for_key) gives the models the ORM gives,
    field for field, converted alike (aware datetimes, booleans)."""
    from django.utils import timezone

    from maps.storage.selectors import member_for_key

    Device.objects.filter(member=member).update(last_seen=timezone.now(), secret="s")
    found = member_for_key(member_key)
    device = Device.objects.select_related("member__room").get(key_hash=hash_key(member_key))
    for mine, theirs in ((found.device, device), (found, device.member),
                         (found.room, device.member.room)):
        for field in type(theirs)._meta.concrete_fields:
            assert getattr(mine, field.attname) == getattr(theirs, field.attname), field
    assert found.device.last_seen.tzinfo is not None
    assert member_for_key("not a key") is None
