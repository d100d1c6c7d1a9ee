"""Devices: a member's phones and trackers, each with its own key (and OwnTracks secret)."""


from django.db import transaction

from maps.models import (
    SECRET_MAX_BYTES,
    Device,
    Member,
    new_device_key,
)
from maps.protocol import events
from maps.services import publish
from maps.services.errors import TooManyDevices
from maps.services.names import clean_name

MAX_DEVICES_PER_MEMBER = 10


def member_rotate_key(*, member: Member) -> str:
    """Give the member's first device a new key (making a "Phone" if none); return it.

    The old key stops working at once: sockets opened with it are closed (4401); the
    member's other devices keep theirs. The key is shown once: only its hash is
    stored. Raises nothing (a member without devices has room for one).
    """
    device = Device.objects.filter(member=member).order_by("created", "pk").first()
    if device is None:
        return device_create(member=member, name="Phone")[1]
    return device_rotate_key(device=device)


def device_create(*, member: Member, name: str) -> tuple[Device, str]:
    """Give ``member`` a new device called ``name``; return ``(device, key)``.

    The key (:func:`maps.models.new_device_key`) is shown once: only its hash is
    stored. Raises :class:`TooManyDevices` past :data:`MAX_DEVICES_PER_MEMBER`,
    ``ValueError`` for an empty name.
    """
    name = clean_name(name)
    with transaction.atomic():
        # The member row locked, so that two requests cannot both add the last device.
        Member.objects.select_for_update().filter(pk=member.pk).first()
        if Device.objects.filter(member=member).count() >= MAX_DEVICES_PER_MEMBER:
            raise TooManyDevices(
                f"At most {MAX_DEVICES_PER_MEMBER} devices: remove one first.")
        key = new_device_key()
        device = Device(member=member, name=name)
        device.set_key(key)
        device.save(force_insert=True)
    return device, key


def device_rotate_key(*, device: Device) -> str:
    """Give ``device`` a new key and return it (shown once: only its hash is stored).

    The old key stops working at once, and the sockets opened with it are closed
    (``room.rekey`` with the device's id, after the commit); the member's other
    devices keep theirs. Raises nothing.
    """
    key = new_device_key()
    device.set_key(key)
    device.save(update_fields=["key_hash"])
    publish.room_event_on_commit(device.member.room_id, events.room_rekey(device.member_id, device.pk))
    return key


def device_revoke(*, device: Device) -> None:
    """Remove ``device``: its key stops working and its sockets are closed.

    The member, their other devices and their positions stay; the sockets hear
    ``room.rekey`` after the commit. Raises nothing.
    """
    room_id, member_id, device_id = device.member.room_id, device.member_id, device.pk
    device.delete()
    publish.room_event_on_commit(room_id, events.room_rekey(member_id, device_id))


def device_set_secret(*, device: Device, secret: str) -> Device:
    """Set the OwnTracks payload encryption secret of ``device`` ("" turns it off).

    Surrounding whitespace is dropped. Returns ``device``, saved; every process loads
    the member's keys again after the commit.

    Raises ``ValueError`` for a secret longer than 32 bytes in UTF-8: OwnTracks cuts
    its key there (``EncryptionProvider``), and a longer one would seem to work while
    meaning something else.
    """
    secret = str(secret).strip()
    if len(secret.encode("utf-8")) > SECRET_MAX_BYTES:
        raise ValueError(f"The secret may be at most {SECRET_MAX_BYTES} bytes long.")
    device.secret = secret
    device.save(update_fields=["secret"])
    publish.keys_changed_on_commit(device.member.room_id, device.member_id)
    return device
