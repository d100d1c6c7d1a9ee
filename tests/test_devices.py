"""Several devices per member: own keys and names, revoked one by one (issue 11)."""

import re

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from maps.access import identity
from maps.models import KEY_ALPHABET, Device, Position, new_device_key
from maps.services import (
    MAX_DEVICES_PER_MEMBER,
    TooManyDevices,
    device_create,
    device_revoke,
    device_rotate_key,
    device_set_secret,
)
from maps.storage.history import history_writer
from tests.phone_payloads import T

db_async = pytest.mark.django_db(transaction=True)


def test_new_keys_can_be_read_aloud_and_carry_128_bits():
    keys = {new_device_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"[2-9a-km-np-z]{26}", key), key
        assert not set(key) & set("0O1lI")
    assert len(KEY_ALPHABET) == 32 and not set(KEY_ALPHABET) & set("0Oo1lIL")
    assert 26 * 5 >= 128


def test_each_device_key_finds_the_member_and_the_device(member, member_key):
    tablet, tablet_key = device_create(member=member, name="Tablet")
    phone = identity.key_member(member_key, "192.0.2.1")
    found = identity.key_member(tablet_key, "192.0.2.1")
    assert phone.pk == found.pk == member.pk
    assert found.device.pk == tablet.pk and found.device.name == "Tablet"
    assert phone.device.name == "Phone"
    assert found.room.public_id == member.room.public_id


def test_rotating_or_revoking_one_device_leaves_the_others(member, member_key):
    tablet, tablet_key = device_create(member=member, name="Tablet")
    car, car_key = device_create(member=member, name="Car tracker")
    new_tablet_key = device_rotate_key(device=tablet)
    assert identity.key_member(tablet_key, "192.0.2.1") is None
    assert identity.key_member(new_tablet_key, "192.0.2.1").device.pk == tablet.pk
    device_revoke(device=car)
    assert identity.key_member(car_key, "192.0.2.1") is None
    assert identity.key_member(member_key, "192.0.2.1").pk == member.pk
    assert [d.name for d in member.devices.all()] == ["Phone", "Tablet"]


def test_device_names_are_cleaned_and_counted(member):
    device, _ = device_create(member=member, name="  Car\u202e  tracker ")
    assert device.name == "Car tracker"
    with pytest.raises(ValueError):
        device_create(member=member, name=" \u200b ")
    for index in range(MAX_DEVICES_PER_MEMBER - 2):
        device_create(member=member, name=f"Spare {index}")
    with pytest.raises(TooManyDevices):
        device_create(member=member, name="One too many")


def test_owntracks_secret_is_at_most_32_bytes(member):
    device = member.devices.get()
    assert device_set_secret(device=device, secret=" s3cret ").secret == "s3cret"
    with pytest.raises(ValueError):
        device_set_secret(device=device, secret="é" * 17)  # 34 bytes
    assert Device.objects.get(pk=device.pk).secret == "s3cret"


# -- two devices of one member, live ---------------------------------------------------------


@db_async
async def test_two_devices_of_one_member_the_share_shows_only_the_one_that_started_it(
        room, member, member_key, viewer_key, connect):
    # One source per share (issue 25, item 12): the phone started the share; the
    # tablet's fixes are answered as usual (its queue must not jam) and dropped, even
    # newer ones, so that the marker does not jump between the two.
    tablet, tablet_key = await database_sync_to_async(device_create)(member=member,
                                                                     name="Tablet")
    viewer = await connect(room, key=viewer_key)
    client = AsyncClient()
    phone_fix = {"id": member_key, "lat": "45.1", "lon": "13.1", "timestamp": str(T + 60)}
    assert (await client.get("/ingest/osmand/", phone_fix)).status_code == 200
    frame = await viewer.receive_type("positions")
    assert [(p["member"], p["lat"]) for p in frame["positions"]] == [(member.pk, 45.1)]

    tablet_fix = {"id": tablet_key, "lat": "45.2", "lon": "13.2", "timestamp": str(T + 120)}
    assert (await client.get("/ingest/osmand/", tablet_fix)).status_code == 200
    phone_fix.update(lat="45.3", timestamp=str(T + 180))
    assert (await client.get("/ingest/osmand/", phone_fix)).status_code == 200
    frame = await viewer.receive_type("positions")
    assert [(p["member"], p["lat"]) for p in frame["positions"]] == [(member.pk, 45.3)]

    await history_writer().flush()
    rows = [p async for p in Position.objects.filter(member=member).order_by("device_time")]
    assert [r.lat for r in rows] == [45.1, 45.3]


@db_async
async def test_revoking_a_device_closes_only_its_sockets(room, member, member_key, connect):
    tablet, tablet_key = await database_sync_to_async(device_create)(member=member,
                                                                     name="Tablet")
    phone_socket = await connect(room, key=member_key)
    tablet_socket = await connect(room, key=tablet_key)
    await database_sync_to_async(device_revoke)(device=tablet)
    assert await tablet_socket.close_code() == 4401
    await phone_socket.send({"type": "ping"})
    assert (await phone_socket.receive_type("pong"))["type"] == "pong"


@db_async
async def test_rotating_a_device_key_closes_only_that_devices_sockets(
        room, member, member_key, connect):
    tablet, tablet_key = await database_sync_to_async(device_create)(member=member,
                                                                     name="Tablet")
    phone_socket = await connect(room, key=member_key)
    tablet_socket = await connect(room, key=tablet_key)
    new_key = await database_sync_to_async(device_rotate_key)(device=tablet)
    assert await tablet_socket.close_code() == 4401
    await phone_socket.send({"type": "ping"})
    assert (await phone_socket.receive_type("pong"))["type"] == "pong"
    again = await connect(room, key=new_key)
    assert again.snapshot["you"] == member.pk


def test_admin_shows_devices_with_hashes_only(admin_client, member, member_key):
    page = admin_client.get(f"/admin/maps/member/{member.pk}/change/").content.decode()
    device = member.devices.get()
    assert device.key_hash in page and member_key not in page
    listing = admin_client.get("/admin/maps/device/").content.decode()
    assert "Phone" in listing and member_key not in listing


def test_admin_deleting_a_device_goes_through_the_service(admin_client, member):
    from unittest import mock

    device = member.devices.get()
    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        response = admin_client.post(f"/admin/maps/device/{device.pk}/delete/",
                                     {"post": "yes"})
    assert response.status_code == 302
    assert not Device.objects.filter(pk=device.pk).exists()
    event.assert_called_once_with(member.room_id, {"type": "room.rekey",
                                                   "member": member.pk,
                                                   "device": device.pk})
