"""The management commands, as a script would call them."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from maps.models import Member, Role, Room, hash_key

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_createroom_prints_room_and_invite_url():
    data = json.loads(run("createroom", "Hike", "--json"))
    room = Room.objects.get(public_id=data["room"])
    assert room.name == "Hike"
    assert data["invite_url"] == f"http://127.0.0.1:8000{room.invites.get().path()}"
    text = run("createroom", "Other")
    assert "room: " in text and "/join/" in text


def test_addmember_prints_key_once_and_stores_only_its_hash():
    room = json.loads(run("createroom", "Hike", "--json"))["room"]
    data = json.loads(run("addmember", room, "Ana", "--role", "viewer", "--json"))
    member = Member.objects.get(pk=data["member"])
    assert member.role == Role.VIEWER and member.name == "Ana"
    (device,) = member.devices.all()
    assert device.name == "Phone"
    assert device.key_hash == hash_key(data["key"]) and data["key"] not in device.key_hash
    assert len(data["key"]) == 26  # 130 bits from a 32-symbol alphabet


def test_addmember_unknown_room_fails():
    with pytest.raises(CommandError):
        run("addmember", "nope", "Ana")


def test_replay_gpx_refuses_a_viewer_and_a_bad_speed(tmp_path):
    room = json.loads(run("createroom", "Hike", "--json"))["room"]
    run("addmember", room, "Vera", "--role", "viewer")
    gpx = tmp_path / "t.gpx"
    gpx.write_text('<gpx version="1.1" creator="t"><trk><trkseg>'
                   '<trkpt lat="1" lon="2"></trkpt></trkseg></trk></gpx>')
    with pytest.raises(CommandError, match="viewer"):
        run("replay_gpx", room, str(gpx), "--member", "Vera")
    with pytest.raises(CommandError, match="speed"):
        run("replay_gpx", room, str(gpx), "--member", "Ana", "--speed", "0")


def test_generated_ids_never_start_with_a_dash(monkeypatch):
    # token_urlsafe can start with "-", which argparse would take for an option.
    import secrets

    from maps import models

    draws = iter(["-leading", "_fine"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(draws))
    assert models.new_room_id() == "_fine"


def test_addmember_refuses_a_name_taken_in_the_room():
    room = json.loads(run("createroom", "Hike", "--owner", "Olga", "--json"))["room"]
    with pytest.raises(CommandError, match="already called"):
        run("addmember", room, "OLGA")
    assert Member.objects.filter(room__public_id=room).count() == 1
