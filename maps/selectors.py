"""Reads that several callers share. All synchronous: call through
``database_sync_to_async`` from async code."""

from datetime import UTC, datetime

from django.db.models import F, Q
from django.utils import timezone

from . import events
from .models import (
    Device,
    Invite,
    LivePosition,
    Member,
    Role,
    Room,
    Share,
    hash_key,
)


def to_ms(value):
    """Return an aware datetime as UTC epoch milliseconds (``None`` stays ``None``)."""
    return None if value is None else int(value.timestamp() * 1000)


def from_ms(value):
    """Return UTC epoch milliseconds as an aware ``datetime``."""
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def position_wire(position):
    """Return a stored :class:`Position` as a :class:`~maps.events.WirePosition`."""
    return events.wire_position(position.member_id, position,
                                to_ms(position.device_time), to_ms(position.received))


def live_positions(members, now=None):
    """Return the live position of each sharing member among ``members``, as stored.

    A member's live position is their :class:`LivePosition`, shown while their share is
    on (:meth:`Member.share_state`) and within their room's retention (a room that keeps
    history for N days shows nothing older). ``members`` is a Member queryset of one
    room; the result a list of LivePositions, by member id.
    """
    now = now or timezone.now()
    sharing = [m.pk for m in members.only("pk", "share", "sharing_until")
               if m.share_state(now) == Share.ON]
    live = LivePosition.objects.filter(member_id__in=sharing).order_by("member_id")
    room = Room.objects.filter(members__in=members[:1]).only("retention_days").first()
    if room is not None and room.retention_days:
        live = live.filter(received__gte=now - room.retention())
    return list(live)


def room_live_state(room_pk):
    """Return what a room hub starts from: its members, shares and live positions.

    Shape: ``{"members": [{"id", "info", "last_seen", "stopped_at", "share",
    "sharing_until"}], "positions": [wire position, ...]}``; times in epoch ms,
    ``share`` as :meth:`Member.share_state` says now.
    """
    members = Member.objects.filter(room_id=room_pk).order_by("pk")
    rows = []
    for member in members:
        rows.append(
            {
                "id": member.pk,
                "info": events.member_info(member),
                "last_seen": to_ms(member.last_seen),
                "stopped_at": to_ms(member.stopped_at),
                "share": member.share_state(),
                "sharing_until": to_ms(member.sharing_until),
            }
        )
    positions = [position_wire(p) for p in live_positions(members)]
    return {"members": rows, "positions": positions}


def friend_positions(member_id, room_pk):
    """Return ``[(member id, name, Position)]``: the live positions of the room's others.

    Ordered by member id; members who stopped sharing are left out
    (:func:`live_positions`). Read from the stored history, which the batched writer
    fills up to ``HISTORY_FLUSH_MS`` after a position arrives.
    """
    others = Member.objects.filter(room_id=room_pk).exclude(pk=member_id)
    positions = live_positions(others)
    names = dict(
        Member.objects.filter(pk__in=[p.member_id for p in positions])
        .values_list("pk", "name")
    )
    return [(p.member_id, names[p.member_id], p)
            for p in sorted(positions, key=lambda p: p.member_id) if p.member_id in names]


def member_info(room_pk, member_id):
    """Return one member's info dict, or ``None`` when not (or no longer) in the room."""
    member = Member.objects.filter(room_id=room_pk, pk=member_id).first()
    return None if member is None else events.member_info(member)


def member_for_key(key=None, *, key_hash=None):
    """Return the member whose device key is ``key`` (with its room), or ``None``.

    One indexed query on the devices. The member's ``device`` attribute is the
    :class:`~maps.models.Device` the key belongs to. ``key_hash`` looks the device
    up by the stored hash instead (a Hauk session, which carries the hash).
    """
    if key_hash is None:
        key_hash = hash_key(key)
    device = (Device.objects.select_related("member__room").filter(key_hash=key_hash)
              .first())
    if device is None:
        return None
    member = device.member
    member.device = device
    return member


def member_devices(member):
    """Return the member's devices, oldest first."""
    return list(Device.objects.filter(member=member).order_by("created", "pk"))


def session_member(session, room):
    """Return the member the browser ``session`` holds for ``room``, or ``None``."""
    member_id = session.get("members", {}).get(room.public_id)
    if member_id is None:
        return None
    return Member.objects.select_related("room").filter(pk=member_id, room=room).first()


def usable_invite(token):
    """Return the invite with this token if it admits people now, else ``None``."""
    invite = Invite.objects.select_related("room").filter(token=token).first()
    if invite is None or not invite.is_usable():
        return None
    return invite


def rooms_for_session(session):
    """Return ``(room, member)`` pairs of the rooms this browser session is in."""
    ids = list(session.get("members", {}).values())
    members = Member.objects.select_related("room").filter(pk__in=ids).order_by("-created")
    return [(m.room, m) for m in members]


def room_by_public_id(public_id):
    """Return the room with this public id, or ``None``."""
    return Room.objects.filter(public_id=public_id).first()


def usable_invites(room, *, now=None):
    """Return the invites of ``room`` (a Room or its pk) that admit people now.

    The database form of :meth:`maps.models.Invite.is_usable`: not revoked, not
    expired, not used up. A queryset, oldest first.
    """
    now = now or timezone.now()
    return (
        Invite.objects.filter(room=room, revoked=False)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
        .order_by("pk")
    )


def map_invite(room):
    """Return the invite link the room's map offers its members, or ``None``.

    The oldest usable member invite: usually the one made with the room. Viewers are
    never shown it (it would let them join again as members).
    """
    return usable_invites(room).filter(role=Role.MEMBER).first()
