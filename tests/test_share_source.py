"""One source per share (issue 25, items 12 and 13): the device or browser that started a
share is the only one whose positions it shows; another browser takes over only when
asked; a stop comes from any of the member's browsers."""

from importlib import import_module

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from maps.domain import policy, sources
from maps.models import Member, Position
from maps.protocol.events import check_frame
from maps.storage.history import history_writer
from tests.conftest import Client

pytestmark = pytest.mark.django_db(transaction=True)

LAPTOP_UA = (b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             b"Chrome/131.0.0.0 Safari/537.36")
PHONE_UA = (b"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
            b"Gecko) Chrome/131.0.0.0 Mobile Safari/537.36")
LAPTOP = {"type": "position", "lat": 52.5, "lon": 13.3}
PHONE = {"lat": "52.53", "lon": "13.38"}


# -- the rule, pure ----------------------------------------------------------------------


def test_a_running_share_takes_positions_from_its_source_only():
    laptop, phone = "browser:laptop-0001", sources.device_source(7)
    assert policy.share_gate("on", laptop, laptop) == "publish"
    assert policy.share_gate("on", phone, laptop) == "other_source"
    assert policy.share_gate("on", laptop, phone) == "other_source"
    # Not recorded (a share from before sources were kept): the first position claims it.
    assert policy.share_gate("on", phone, "") == "claim"
    # "My phone apps": a phone claims it, a browser does not.
    assert policy.share_gate("on", phone, sources.ANY_DEVICE) == "claim"
    assert policy.share_gate("on", laptop, sources.ANY_DEVICE) == "other_source"
    assert policy.share_gate("off", phone, "") == "start"
    assert policy.share_gate("ended", laptop, laptop) == "refuse"


def test_only_an_explicit_take_over_moves_a_running_share():
    a, b = "browser:aaaaaaaa", "browser:bbbbbbbb"
    assert policy.may_take_share("on", a, a, take_over=False)
    assert not policy.may_take_share("on", b, a, take_over=False)
    assert policy.may_take_share("on", b, a, take_over=True)
    assert policy.may_take_share("ended", b, a, take_over=False)
    assert policy.may_take_share("on", b, "", take_over=False)


def test_browser_labels_name_the_browser_and_system_and_ids_are_checked():
    assert sources.browser_label(LAPTOP_UA.decode()) == "Chrome · Linux"
    assert sources.browser_label(PHONE_UA.decode()) == "Chrome · Android"
    assert sources.browser_label("") == "Browser"
    assert sources.browser_source("abcdefgh") == "browser:abcdefgh"
    with pytest.raises(ValueError):
        sources.browser_source("no spaces allowed")


# -- the doors ---------------------------------------------------------------------------


def session_for(room, member):
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store["members"] = {room.public_id: member.pk}
    store.save()
    return store.session_key


@pytest.fixture
async def browse(hubs):
    """Open a browser's socket: ``await browse(room, member, "laptop01", agent)``."""
    clients = []

    async def open_browser(room, member, browser_id, agent=LAPTOP_UA):
        session = await database_sync_to_async(session_for)(room, member)
        cookie = f"{settings.SESSION_COOKIE_NAME}={session}".encode()
        client = Client(f"/ws/rooms/{room.public_id}/?browser={browser_id}",
                        headers=[(b"cookie", cookie), (b"origin", b"http://127.0.0.1"),
                                 (b"host", b"127.0.0.1"), (b"user-agent", agent)])
        clients.append(client)
        connected, _ = await client.connect()
        assert connected
        client.snapshot = await client.receive_type("snapshot")
        return client

    yield open_browser
    for client in clients:
        try:
            await client.disconnect()
        except Exception:
            pass


async def latest_member(client, member_id, source=lambda source: True):
    """The member of the next presence frame that shows ``member_id`` sharing (from a
    source for which ``source(source)`` is true), checked against the documented shape.
    Presence frames of members coming online come first: they are skipped."""
    while True:
        frame = await client.receive_type("presence")
        check_frame(frame)
        member = frame["member"]
        if (member["id"] == member_id and member["sharing"]
                and source(member["source"])):
            return member


async def stored_lats(member):
    await history_writer().flush()
    return await database_sync_to_async(list)(
        Position.objects.filter(member=member).order_by("id").values_list("lat", flat=True))


async def test_a_second_browser_neither_moves_the_marker_nor_takes_the_share(
        room, member, other_key, browse, connect):
    watcher = await connect(room, key=other_key)
    laptop = await browse(room, member, "laptop-0001")
    phone_browser = await browse(room, member, "phonebrowser-02", PHONE_UA)
    await laptop.send({"type": "share", "until": None})
    shown = await latest_member(watcher, member.pk)
    assert (shown["sharing"], shown["source"], shown["source_name"]) == (
        True, "browser:laptop-0001", "Chrome · Linux")
    await laptop.send(LAPTOP)
    assert (await watcher.receive_type("positions"))["positions"][0]["lat"] == 52.5
    # The second browser's position is refused, naming the laptop.
    await phone_browser.send({**LAPTOP, "lat": 52.53, "lon": 13.38})
    refusal = await phone_browser.receive_type("error")
    check_frame(refusal)
    assert refusal["code"] == "not_the_source"
    assert "Chrome · Linux" in refusal["detail"]
    # ... and a share frame without take_over too.
    await phone_browser.send({"type": "share", "until": None})
    assert (await phone_browser.receive_type("error"))["code"] == "not_the_source"
    # The marker never went to 52.53: the laptop's next position is the next one shown.
    await laptop.send({**LAPTOP, "lat": 52.501})
    assert [p["lat"] for p in (await watcher.receive_type("positions"))["positions"]] == [
        52.501]
    assert await stored_lats(member) == [52.5, 52.501]
    db = await database_sync_to_async(Member.objects.get)(pk=member.pk)
    assert (db.share_source, db.share_source_name) == ("browser:laptop-0001",
                                                       "Chrome · Linux")


async def test_share_from_here_instead_moves_the_share_to_this_browser(
        room, member, other_key, browse, connect):
    watcher = await connect(room, key=other_key)
    laptop = await browse(room, member, "laptop-0001")
    phone_browser = await browse(room, member, "phonebrowser-02", PHONE_UA)
    await laptop.send({"type": "share", "until": None})
    await latest_member(watcher, member.pk)
    await phone_browser.send({"type": "share", "until": None, "take_over": True})
    shown = await latest_member(watcher, member.pk,
                                lambda source: source.startswith("browser:phone"))
    assert (shown["source"], shown["source_name"]) == ("browser:phonebrowser-02",
                                                       "Chrome · Android")
    await laptop.send(LAPTOP)
    assert (await laptop.receive_type("error"))["code"] == "not_the_source"
    await phone_browser.send({**LAPTOP, "lat": 52.53})
    assert (await watcher.receive_type("positions"))["positions"][0]["lat"] == 52.53
    assert await stored_lats(member) == [52.53]


async def test_a_phone_app_while_a_browser_shares_is_answered_but_not_shown(
        room, member, member_key, other_key, browse, connect, async_client):
    watcher = await connect(room, key=other_key)
    laptop = await browse(room, member, "laptop-0001")
    await laptop.send({"type": "share", "until": None})
    await laptop.send(LAPTOP)
    await watcher.receive_type("positions")
    response = await async_client.get("/ingest/osmand/", {"id": member_key, **PHONE})
    assert response.status_code == 200
    await laptop.send({**LAPTOP, "lat": 52.501})
    assert [p["lat"] for p in (await watcher.receive_type("positions"))["positions"]] == [
        52.501]
    assert await stored_lats(member) == [52.5, 52.501]


async def test_a_phone_apps_share_keeps_a_browser_opened_later_out(
        room, member, member_key, other_key, browse, connect, async_client):
    watcher = await connect(room, key=other_key)
    response = await async_client.get("/ingest/osmand/", {"id": member_key, **PHONE})
    assert response.status_code == 200
    shown = await latest_member(watcher, member.pk)
    assert shown["source_name"] == "Phone"
    assert shown["source"].startswith("device:")
    await watcher.receive_type("positions")
    laptop = await browse(room, member, "laptop-0001")
    assert {m["id"]: m for m in laptop.snapshot["members"]}[member.pk]["source_name"] == (
        "Phone")
    await laptop.send(LAPTOP)
    refusal = await laptop.receive_type("error")
    assert refusal["code"] == "not_the_source"
    assert "Phone" in refusal["detail"]
    await watcher.handled()
    response = await async_client.get("/ingest/osmand/", {"id": member_key,
                                                           "lat": "52.531", "lon": "13.38"})
    assert [p["lat"] for p in (await watcher.receive_type("positions"))["positions"]] == [
        52.531]


async def test_any_browser_of_the_member_stops_a_share_it_is_not_the_source_of(
        room, member, member_key, other_key, browse, connect, async_client):
    watcher = await connect(room, key=other_key)
    response = await async_client.get("/ingest/osmand/", {"id": member_key, **PHONE})
    assert response.status_code == 200
    await watcher.receive_type("positions")
    laptop = await browse(room, member, "laptop-0001")
    await laptop.send({"type": "stop"})
    assert (await watcher.receive_type("stopped"))["member"] == member.pk
    db = await database_sync_to_async(Member.objects.get)(pk=member.pk)
    assert (db.share, db.share_source) == ("ended", "")


async def test_share_from_my_phone_apps_waits_for_a_phone_and_not_the_browser(
        room, member, member_key, other_key, browse, connect, async_client):
    watcher = await connect(room, key=other_key)
    laptop = await browse(room, member, "laptop-0001")
    await laptop.send({"type": "share", "until": None, "from": "phones"})
    shown = await latest_member(watcher, member.pk)
    assert (shown["sharing"], shown["source"], shown["source_name"]) == (
        True, "device:*", "")
    await laptop.send(LAPTOP)
    assert (await laptop.receive_type("error"))["code"] == "not_the_source"
    response = await async_client.get("/ingest/osmand/", {"id": member_key, **PHONE})
    assert response.status_code == 200
    shown = await latest_member(watcher, member.pk,
                                lambda source: source not in ("", "device:*"))
    assert (shown["source"].startswith("device:"), shown["source_name"]) == (True, "Phone")
    assert [p["lat"] for p in (await watcher.receive_type("positions"))["positions"]] == [
        52.53]
    await laptop.send({"type": "share", "until": None, "from": "elsewhere"})
    refusal = await laptop.receive_type("error")
    assert (refusal["code"], refusal["field"]) == ("invalid", "from")
