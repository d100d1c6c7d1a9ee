"""Devices: a member's phones and trackers, each with its own key (and OwnTracks secret),
and the one-time links that open a device's setup on the phone."""

import hashlib
from datetime import timedelta

import nacl.exceptions
import nacl.secret
from django.db import transaction
from django.utils import timezone

from maps.models import (
    SECRET_MAX_BYTES,
    Device,
    Member,
    SetupLink,
    hash_key,
    new_device_key,
    new_invite_token,
)
from maps.protocol import events
from maps.services import publish
from maps.services.errors import SetupUnusable, TooManyDevices
from maps.services.names import clean_name

# "Open this setup on the phone": how long a setup link works, and how many of a
# member's may work at a time.
SETUP_MINUTES = 10
MAX_SETUP_LINKS = 5

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
    # A setup link made for the old key would hand out a key that no longer works.
    SetupLink.objects.filter(device=device).delete()
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


def _setup_box(token: str) -> nacl.secret.SecretBox:
    """The box that seals a setup link's device key: its key is derived from the token
    (SHA-256 of a label and the token), which only the link holds."""
    return nacl.secret.SecretBox(hashlib.sha256(b"geoshare setup link\0"
                                                + token.encode()).digest())


def setup_link_create(*, device: Device, key: str) -> tuple[SetupLink, str]:
    """Make a one-time link that opens ``device``'s phone-app setup (with ``key``, the
    device's key in clear, just made) on the phone; return ``(link, token)``.

    The token (192 random bits) is shown once; only its SHA-256 is stored, and the key
    sealed with a key derived from the token. Works :data:`SETUP_MINUTES` minutes and
    once. Raises ``ValueError`` past :data:`MAX_SETUP_LINKS` usable links of the member
    (counted with the member's row locked, as sign-in links are).
    """
    now = timezone.now()
    with transaction.atomic():
        # The member row locked: two requests at once cannot both pass the cap.
        Member.objects.select_for_update().filter(pk=device.member_id).first()
        usable = SetupLink.objects.filter(device__member_id=device.member_id,
                                          used_at=None, expires_at__gt=now).count()
        if usable >= MAX_SETUP_LINKS:
            raise ValueError(f"at most {MAX_SETUP_LINKS} setup links at a time: wait "
                             f"{SETUP_MINUTES} minutes")
        token = new_invite_token()
        link = SetupLink.objects.create(
            device=device, token_hash=hash_key(token),
            sealed=bytes(_setup_box(token).encrypt(key.encode())), created=now,
            expires_at=now + timedelta(minutes=SETUP_MINUTES))
    return link, token


def setup_link_redeem(*, token: str) -> tuple[Device, str]:
    """Use a setup link: return ``(device, key)`` (device with member and room loaded),
    and the link never works again (``used_at`` written in the same transaction that
    checks it). Raises :class:`SetupUnusable` for an unknown, used or expired token.
    """
    now = timezone.now()
    with transaction.atomic():
        # Locked: two phones opening the same link at once must not both get the key.
        link = (SetupLink.objects.select_for_update()
                .select_related("device__member__room")
                .filter(token_hash=hash_key(token)).first())
        if link is None or not link.is_usable(now):
            raise SetupUnusable("this setup link is used or expired")
        try:
            key = _setup_box(token).decrypt(bytes(link.sealed)).decode()
        except nacl.exceptions.CryptoError:
            raise SetupUnusable("this setup link is damaged") from None
        link.used_at = now
        link.save(update_fields=["used_at"])
    return link.device, key
