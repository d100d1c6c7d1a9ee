"""Who may see and do what; keeping little; abuse. In-process tests."""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from maps.access import limits
from maps.domain.fixes import Fix, InvalidFix, fix_from_frame
from maps.models import Member, Position, Room
from maps.services import (
    invite_create,
    member_create,
    member_remove,
    positions_prune,
    room_create,
    room_delete,
)
from maps.storage.history import history_writer
from maps.telemetry.logging import redact
from tests.conftest import about, position_of
from tests.servers import ROOT, Project

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = {"type": "position", "lat": 46.05, "lon": 14.5, "accuracy": 8, "ts": 1763700000000}


# -- who may see and do what ---------------------------------------------------------


async def test_member_moves_only_their_own_marker(room, member, member_key, other, other_key,
                                                 connect):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    # A "member" field in the frame is ignored: the connection decides who moves.
    await sender.send({**SAMPLE, "member": other.pk})
    frame = await watcher.receive_type("positions")
    assert [p["member"] for p in frame["positions"]] == [member.pk]


async def test_nothing_crosses_rooms(room, member_key, stranger_and_key, connect):
    stranger, stranger_key = stranger_and_key
    elsewhere = await database_sync_to_async(lambda: stranger.room)()
    sender = await connect(room, key=member_key)
    outsider = await connect(elsewhere, key=stranger_key)
    await sender.send(SAMPLE)
    await sender.receive_type("positions")
    # Proved by a later position in the outsider's own room: a frame of the other room
    # would have been queued to the outsider's socket before it.
    await outsider.send(SAMPLE)
    frames = await outsider.frames_until(position_of(stranger.pk))
    shown = [f for f in frames if f["type"] in ("positions", "stopped", "removed")]
    assert shown == [frames[-1]]
    assert [p["member"] for p in frames[-1]["positions"]] == [stranger.pk]


async def test_erase_leaves_no_position_behind(room, member, member_key, other_key, connect):
    sender = await connect(room, key=member_key)
    await sender.send(SAMPLE)
    await sender.receive_type("positions")
    await history_writer().flush()
    await sender.send({**SAMPLE, "ts": SAMPLE["ts"] + 1})  # still buffered when erased
    await sender.receive_type("positions")
    member_id = member.pk
    await database_sync_to_async(member_remove)(member=member)
    await history_writer().flush()
    assert not await database_sync_to_async(
        Position.objects.filter(member_id=member_id).exists)()
    late = await connect(room, key=other_key)
    assert late.snapshot["positions"] == []


async def test_deleting_room_closes_sockets_and_keeps_nothing(room, member_key, connect):
    client = await connect(room, key=member_key)
    await client.send(SAMPLE)
    await client.receive_type("positions")
    await history_writer().flush()
    await database_sync_to_async(room_delete)(room=room)
    assert await client.close_code() == 4404
    assert await database_sync_to_async(Position.objects.count)() == 0
    assert await database_sync_to_async(Member.objects.filter(room_id=room.pk).count)() == 0


def test_leave_button_erases_member(client, room, member):
    session = client.session
    session["members"] = {room.public_id: member.pk}
    session.save()
    Position.objects.create(member=member, lat=1, lon=2, device_time=timezone.now(),
                            received=timezone.now())
    response = client.post(f"/r/{room.public_id}/leave/")
    assert response.status_code == 302
    assert not Member.objects.filter(pk=member.pk).exists()
    assert Position.objects.count() == 0
    assert client.get(f"/r/{room.public_id}/").status_code == 403


# -- keeping little ------------------------------------------------------------------


def test_prune_deletes_only_what_retention_lets_go(room, member):
    now = timezone.now()
    for age_days in (1, 6, 8, 30):
        Position.objects.create(member=member, lat=1, lon=2,
                                device_time=now - timedelta(days=age_days),
                                received=now - timedelta(days=age_days))
    assert positions_prune(now=now) == 2
    ages = sorted((now - p.received).days for p in Position.objects.all())
    assert ages == [1, 6]


def test_prune_takes_each_rooms_own_retention_and_tells_only_rooms_it_changed(
        room, member, stranger_and_key, monkeypatch):
    """Rooms are pruned together by retention; each keeps what its own allows, and
    only a room that had a live position past its retention hears ``room.retention``."""
    from maps import services
    from maps.models import LivePosition
    from maps.services import publish

    stranger, _key = stranger_and_key
    Room.objects.filter(pk=stranger.room_id).update(retention_days=30)
    quiet = services.room_create(name="Quiet", owner_name="Q")[0]
    now = timezone.now()
    for who in (member, stranger):
        for age_days in (6, 8, 31):
            Position.objects.create(member=who, lat=1, lon=2,
                                    device_time=now - timedelta(days=age_days),
                                    received=now - timedelta(days=age_days))
    old = now - timedelta(days=8)
    LivePosition.objects.create(member=member, lat=1, lon=2, device_time=old, received=old)
    told = []
    monkeypatch.setattr(publish, "room_event_on_commit",
                        lambda room_pk, message: told.append((room_pk, message["type"])))
    assert positions_prune(now=now) == 3  # 8 and 31 days in 7; 31 days in 30
    left = sorted((p.member_id, (now - p.received).days) for p in Position.objects.all())
    assert left == sorted([(member.pk, 6), (stranger.pk, 6), (stranger.pk, 8)])
    assert not LivePosition.objects.filter(member=member).exists()
    assert told == [(room.pk, "room.retention")]
    assert quiet.pk not in [pk for pk, _ in told]


def test_prune_command_runs_from_cron(tmp_path):
    project = Project(tmp_path).migrate()
    assert project.manage("prune").strip() == "deleted 0 positions"


async def test_live_only_room_keeps_no_history(hubs, connect):
    room, _ = await database_sync_to_async(room_create)(
        name="Live", owner_name="O", retention_days=0)
    from maps.services import member_create

    _, key = await database_sync_to_async(member_create)(room=room, name="Ana")
    client = await connect(room, key=key)
    await client.send(SAMPLE)
    await client.receive_type("positions")
    await history_writer().flush()
    assert await database_sync_to_async(Position.objects.count)() == 0


# -- abuse -----------------------------------------------------------------------------


async def test_frame_over_64_kib_is_refused(room, member_key, connect):
    client = await connect(room, key=member_key)
    await client.send_text(json.dumps({**SAMPLE, "pad": "x" * 70_000}))
    assert (await client.receive_type("error"))["code"] == "too_large"


async def test_a_member_past_the_position_budget_is_refused_on_every_door(
    room, member, member_key, other_key, connect, settings, async_client, monkeypatch
):
    # The limiter counts in windows aligned to its clock (maps.access.limits): a window
    # that ended in the middle of the test would start the budget afresh. The clock
    # stands still at the start of an hour's window, so one window holds the whole test.
    settings.GEOSHARE = {**settings.GEOSHARE, "RATE_LIMITS": {
        **settings.GEOSHARE["RATE_LIMITS"], "positions": (30, 3600)}}
    monkeypatch.setattr(limits, "clock", lambda: 3600 * 490_000 + 1.0)
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    for i in range(45):
        await sender.send({**SAMPLE, "ts": SAMPLE["ts"] + i})
    refusal = await sender.receive_type("error")
    assert refusal["code"] == "rate_limited"
    assert 0 < refusal["retry_after_ms"] <= 3_600_000
    assert "30 positions per 3600 s" in refusal["detail"]
    newest = 0
    while newest != SAMPLE["ts"] + 29:
        frame = await watcher.receive_type("positions")
        newest = frame["positions"][-1]["ts"]
    assert await watcher.nothing(0.3)  # the rest refused, not shown
    # The budget is the member's, not the socket's: a phone door is refused too.
    response = await async_client.get(f"/ingest/gpslogger/{member_key}/",
                                      {"lat": "1", "lon": "1"})
    assert response.status_code == 429 and "Retry-After" in response.headers
    await history_writer().flush()
    stored = await database_sync_to_async(Position.objects.filter(member=member).count)()
    assert stored == 30


@pytest.mark.parametrize("frame", [{"type": "stop"}, {"type": "ping"}, {"type": "nope"},
                                   {"type": "position", "lat": 99, "lon": 0}])
async def test_every_kind_of_frame_counts_toward_the_flood_limit(
    room, member_key, connect, frame
):
    sender = await connect(room, key=member_key)
    for _ in range(settings.GEOSHARE["FLOOD_PER_S"] + 1):
        await sender.send(frame)
    assert await sender.close_code(timeout=5) == 4429


async def test_wrong_keys_from_one_address_get_4429(room, member_key, connect):
    allowed, _ = settings.GEOSHARE["RATE_LIMITS"]["badkey"]
    for _ in range(allowed + 1):
        client = await connect(room, key="wrong-key", expect_snapshot=False)
        assert await client.close_code() in (4401, 4429)
    client = await connect(room, key="another-wrong-key", expect_snapshot=False)
    assert await client.close_code() == 4429
    # Failures from an address never lock out a key that is right.
    client = await connect(room, key=member_key)
    assert client.snapshot["type"] == "snapshot"


def test_invite_redemption_is_rate_limited(client, room):
    allowed, _ = settings.GEOSHARE["RATE_LIMITS"]["redeem"]
    invite = invite_create(room=room)
    statuses = [client.post(f"/join/guess{i}/", {"name": "x"}).status_code
                for i in range(allowed + 1)]
    assert statuses[:allowed] == [404] * allowed and statuses[-1] == 429
    assert client.post(invite.path(), {"name": "Ana"}).status_code == 429


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/ingest/owntracks/?key=wrong"),
     ("get", "/ingest/osmand/?id=wrong&lat=1&lon=2"),
     ("get", "/ingest/gpslogger/wrong/?lat=1&lon=2")],
)
def test_wrong_device_keys_over_http_get_429(client, room, member_key, method, path):
    allowed, _ = settings.GEOSHARE["RATE_LIMITS"]["badkey"]
    statuses = [getattr(client, method)(path).status_code for _ in range(allowed + 2)]
    assert 429 not in statuses[:allowed] and statuses[-1] == 429
    good = path.replace("wrong", member_key)
    extra = {"data": b"", "content_type": "application/json"} if method == "post" else {}
    assert getattr(client, method)(good, **extra).status_code == 200


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", "null", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
     '{"type": "position", "lat": NaN, "lon": 1}', '{"type": "position", "lat": 1e999, "lon": 1}',
     '{"type": "position", "lat": 90.0000001, "lon": 1}', '{"type": "position", "lat": 1, "lon": -180.5}',
     '{"type": "position", "lat": "46", "lon": "14"}', '{"type": "position", "lat": true, "lon": false}',
     json.dumps({"type": "position", "lat": 1, "lon": 1, "accuracy": "x" * 60_000}),
     '{"type": "teleport"}', '{"type": "position"}', "[" * 100_000],
)
async def test_hostile_frames_change_nothing_and_replies_are_strict_json(
    room, member_key, other_key, connect, text
):
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    await sender.send_text(text)
    while True:
        reply = await sender.communicator.receive_output(2)
        frame = orjson.loads(reply["text"])  # orjson accepts strict JSON only
        if frame["type"] not in ("presence", "places"):
            break
    assert frame["type"] == "error"
    # Proved by a later position of the watcher, which the hub hears after the frame.
    await watcher.send(SAMPLE)
    frames = await watcher.frames_until(position_of(watcher.snapshot["you"]))
    assert about(frames, sender.snapshot["you"]) == []
    await history_writer().flush()
    stored = await database_sync_to_async(
        lambda: list(Position.objects.values_list("member_id", flat=True)))()
    assert stored == [watcher.snapshot["you"]]  # the later one only


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
frames = st.fixed_dictionaries(
    {"type": st.just("position")},
    optional={k: json_values for k in
              ("lat", "lon", "accuracy", "altitude", "speed", "heading", "battery", "ts")},
)


@given(frame=frames)
@hsettings(max_examples=500, deadline=None)
def test_validator_accepts_only_valid_fixes(frame):
    try:
        fix = fix_from_frame(frame)
    except InvalidFix as exc:
        assert exc.field in frame or exc.field in ("lat", "lon")
        return
    assert isinstance(fix, Fix)
    for name in ("lat", "lon", "accuracy", "altitude", "speed", "heading", "battery"):
        value = getattr(fix, name)
        assert value is None or (isinstance(value, float) and value == value
                                 and abs(value) != float("inf"))
    assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
    orjson.dumps(fix.to_wire(1, 1))  # encodable, strict


@given(items=st.lists(frames | json_values, min_size=1, max_size=15))
@hsettings(max_examples=25, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_generated_frames_never_break_the_consumer(room, member_key, connect, items):
    client = await connect(room, key=member_key)
    for item in items:
        try:
            text = json.dumps(item, allow_nan=True)
        except (TypeError, ValueError):
            continue
        await client.send_text(text)
    await client.send({"type": "ping"})
    async with asyncio.timeout(5):
        while True:
            reply = await client.communicator.receive_output(5)
            assert reply["type"] == "websocket.send"
            frame = orjson.loads(reply["text"])
            if frame["type"] == "pong":
                break
    await history_writer().flush()
    for position in await database_sync_to_async(list)(Position.objects.all()):
        assert -90 <= position.lat <= 90 and -180 <= position.lon <= 180
    await client.disconnect()


# -- secrets stay out of logs; production settings ---------------------------------------


def test_redaction_removes_keys_tokens_and_coordinates():
    line = ('127.0.0.1:5 - "WebSocket /ws/rooms/abc/?key=SECRETKEY123" [accepted] '
            '"GET /join/TOKEN123/ HTTP/1.1" "GET /ingest/gpslogger/KEY9/?lat=46.1&lon=14.2" '
            '"GET /ingest/osmand/?id=DEV1&lat=1&lon=2"')
    cleaned = redact(line)
    for secret in ("SECRETKEY123", "TOKEN123", "KEY9", "46.1", "14.2", "DEV1"):
        assert secret not in cleaned


def test_production_settings_pass_check_deploy_and_refuse_wildcard_hosts():
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 60 + "y!z$%",
           "ALLOWED_HOSTS": "maps.example.org", "DJANGO_SETTINGS_MODULE": "geoshare.settings"}
    deploy = subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                             "--fail-level", "WARNING"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    cookies = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import "
         "settings as s; print(s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE, "
         "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert cookies.stdout.split() == ["True", "Lax", "True", "True"]
    wildcard = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT,
                              env={**env, "ALLOWED_HOSTS": "*"}, capture_output=True,
                              text=True)
    assert wildcard.returncode != 0 and "refused in production" in wildcard.stderr


def test_session_cookie_is_httponly_and_lax(client):
    response = client.post("/", {"name": "R", "your_name": "O"})
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"


def test_device_keys_are_stored_only_as_hashes(room):
    from maps.models import Device

    member, key = member_create(room=room, name="Kim")
    fields = {f.name for f in Device._meta.get_fields()}
    assert "key" not in fields and "key_hash" in fields
    assert "key_hash" not in {f.name for f in Member._meta.get_fields()}
    stored = Device.objects.filter(member=member).values().get()
    assert key not in [str(v) for v in stored.values()]
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
