"""geoshare's data: rooms, their invites and members, and the members' positions."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from maps.domain.choices import HistoryVisibility, Role, Share
from maps.domain.policy import watch_link_shows


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


# Device keys are read aloud and typed into phones: lower case only (nobody has to say
# "capital"), and none of 0/o or 1/l/i's look-alikes. 32 symbols, 5 bits each.
KEY_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"
KEY_LENGTH = 26  # 130 random bits


def new_watch_token():
    """Return a fresh watch-link token: 32 URL-safe characters, about 192 random bits."""
    return _token(24)


def new_device_key():
    """Return a fresh device key: 26 characters of :data:`KEY_ALPHABET`, 130 random bits.

    Lower-case letters and digits without ``0``, ``o``, ``1`` and ``l`` (the upper-case
    look-alikes ``O`` and ``I`` never occur), so a key can be read aloud and typed
    without a mix-up.
    """
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))


def key_groups(key):
    """Return ``key`` in groups of four, as a person reads it aloud (``"k7m2 x9qa ..."``)."""
    return " ".join(key[i:i + 4] for i in range(0, len(key), 4))


def hash_key(key):
    """Return the SHA-256 hex digest under which a device key is stored.

    Keys carry at least 128 random bits, so a fast hash is enough: nothing can be
    guessed from the digest, and lookup stays one indexed query.
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
    # When a place of the room was last made, changed or deleted (null: never): phones
    # whose device got the places before that get them again (maps.ingest.views).
    places_changed = models.DateTimeField(null=True, blank=True)

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
    # What the owner calls it ("Family", "Weekend group"); empty for none.
    label = models.CharField(max_length=60, blank=True, default="")

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
    created = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True)
    # When the member last stopped sharing; positions received before it are not live.
    stopped_at = models.DateTimeField(null=True, blank=True)
    share = models.CharField(max_length=5, choices=Share.choices, default=Share.OFF)
    # When the running share ends by itself; null: when the member turns it off.
    sharing_until = models.DateTimeField(null=True, blank=True)
    # Where the running share's positions come from (maps.domain.sources): a phone
    # app's device ("device:<pk>") or one browser ("browser:<id>"); empty: not
    # recorded yet, the next position claims it (maps.domain.policy.share_gate).
    share_source = models.CharField(max_length=80, blank=True, default="")
    # That source's name as the map shows it: the device's, or the browser's label.
    share_source_name = models.CharField(max_length=40, blank=True, default="")

    # Not a field: the Device whose key found the member, set on the members the
    # device-key lookups return (maps.storage.selectors.members_for_keys).
    device: "Device"

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

    def share_state(self, now=None):
        """Return the share as it is at ``now``: a :class:`Share` value.

        A share whose end time has passed is ``ENDED``, whether or not anything has
        written that down yet.
        """
        if self.share == Share.ON and self.sharing_until is not None:
            if self.sharing_until <= (now or timezone.now()):
                return Share.ENDED
        return self.share


# OwnTracks cuts its encryption key to 32 bytes (EncryptionProvider.KEYBYTES).
SECRET_MAX_BYTES = 32


class Device(models.Model):
    """A phone, tablet or tracker that shares a member's position with a key of its own.

    Only the key's hash is stored. ``secret`` is the OwnTracks payload encryption key
    (empty: none), kept in clear because geoshare decrypts and encrypts with it.
    ``last_seen`` is when the device last sent a position that was accepted.
    """

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=40)
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True)
    secret = models.CharField(max_length=SECRET_MAX_BYTES, blank=True, default="")
    # The room's ``places_changed`` this device last got the places of (OwnTracks).
    places_sent = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self):
        return f"{self.name} of {self.member_id}"

    def set_key(self, key):
        """Store ``key`` (as its hash only) as this device's key; not saved."""
        self.key_hash = hash_key(key)


class Reading(models.Model):
    """The fields of one position as stored, in geoshare's units (maps.domain.fixes).

    Degrees (WGS84), metres, m/s, degrees clockwise from true north, percent; whether
    the device was on a charger; the name of the device whose key sent it (``None``: a
    browser tab, or a position stored before names were kept); the device's time and
    the server's receive time. ``None`` is unknown.
    """

    lat = models.FloatField()
    lon = models.FloatField()
    accuracy = models.FloatField(null=True, blank=True)
    altitude = models.FloatField(null=True, blank=True)
    speed = models.FloatField(null=True, blank=True)
    heading = models.FloatField(null=True, blank=True)
    battery = models.FloatField(null=True, blank=True)
    charging = models.BooleanField(null=True, blank=True)
    # A copy of Device.name as it was: the device may be renamed or removed later.
    device = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001
    device_time = models.DateTimeField()
    received = models.DateTimeField()

    class Meta:
        abstract = True


class LivePosition(Reading):
    """A sharing member's latest position (by device time): what every map starts from.

    Written in the same transaction as the history (maps.storage.history), in every room,
    live-only rooms included (they keep this one position per member and nothing else).
    Deleted when the share ends.
    """

    member = models.OneToOneField(Member, primary_key=True, on_delete=models.CASCADE,
                                  related_name="live")

    def __str__(self):
        return f"{self.member_id} now at {self.device_time:%Y-%m-%d %H:%M:%S}"


class WatchLink(models.Model):
    """A "watch me" link: whoever opens it sees one member's marker, and nothing else.

    Only the token's hash is stored; the link is shown once, when it is made.
    """

    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="watch_links")
    token_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    # When the link stops working at the latest (at most seven days after it was made);
    # null only on rows made before issue 25 (then bound_to_share is set).
    expires_at = models.DateTimeField(null=True, blank=True)
    # "Until my share ends": the link works only while the share that was running when
    # it was made runs; stopping (or the share's end time) revokes it.
    bound_to_share = models.BooleanField(default=False)
    revoked = models.BooleanField(default=False)

    def __str__(self):
        return f"watch link of {self.member_id}"

    def is_usable(self, now=None):
        """Return whether the link shows the member now (``policy.watch_link_shows``)."""
        now = now or timezone.now()
        # Only a bound link needs its member's share (a query when not loaded).
        share = self.member.share_state(now) if self.bound_to_share else Share.OFF
        return watch_link_shows(revoked=self.revoked, expires_at=self.expires_at,
                                bound_to_share=self.bound_to_share, share_state=share,
                                now=now)


class SignInLink(models.Model):
    """A one-time link that signs another browser in as the same member.

    Only the token's hash is stored; the link is shown once, works for a few minutes
    (:data:`maps.services.SIGNIN_MINUTES`), and once: opening it binds the member to
    that browser's session, as joining does. ``by_command``: made on the server by a
    command (``manage.py demo``), not by a browser signed in as the member.
    """

    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="signin_links")
    token_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    by_command = models.BooleanField(default=False)

    def __str__(self):
        return f"sign-in link of {self.member_id}"

    def is_usable(self, now=None):
        """Return whether the link still signs a browser in."""
        return (not self.revoked and self.used_at is None
                and (now or timezone.now()) < self.expires_at)


class SetupLink(models.Model):
    """A one-time link that opens one device's phone-app setup on the phone.

    Only the token's hash is stored; the device key the setup shows is kept sealed
    with a key derived from the token (``sealed``, XSalsa20-Poly1305), so the database
    alone does not give the key away. Works for a few minutes
    (:data:`maps.services.SETUP_MINUTES`), and once; a new key for the device, or its
    removal, ends it.
    """

    device = models.ForeignKey("Device", on_delete=models.CASCADE,
                               related_name="setup_links")
    token_hash = models.CharField(max_length=64, unique=True)
    sealed = models.BinaryField()
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"setup link of device {self.device_id}"

    def is_usable(self, now=None):
        """Return whether the link still opens the setup."""
        return self.used_at is None and (now or timezone.now()) < self.expires_at


class Position(Reading):
    """One position of a member, as received: the history."""

    # No index of its own: (member, device_time, id) below leads with it.
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="positions",
                               db_index=False)

    class Meta:
        indexes = [
            # The history's keyset order (maps.storage.selectors.history_page); read
            # backwards, also each member's newest position.
            models.Index(fields=["member", "device_time", "id"],
                         name="maps_position_member_time_id"),
            models.Index(fields=["received"]),
        ]

    def __str__(self):
        return f"{self.member_id} at {self.device_time:%Y-%m-%d %H:%M:%S}"


PLACE_NAME_CONSTRAINT = "maps_place_name_unique_in_room"


class Place(models.Model):
    """A circle in a room that members arrive at and leave (maps.domain.places decides when).

    ``lat``/``lon`` in degrees (WGS84), ``radius`` in metres (25 m to 5 km).
    ``updated`` moves on every change, so phones learn when to fetch them again.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="places")
    name = models.CharField(max_length=60)
    lat = models.FloatField()
    lon = models.FloatField()
    radius = models.FloatField()
    created_by = models.ForeignKey(Member, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "room", name=PLACE_NAME_CONSTRAINT)
        ]

    def __str__(self):
        return f"{self.name} in {self.room_id}"

    def to_dict(self):
        """Return the place as the API and the ``places`` frame show it."""
        return {"id": self.pk, "name": self.name, "lat": self.lat, "lon": self.lon,
                "radius": self.radius, "created_by": self.created_by_id}


class PlaceState(models.Model):
    """Whether a member is inside a place, since which device time; ``checked`` is the
    device time of the newest fix decided (maps.domain.places.PlaceState, stored)."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    place = models.ForeignKey(Place, on_delete=models.CASCADE, related_name="states")
    inside = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True)
    checked = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint("member", "place", name="maps_placestate_unique")
        ]

    def __str__(self):
        return f"{self.member_id} {'in' if self.inside else 'out of'} {self.place_id}"


class PlaceEventKind(models.TextChoices):
    ENTER = "enter", "Arrived"
    LEAVE = "leave", "Left"


class PlaceEvent(models.Model):
    """A member arrived at or left a place at device time ``device_time``.

    Unique on (member, place, kind, device_time): the same crossing, found again by
    another process or reported by the phone itself (OwnTracks), is written once.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    place = models.ForeignKey(Place, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=5, choices=PlaceEventKind.choices)
    device_time = models.DateTimeField()
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["room", "device_time"]),
                   models.Index(fields=["created"])]
        constraints = [
            models.UniqueConstraint("member", "place", "kind", "device_time",
                                    name="maps_placeevent_once")
        ]

    def __str__(self):
        return f"{self.member_id} {self.kind} {self.place_id}"


class AlertRule(models.Model):
    """A member asked to be told when ``watched`` (null: anyone) arrives at or leaves
    ``place`` (null: any place). Shown on that member's own map page only."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="alert_rules")
    watched = models.ForeignKey(Member, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    place = models.ForeignKey(Place, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="+")

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"{self.member_id} watches {self.watched_id} at {self.place_id}"

    def to_dict(self):
        """Return the rule as the alerts API shows it: ids, null meaning any."""
        return {"member": self.watched_id, "place": self.place_id}
