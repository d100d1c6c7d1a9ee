"""OwnTracks friends answers (maps/ingest/friends.py): built once per room and kept up to a
second, forgotten at once when a member in them changes (here and, through
``keys.forget``, from other processes), and given to each device at most every
``GEOSHARE["OWNTRACKS_FRIENDS_EVERY_S"]`` seconds, while every post is still stored and
broadcast.

Time is the tests' own clock (:class:`Clock`), never waited for."""

import asyncio
import base64
import json
from datetime import timedelta

import nacl.secret
import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from maps.access import keycache
from maps.access.identity import member_ref
from maps.ingest import friends
from maps.models import Member, Room, Share
from maps.services import amember_stop_sharing, device_set_secret, member_remove
from maps.storage.history import history_writer
from maps.storage.selectors import member_for_key
from tests import test_ingest
from tests.phone_payloads import T, owntracks_location
from tests.test_ingest import post_owntracks, stored

# The door's fixtures: a room of keyed people (Ana, Bo, the viewer Vera), viewer sockets.
party = test_ingest.party
watch = test_ingest.watch

db_async = pytest.mark.django_db(transaction=True)


class Clock:
    """A monotonic clock in seconds that moves only when told."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    """The friends cache's and throttle's clock, moved by the test."""
    fake = Clock()
    monkeypatch.setattr(friends.rooms, "clock", fake)
    monkeypatch.setattr(friends.throttle, "clock", fake)
    return fake


@pytest.fixture
def every(settings):
    """Set ``GEOSHARE["OWNTRACKS_FRIENDS_EVERY_S"]``: ``every(0)``."""

    def set_every(seconds):
        settings.GEOSHARE = {**settings.GEOSHARE, "OWNTRACKS_FRIENDS_EVERY_S": seconds}

    return set_every


async def osmand_post(key, lat, tst=T):
    """A position of ``key``'s member through the OsmAnd door, stored when answered."""
    response = await AsyncClient().get("/ingest/osmand/", {
        "id": key, "lat": str(lat), "lon": "13.8", "timestamp": str(tst)})
    assert response.status_code == 200
    await history_writer().flush()


def friend_names(answer):
    return [m["name"] for m in answer if m["_type"] == "card"]


def friend_lats(answer):
    return [m["lat"] for m in answer if m["_type"] == "location"]


async def answer_of(key, tst=T):
    response = await post_owntracks(AsyncClient(), owntracks_location(tst=tst), key)
    assert response.status_code == 200
    return response.json()


async def member(key):
    return await database_sync_to_async(lambda: member_for_key(key))()


# -- the throttle -----------------------------------------------------------------------


@db_async
async def test_a_post_inside_the_window_gets_no_friends_but_is_stored_and_broadcast(
        party, watch, clock, every):
    every(10)
    await osmand_post(party.bo_key, 45.3)
    viewer = await watch(party.room, party.vera_key)
    assert friend_names(await answer_of(party.ana_key, T)) == ["Bo"]  # the first post
    await viewer.positions()

    clock.advance(9.9)
    assert await answer_of(party.ana_key, T + 1) == []
    (position,) = await viewer.positions()
    assert position["member"] == party.ana.pk and position["ts"] == (T + 1) * 1000
    assert [int(p.device_time.timestamp()) for p in await stored(party.ana)] == [T, T + 1]

    clock.advance(0.1)
    assert friend_names(await answer_of(party.ana_key, T + 2)) == ["Bo"]
    assert len(await stored(party.ana)) == 3


@db_async
async def test_the_window_is_per_device(party, watch, clock, every):
    every(10)
    await osmand_post(party.bo_key, 45.3)
    assert friend_names(await answer_of(party.ana_key, T)) == ["Bo"]
    assert friend_names(await answer_of(party.bo_key, T)) == ["Ana"]  # Bo's first
    assert await answer_of(party.ana_key, T + 1) == []


@db_async
async def test_with_a_window_of_zero_every_post_gets_the_friends(party, watch, clock,
                                                                 every):
    every(0)
    await osmand_post(party.bo_key, 45.3)
    for tst in (T, T + 1, T + 2):
        assert friend_names(await answer_of(party.ana_key, tst)) == ["Bo"]
    assert len(friends.throttle) == 0  # nothing remembered


def test_the_throttle_remembers_a_bounded_number_of_devices():
    throttle = friends.FriendsThrottle(max_devices=3)
    fake = Clock()
    throttle.clock = fake
    for device in (1, 2, 3):
        throttle.sent(device)
        fake.advance(1)
    throttle.sent(1)  # sent again: now the newest
    throttle.sent(4)  # over the bound: 2, the oldest, goes
    assert len(throttle) == 3
    assert throttle.due(2, 10)  # forgotten: due, as on a first post
    assert not throttle.due(1, 10) and not throttle.due(3, 10)
    assert not throttle.due(4, 10)
    assert throttle.due(4, 0)


# -- the room's answer, kept -------------------------------------------------------------


@db_async
async def test_the_caller_never_sees_itself(party, watch, clock, every):
    every(0)
    await osmand_post(party.bo_key, 45.3)
    await answer_of(party.ana_key, T)
    loads = friends.rooms.loads
    ana = await answer_of(party.ana_key, T + 1)
    bo = await answer_of(party.bo_key, T + 1)
    assert friend_names(ana) == ["Bo"] and friend_names(bo) == ["Ana"]
    assert {m["tid"] for m in ana} == {f"BO{party.bo.pk}"}
    assert {m["tid"] for m in bo} == {f"AN{party.ana.pk}"}
    assert friends.rooms.loads == loads  # both from the one kept answer


@db_async
async def test_a_friends_newer_position_shows_after_the_keeping_time(party, watch, clock,
                                                                     every):
    every(0)
    await osmand_post(party.bo_key, 45.3)
    assert friend_lats(await answer_of(party.ana_key)) == [45.3]
    await osmand_post(party.bo_key, 45.4, tst=T + 5)
    clock.advance(0.5)
    assert friend_lats(await answer_of(party.ana_key)) == [45.3]  # kept
    clock.advance(0.5)
    answer = await answer_of(party.ana_key)
    assert friend_lats(answer) == [45.4]
    assert [m["tst"] for m in answer if m["_type"] == "location"] == [T + 5]


@db_async
async def test_a_member_who_stops_sharing_is_gone_from_the_next_answer(party, watch,
                                                                       clock, every):
    every(0)
    await osmand_post(party.bo_key, 45.3)
    assert friend_names(await answer_of(party.ana_key)) == ["Bo"]
    await amember_stop_sharing(ref=member_ref(await member(party.bo_key)))
    assert await answer_of(party.ana_key) == []  # inside the second it is kept


@db_async
async def test_a_removed_member_is_gone_from_the_next_answer(party, watch, clock, every):
    every(0)
    await osmand_post(party.bo_key, 45.3)
    assert friend_names(await answer_of(party.ana_key)) == ["Bo"]
    bo = await Member.objects.aget(pk=party.bo.pk)
    await database_sync_to_async(member_remove)(member=bo)
    assert await answer_of(party.ana_key) == []


@db_async
async def test_another_process_announcing_a_change_forgets_the_room(party, watch, clock,
                                                                    every):
    every(0)
    await osmand_post(party.bo_key, 45.3)
    await osmand_post(party.ana_key, 45.2)
    await friends.rooms.get(party.room.pk)
    # Another process stopped Bo's share: its database write, then its announcement.
    await Member.objects.filter(pk=party.bo.pk).aupdate(share=Share.ENDED)
    keycache.forget({"type": "keys.forget", "room": party.room.pk,
                     "member": party.ana.pk + 1000})  # not in the answer: kept
    assert friend_names(await answer_of(party.ana_key)) == ["Bo"]
    keycache.forget({"type": "keys.forget", "room": party.room.pk, "member": party.bo.pk})
    assert await answer_of(party.ana_key) == []


@db_async
async def test_a_member_joining_leaves_the_kept_answer_alone(party, watch, clock, every):
    every(0)
    await osmand_post(party.bo_key, 45.3)
    await friends.rooms.get(party.room.pk)
    loads = friends.rooms.loads
    # A phone starting its share is not in the answer yet: it shows with the next load.
    await osmand_post(party.ana_key, 45.2)
    await friends.rooms.get(party.room.pk)
    assert friends.rooms.loads == loads
    clock.advance(1)
    assert friend_names(await answer_of(party.bo_key)) == ["Ana"]


@db_async
async def test_a_load_that_raced_a_change_of_its_member_is_used_by_nobody(
        party, watch, clock, monkeypatch):
    await osmand_post(party.bo_key, 45.3)
    real = friends.room_entry
    raced = []

    def load_then_change(room_pk, started, keep_s):
        entry = real(room_pk, started, keep_s)
        if not raced:  # Bo stops while the first load is on its way back
            raced.append(entry)
            Member.objects.filter(pk=party.bo.pk).update(share=Share.ENDED)
            friends.room_changed(room_pk, party.bo.pk)
        return entry

    monkeypatch.setattr(friends, "room_entry", load_then_change)
    loads = friends.rooms.loads
    entry = await friends.rooms.get(party.room.pk)
    assert raced[0].members == (party.bo.pk,)
    assert entry.members == ()
    assert friends.rooms.loads == loads + 2


@db_async
async def test_requests_for_a_room_being_loaded_share_one_load(party, watch, clock):
    await osmand_post(party.bo_key, 45.3)
    loads = friends.rooms.loads
    entries = await asyncio.gather(*[friends.rooms.get(party.room.pk) for _ in range(5)])
    assert friends.rooms.loads == loads + 1
    assert all(entry is entries[0] for entry in entries)


@db_async
async def test_a_failed_load_fails_its_requests_and_is_not_kept(party, watch, clock,
                                                                 monkeypatch):
    await osmand_post(party.bo_key, 45.3)
    real = friends.room_entry
    calls = []

    def broken(room_pk, started, keep_s):
        calls.append(room_pk)
        if len(calls) == 1:
            raise RuntimeError("database away")
        return real(room_pk, started, keep_s)

    monkeypatch.setattr(friends, "room_entry", broken)
    results = await asyncio.gather(*[friends.rooms.get(party.room.pk) for _ in range(3)],
                                   return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError] * 3
    assert (await friends.rooms.get(party.room.pk)).members == (party.bo.pk,)
    assert len(calls) == 2


@db_async
async def test_a_timed_share_ending_before_the_keeping_time_ends_the_kept_answer(party, watch):
    await osmand_post(party.bo_key, 45.3)
    soon = timezone.now() + timedelta(seconds=30)
    await Member.objects.filter(pk=party.bo.pk).aupdate(sharing_until=soon)
    # Kept for up to 60 s from 100.0, but Bo's share ends within 30.
    entry = await database_sync_to_async(friends.room_entry)(party.room.pk, 100.0, 60.0)
    assert entry.members == (party.bo.pk,)
    assert 100.0 + 20 < entry.expires <= 100.0 + 30


def test_a_full_cache_drops_expired_rooms_first():
    rooms = friends.RoomFriends(max_rooms=2)
    rooms.clock = Clock()
    old = friends.RoomEntry(members=(), pieces=(), expires=rooms.clock() - 1)
    new = friends.RoomEntry(members=(), pieces=(), expires=rooms.clock() + 1)
    assert rooms._put(1, new, rooms.generation)
    assert rooms._put(2, old, rooms.generation)
    assert rooms._put(3, new, rooms.generation)
    assert set(rooms._entries) == {1, 3}


@db_async
async def test_a_live_only_room_answers_its_friends_too(party, watch, clock):
    # A live-only room keeps no history, but each member's last position all the same.
    await Room.objects.filter(pk=party.room.pk).aupdate(retention_days=0)
    await osmand_post(party.bo_key, 45.3)
    assert await stored(party.bo) == []
    assert friend_lats(await answer_of(party.ana_key)) == [45.3]


# -- the answer's form -------------------------------------------------------------------


@db_async
async def test_an_encrypted_device_gets_its_friends_and_its_empty_answers_encrypted(
        party, watch, clock, every):
    every(10)
    device = await party.ana.devices.aget()
    await database_sync_to_async(device_set_secret)(device=device, secret="s3cret")
    await osmand_post(party.bo_key, 45.3)
    box = nacl.secret.SecretBox(b"s3cret".ljust(32, b"\0"))

    def unseal(answer):
        assert set(answer) == {"_type", "data"} and answer["_type"] == "encrypted"
        return json.loads(box.decrypt(base64.b64decode(answer["data"])))

    first = unseal(await answer_of(party.ana_key))
    assert friend_names(first) == ["Bo"] and friend_lats(first) == [45.3]
    assert unseal(await answer_of(party.ana_key, T + 1)) == []


def test_pieces_join_into_the_answer_messages_make():
    class Position:
        lat, lon, accuracy, altitude, speed, heading, battery = (
            45.3, 13.8, 12.6, None, 10.0, 45.4, None)
        device_time = timezone.now()

    from maps.ingest import owntracks

    messages = [*owntracks.friend_messages(2, "Bo", Position),
                *owntracks.friend_messages(3, "Cene", Position)]
    pieces = [owntracks.friend_piece(2, "Bo", Position),
              owntracks.friend_piece(3, "Cene", Position)]
    assert owntracks.answer_of(pieces) == owntracks.answer(messages)
    assert owntracks.answer_of([]) == owntracks.answer([]) == b"[]"
