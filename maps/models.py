"""geoshare's data: rooms, their invites and members, and the members' positions."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


def _token(nbytes):
    """Return ``secrets.token_urlsafe(nbytes)`` that does not start with ``-``.

    A leading dash would read as an option on a command line (``addmember ROOM``).
    Redrawing keeps the distribution uniform over the allowed values.
    """
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value


def new_room_id():
    """Return a fresh room public id: 16 URL-safe characters, about 96 random bits."""
    return _token(12)


def new_invite_token():
    """Return a fresh invite token: 32 URL-safe characters, about 192 random bits."""
    return _token(24)


def new_device_key():
    """Return a fresh device key: 32 URL-safe characters, about 192 random bits."""
    return _token(24)


def hash_key(key):
    """Return the SHA-256 hex digest under which a device key is stored.

    Keys carry 192 random bits, so a fast hash is enough: nothing can be guessed
    from the digest, and lookup stays one indexed query.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# Distinct, readable on OpenStreetMap's light tiles (Tableau 10 palette).
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class HistoryVisibility(models.TextChoices):
    """Whose history a room's people may see (:func:`maps.auth.history_members`)."""

    EVERYONE = "everyone", "Everyone in the room, viewers too"
    MEMBERS = "members", "Members, not viewers"
    OWN = "own", "Each member only their own"


class Room(models.Model):
    """A map that its members share; reached by an unguessable ``public_id``."""

    public_id = models.CharField(max_length=32, unique=True, default=new_room_id)
    name = models.CharField(max_length=100)
    created = models.DateTimeField(default=timezone.now)
    # Days of history kept; 0 keeps none ("live only").
    retention_days = models.PositiveIntegerField(default=7)
    history_visibility = models.CharField(
        max_length=10, choices=HistoryVisibility.choices,
        default=HistoryVisibility.MEMBERS,
    )

    def __str__(self):
        return self.name

    def retention(self):
        """Return how long positions are kept, as a ``timedelta`` (zero: live only)."""
        return timedelta(days=self.retention_days)


class Invite(models.Model):
    """A link that lets whoever opens it join a room with a role."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True, default=new_invite_token)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    revoked = models.BooleanField(default=False)

    def __str__(self):
        return f"{self.get_role_display()} invite to {self.room}"

    def is_usable(self, now=None):
        """Return whether the invite admits a new member now."""
        now = now or timezone.now()
        if self.revoked:
            return False
        if self.expires_at is not None and now >= self.expires_at:
            return False
        if self.max_uses is not None and self.uses >= self.max_uses:
            return False
        return True

    def path(self):
        """Return the invite link's path, ``/join/<token>/``."""
        return f"/join/{self.token}/"


# Two members of a room never share a display name, whatever its case.
MEMBER_NAME_CONSTRAINT = "maps_member_name_unique_in_room"


class Member(models.Model):
    """Someone in a room: a browser session, a phone app, or both."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    name = models.CharField(max_length=40)
    color = models.CharField(max_length=7)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    invite = models.ForeignKey(
        Invite, null=True, blank=True, on_delete=models.SET_NULL, related_name="members"
    )
    key_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True)
    # When the member last stopped sharing; positions received before it are not live.
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["room", "role"])]
        constraints = [
            models.UniqueConstraint(
                Lower("name"), "room", name=MEMBER_NAME_CONSTRAINT,
                violation_error_message="Someone in this room already has this name.",
            )
        ]

    def __str__(self):
        return f"{self.name} in {self.room}"

    def set_key(self, key):
        """Store ``key`` (as its hash only) as this member's device key; not saved."""
        self.key_hash = hash_key(key)


class Position(models.Model):
    """One position of a member, as received: the history."""

    # No index of its own: (member, device_time, id) below leads with it.
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="positions",
                               db_index=False)
    lat = models.FloatField()
    lon = models.FloatField()
    accuracy = models.FloatField(null=True, blank=True)
    altitude = models.FloatField(null=True, blank=True)
    speed = models.FloatField(null=True, blank=True)
    heading = models.FloatField(null=True, blank=True)
    battery = models.FloatField(null=True, blank=True)
    device_time = models.DateTimeField()
    received = models.DateTimeField()

    class Meta:
        indexes = [
            # The history's keyset order (maps.selectors.history_page); read
            # backwards, also each member's newest position.
            models.Index(fields=["member", "device_time", "id"],
                         name="maps_position_member_time_id"),
            models.Index(fields=["received"]),
        ]

    def __str__(self):
        return f"{self.member_id} at {self.device_time:%Y-%m-%d %H:%M:%S}"
