"""Shared bits of geoshare's management commands."""

from django.conf import settings
from django.core.management.base import CommandError

from maps.storage.selectors import room_by_public_id


def get_room(public_id):
    """Return the room with this public id or raise ``CommandError``."""
    room = room_by_public_id(public_id)
    if room is None:
        raise CommandError(f"no room with id {public_id!r}")
    return room


def public_url(path, base=None):
    """Return ``path`` on the service's public address (``GEOSHARE_PUBLIC_URL``)."""
    return (base or settings.GEOSHARE["PUBLIC_URL"]).rstrip("/") + path
