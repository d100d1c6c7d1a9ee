"""Shares with an end, watch-me links and the tutorial client (in process)."""

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from maps.access import identity
from maps.domain.fixes import now_ms
from maps.models import LivePosition, Member, Position, Share, WatchLink
from maps.protocol.events import check_watch_frame
from maps.services import shares_expire, watch_link_create, watch_link_revoke
from maps.storage.history import history_writer
from tests.conftest import Client, about, position_of
from tests.servers import until

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = {"type": "position", "lat": 46.05, "lon": 14.5, "accuracy": 8}


async def stored(member):
    await history_writer().flush()
    return await database_sync_to_async(Position.objects.filter(member=member).count)()


async def test_a_share_with_an_end_ends_for_everyone_and_refuses_after(
    room, member, member_key, other_key, connect, async_client
):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    end = now_ms() + 60_000
    await sender.send({"type": "share", "until": end})
    frame = await watcher.receive_type("presence")
    assert frame["member"]["sharing"] is True
    assert frame["member"]["sharing_until"] == end
    await sender.send(SAMPLE)
    assert (await watcher.receive_type("positions"))["positions"][0]["member"] == member.pk
    # The end moved up to a moment from now, then passes: every viewer is told,
    # without anyone doing anything.
    await sender.send({"type": "share", "until": now_ms() + 200})
    assert (await watcher.receive_type("stopped", timeout=5))["member"] == member.pk
    # Every read treats it as ended at once; the maintenance loop writes it down (the
    # hub never writes to the database).
    db_member = await database_sync_to_async(Member.objects.get)(pk=member.pk)
    assert db_member.share_state() == Share.ENDED
    assert await database_sync_to_async(shares_expire)() == 1
    db_member = await database_sync_to_async(Member.objects.get)(pk=member.pk)
    assert db_member.share == Share.ENDED
    assert not await database_sync_to_async(
        LivePosition.objects.filter(member=member).exists)()
    count = await stored(member)
    # Positions are refused over the WebSocket...
    await sender.send(SAMPLE)
    refusal = await sender.receive_type("error")
    assert refusal["code"] == "not_sharing"
    # ... and dropped, answered with success, from a phone.
    response = await async_client.get("/ingest/osmand/",
                                      {"id": member_key, "lat": "1", "lon": "2"})
    assert response.status_code == 200
    # Nothing of them shows: proved by a later position, the watcher's own.
    await watcher.send(SAMPLE)
    assert about(await watcher.frames_until(position_of(watcher.snapshot["you"])),
                 member.pk) == []
    assert await stored(member) == count
    # Turning sharing on again brings the marker back.
    await sender.send({"type": "share", "until": None})
    await sender.send(SAMPLE)
    (position,) = (await watcher.receive_type("positions"))["positions"]
    assert position["member"] == member.pk


async def test_the_hub_ends_a_share_by_its_own_clock(
    room, member, member_key, other_key, connect, hubs
):
    """The hub's clock (RoomHub.clock) decides when a share ends, so a test can move it."""
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    hub = hubs.get(room.pk)
    end = now_ms() + 3_600_000
    await sender.send({"type": "share", "until": end})
    await sender.send(SAMPLE)
    await watcher.receive_type("positions")
    hub.clock = lambda: end / 1000 + 1  # a second past the end, an hour early
    await sender.send({"type": "share", "until": end - 1})  # the hub looks again
    assert (await watcher.receive_type("stopped"))["member"] == member.pk
    assert hub.state.next_share_end() is None


async def test_stop_ends_the_share_and_a_position_does_not_restart_it(
    room, member, member_key, other_key, connect
):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send(SAMPLE)  # never shared before: this starts an open-ended share
    await watcher.receive_type("positions")
    await sender.send({"type": "stop"})
    await watcher.receive_type("stopped")
    await sender.send(SAMPLE)
    assert (await sender.receive_type("error"))["code"] == "not_sharing"
    late = await connect(room, key=other_key)
    assert late.snapshot["positions"] == []
    mine = {m["id"]: m for m in late.snapshot["members"]}[member.pk]
    assert (mine["sharing"], mine["sharing_until"]) == (False, None)


@pytest.mark.parametrize("until", ["soon", 1.5, -1, True])
async def test_a_bad_share_end_is_refused_naming_the_field(room, member_key, connect, until):
    sender = await connect(room, key=member_key)
    await sender.send({"type": "share", "until": until})
    refusal = await sender.receive_type("error")
    assert (refusal["code"], refusal["field"]) == ("invalid", "until")


async def test_the_channels_tutorial_client_is_taken_as_a_position(
    room, member, member_key, other_key, connect
):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send({"latitude": 46.5, "longitude": 14.25})
    (position,) = (await watcher.receive_type("positions"))["positions"]
    assert (position["member"], position["lat"], position["lon"]) == (member.pk, 46.5, 14.25)


# -- watch-me links -------------------------------------------------------------------


async def open_watch(token):
    client = Client(f"/ws/watch/{token}/")
    connected, _ = await client.connect()
    assert connected
    return client


WATCH_SNAPSHOT_KEYS = {"type", "now", "stale_after_ms", "trail_ms", "member", "position"}
WATCH_MEMBER_KEYS = {"id", "sharing", "sharing_until"}
WATCH_POSITION_KEYS = {"member", "lat", "lon", "accuracy", "seen"}
PHONE_FIX = {**SAMPLE, "speed": 3.5, "altitude": 310.0, "heading": 90.0, "battery": 41.0,
             "charging": True}


async def test_a_watch_link_shows_one_member_and_nothing_else(
    room, member, member_key, other_key, connect
):
    # Issue 25, item 4: the frames carried the device's name, the member's id, battery,
    # charging, speed, altitude, and a stopped member's online and last-seen times.
    sender = await connect(room, key=member_key)  # the device "Phone"
    other = await connect(room, key=other_key)
    await sender.send({"type": "share", "until": None})
    await sender.send(PHONE_FIX)
    await other.send({**SAMPLE, "lat": 45.0})
    await other.receive_type("positions")
    _link, token = await database_sync_to_async(watch_link_create)(member=member,
                                                                   minutes=60)
    watch = await open_watch(token)
    snapshot = await watch.receive_type("snapshot")
    seen = [snapshot]
    assert set(snapshot) == WATCH_SNAPSHOT_KEYS
    assert snapshot["member"] == {"id": 1, "sharing": True, "sharing_until": None}
    assert set(snapshot["position"]) == WATCH_POSITION_KEYS
    assert snapshot["position"]["member"] == 1
    # The member comes online on a second socket, and goes: nothing a watcher sees
    # changes, so nothing is sent; proved by the next position being the next frame.
    second = Client(f"/ws/rooms/{room.public_id}/?key={member_key}")
    assert (await second.connect())[0]
    await second.disconnect()
    await other.send({**SAMPLE, "lat": 45.5})
    await sender.send({**PHONE_FIX, "lat": 46.1})
    frame = await watch.receive(timeout=2)
    seen.append(frame)
    assert frame["type"] == "positions"
    (position,) = frame["positions"]
    assert set(position) == WATCH_POSITION_KEYS
    assert (position["member"], position["lat"]) == (1, 46.1)
    # A stop: the marker goes, and the share is off; no online, no last seen.
    await sender.send({"type": "stop"})
    stopped = await watch.receive(timeout=2)
    share = await watch.receive(timeout=2)
    seen += [stopped, share]
    assert stopped == {"type": "stopped", "member": 1}
    assert share == {"type": "share",
                     "member": {"id": 1, "sharing": False, "sharing_until": None}}
    # Sharing again with an end: the watcher is told the end.
    end = now_ms() + 3_600_000
    await sender.send({"type": "share", "until": end})
    share = await watch.receive(timeout=2)
    seen.append(share)
    assert share == {"type": "share",
                     "member": {"id": 1, "sharing": True, "sharing_until": end}}
    for frame in seen:
        check_watch_frame(frame)
    text = json.dumps(seen)
    for word in ("Ski trip", "Ana", "Bo", "Phone", room.public_id, "battery",
                 "charging", "speed", "altitude", "heading", "device", "online",
                 "last_seen", "name", "role"):
        assert word not in text, word
    # A watcher may only watch.
    await watch.send(SAMPLE)
    assert (await watch.receive_type("error"))["code"] == "forbidden"
    await watch.disconnect()


async def test_a_revoked_watch_link_closes_with_4403_and_an_unknown_one_with_4404(
    room, member, member_key, connect
):
    await connect(room, key=member_key)
    link, token = await database_sync_to_async(watch_link_create)(member=member,
                                                                  minutes=60)
    watch = await open_watch(token)
    await watch.receive_type("snapshot")
    await database_sync_to_async(watch_link_revoke)(link=link)
    assert await watch.close_code() == 4403
    again = await open_watch(token)
    assert await again.close_code() == 4404
    nobody = await open_watch("x" * 32)
    assert await nobody.close_code() == 4404


async def test_a_watch_link_stops_at_its_expiry(room, member, member_key, connect):
    await connect(room, key=member_key)
    link, token = await database_sync_to_async(watch_link_create)(member=member,
                                                                  minutes=15)
    watch = await open_watch(token)
    await watch.receive_type("snapshot")
    # Fifteen minutes is the shortest a link lasts; move its end to now.
    await database_sync_to_async(
        WatchLink.objects.filter(pk=link.pk).update)(expires_at=link.created)
    again = await open_watch(token)
    assert await again.close_code() == 4404
    await watch.disconnect()


async def test_a_link_for_the_share_ends_with_the_share(room, member, member_key, connect):
    sender = await connect(room, key=member_key)
    await sender.send({"type": "share", "until": None})

    async def sharing():
        fresh = await database_sync_to_async(Member.objects.get)(pk=member.pk)
        return fresh if fresh.share == Share.ON else None

    fresh = await until(sharing)
    link, token = await database_sync_to_async(watch_link_create)(member=fresh)
    assert link.bound_to_share
    watch = await open_watch(token)
    await watch.receive_type("snapshot")
    await sender.send({"type": "stop"})
    assert await watch.close_code() == 4404


async def _share_for(sender, member, minutes):
    """Start a share of ``minutes`` from ``sender``'s socket; return the member's row."""
    await sender.send({"type": "share", "until": now_ms() + minutes * 60_000})
    await sender.handled()
    return await database_sync_to_async(Member.objects.get)(pk=member.pk)


async def test_a_link_until_my_share_ends_ends_when_a_timed_share_is_stopped(
    room, member, member_key, connect
):
    # Issue 25, item 1: a 15-minute share's link was stored with the share's end as a
    # fixed expiry, so stopping the share left it working.
    sender = await connect(room, key=member_key)
    fresh = await _share_for(sender, member, 15)
    link, token = await database_sync_to_async(watch_link_create)(member=fresh)
    assert link.bound_to_share
    watch = await open_watch(token)
    await watch.receive_type("snapshot")
    await sender.send({"type": "stop"})
    assert await watch.close_code() == 4404
    stored_link = await database_sync_to_async(WatchLink.objects.get)(pk=link.pk)
    assert stored_link.revoked
    # A new share does not bring it back.
    await _share_for(sender, member, 60)
    assert await database_sync_to_async(identity.watch_link)(token) is None
    again = await open_watch(token)
    assert await again.close_code() == 4404


async def test_a_link_until_my_share_ends_never_shows_the_next_share(
    room, member, member_key, connect
):
    # The share ends by its end time and, before anything writes that down, the member
    # shares again: the old link must not show the new share.
    sender = await connect(room, key=member_key)
    fresh = await _share_for(sender, member, 15)
    link, token = await database_sync_to_async(watch_link_create)(member=fresh)
    past = timezone.now() - timedelta(seconds=1)
    await database_sync_to_async(
        Member.objects.filter(pk=member.pk).update)(sharing_until=past)
    assert await database_sync_to_async(identity.watch_link)(token) is None
    await _share_for(sender, member, 60)
    assert await database_sync_to_async(identity.watch_link)(token) is None
    again = await open_watch(token)
    assert await again.close_code() == 4404
    # Changing the end of a running share keeps its links.
    fresh = await database_sync_to_async(Member.objects.get)(pk=member.pk)
    kept, kept_token = await database_sync_to_async(watch_link_create)(member=fresh)
    await _share_for(sender, member, 480)
    assert await database_sync_to_async(identity.watch_link)(kept_token) is not None


def test_a_link_until_my_share_ends_is_kept_at_most_seven_days(member):
    now = timezone.now()
    Member.objects.filter(pk=member.pk).update(share=Share.ON,
                                               sharing_until=now + timedelta(days=30))
    member.refresh_from_db()
    link, token = watch_link_create(member=member)
    assert link.bound_to_share
    assert link.expires_at <= now + timedelta(days=7, seconds=5)
    assert identity.watch_link(token) is not None
    assert not link.is_usable(now + timedelta(days=7, minutes=1))


def test_a_fixed_minute_link_shows_the_member_whenever_they_share_within_its_time(member):
    # The one rule for links of a number of minutes (README, docs/security.md): the
    # page works for its time, and shows the marker while the member shares.
    link, token = watch_link_create(member=member, minutes=60)
    assert not link.bound_to_share
    assert identity.watch_link(token) is not None  # not sharing: "not sharing right now"
    Member.objects.filter(pk=member.pk).update(share=Share.ON, sharing_until=None)
    assert identity.watch_link(token) is not None
    Member.objects.filter(pk=member.pk).update(share=Share.ENDED)
    assert identity.watch_link(token) is not None
    WatchLink.objects.filter(pk=link.pk).update(expires_at=timezone.now())
    assert identity.watch_link(token) is None


def test_the_panel_calls_a_link_for_a_timed_share_one_that_ends_with_it(
    client, room, member
):
    # It was listed as "Link until <time>", the share's end stored as a fixed expiry.
    session = client.session
    session["members"] = {room.public_id: member.pk}
    session.save()
    end = timezone.now() + timedelta(minutes=15)
    Member.objects.filter(pk=member.pk).update(share=Share.ON, sharing_until=end)
    url = f"/r/{room.public_id}/watch-links/"
    made = client.post(url, {"minutes": None}, content_type="application/json").json()
    assert made["ends_with_share"] is True
    assert made["expires"] == int(end.timestamp() * 1000)
    (listed,) = client.get(url).json()["links"]
    assert listed["ends_with_share"] is True
    # Stopped from anywhere (here: written down at its end): gone from the list.
    shares_expire(now=end)
    assert client.get(url).json()["links"] == []


def test_watch_links_from_the_map_page_are_made_listed_and_revoked(client, room, member):
    session = client.session
    session["members"] = {room.public_id: member.pk}
    session.save()
    url = f"/r/{room.public_id}/watch-links/"
    # No running share: "until my share ends" has nothing to end with.
    refused = client.post(url, {"minutes": None}, content_type="application/json")
    assert refused.status_code == 400 and refused.json()["field"] == "minutes"
    assert client.post(url, {"minutes": 5}, content_type="application/json").status_code == 400
    made = client.post(url, {"minutes": 60}, content_type="application/json")
    assert made.status_code == 201
    link = made.json()
    assert link["url"].startswith("http://testserver/w/") and link["expires"] > now_ms()
    page = client.get(link["url"].removeprefix("http://testserver"))
    assert page.status_code == 200 and page["Cache-Control"].startswith("max-age=0")
    assert b"Ski trip" not in page.content and b"Ana" not in page.content
    listed = client.get(url).json()["links"]
    assert [item["id"] for item in listed] == [link["id"]] and "url" not in listed[0]
    assert client.post(f"{url}{link['id']}/revoke/").status_code == 200
    assert client.get(url).json()["links"] == []
    assert client.get(link["url"].removeprefix("http://testserver")).status_code == 404


def test_sharelink_command_prints_a_url_and_its_expiry(room, member, capsys):
    call_command("sharelink", room.public_id, str(member.pk), "--minutes", "30", "--json")
    printed = json.loads(capsys.readouterr().out)
    assert "/w/" in printed["url"]
    assert 29 * 60_000 < printed["expires"] - now_ms() <= 30 * 60_000
