"""Writes: every change to rooms, invites, members and positions goes through here.

Synchronous functions are called from views and commands (and through
``database_sync_to_async`` from async code); the async ones are the publish path, the
single function that broadcasts a position, whichever door it came in by.
"""

import asyncio

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import events
from .auth import may_publish
from .fixes import now_ms
from .history import history_writer
from .models import PALETTE, Invite, Member, Position, Role, Room, new_device_key
from .selectors import to_ms


class InviteUnusable(Exception):
    """The invite is revoked, expired or used up."""


class NotAllowed(Exception):
    """The member may not do this (for example a viewer publishing)."""


# -- the publish path ---------------------------------------------------------------


async def position_publish(*, member, fix, received_ms=None):
    """Record and broadcast one position of ``member`` (a :class:`maps.auth.MemberRef`).

    ``fix`` is a validated :class:`maps.fixes.Fix`. The position joins the batched
    history (which applies the room's retention as it is when written) and goes once
    to the room's channel-layer group, whose hubs show it on every member's map.
    Returns the :class:`~maps.events.WirePosition`.

    Raises :class:`NotAllowed` for a member who may not publish (a viewer).
    """
    if not may_publish(member):
        raise NotAllowed("viewers cannot share a position")
    received_ms = now_ms() if received_ms is None else received_ms
    wire = fix.to_wire(member.id, received_ms)
    history_writer().add(member.id, fix, received_ms)
    await room_event_send(member.room_pk, events.room_fix(wire))
    return wire


async def positions_publish(*, member, fixes, received_ms=None):
    """Publish several positions of one member (a phone's offline batch) in order.

    All go to the history; the hubs keep the newest by device time as the live one.
    """
    for fix in sorted(fixes, key=lambda f: f.ts):
        await position_publish(member=member, fix=fix, received_ms=received_ms)


async def amember_stop_sharing(*, member):
    """Stop the share of ``member`` (a :class:`maps.auth.MemberRef`): the marker goes.

    Records ``stopped_at`` first, so that no later snapshot, friends answer or restart
    shows a position received before it, then tells the room's hubs.
    """
    at = timezone.now()
    await database_sync_to_async(
        Member.objects.filter(pk=member.id).update
    )(stopped_at=at)
    await room_event_send(member.room_pk, events.room_stop(member.id, to_ms(at)))


async def room_event_send(room_pk, event):
    """Send a room event (a :mod:`maps.events` builder's dict) to the room's hubs."""
    await get_channel_layer().group_send(events.room_group(room_pk), event)


# -- rooms, invites, members ----------------------------------------------------------


def _next_color(room):
    used = room.members.count()
    return PALETTE[used % len(PALETTE)]


def _clean_name(name, *, limit=40):
    name = " ".join(str(name).split())[:limit]
    if not name:
        raise ValueError("a name is required")
    return name


def room_create(*, name, owner_name, user=None, retention_days=None):
    """Create a room and its owner; return ``(room, owner)``.

    ``retention_days`` defaults to ``GEOSHARE["DEFAULT_RETENTION_DAYS"]``; 0 keeps no
    history. Raises ``ValueError`` for an empty name.
    """
    from django.conf import settings

    if retention_days is None:
        retention_days = settings.GEOSHARE["DEFAULT_RETENTION_DAYS"]
    with transaction.atomic():
        room = Room.objects.create(name=_clean_name(name, limit=100),
                                   retention_days=retention_days)
        owner = Member.objects.create(
            room=room, name=_clean_name(owner_name), color=PALETTE[0], role=Role.OWNER,
            user=user,
        )
    return room, owner


def invite_create(*, room, role=Role.MEMBER, expires_at=None, max_uses=None):
    """Create an invite to ``room`` with ``role`` (``member`` or ``viewer``)."""
    if role not in (Role.MEMBER, Role.VIEWER):
        raise ValueError("an invite's role is member or viewer")
    return Invite.objects.create(room=room, role=role, expires_at=expires_at,
                                 max_uses=max_uses)


def invite_redeem(*, token, name, user=None):
    """Join the invite's room as a new member named ``name``; return the member.

    Raises :class:`InviteUnusable` when the invite is unknown, revoked, expired or used
    up, and ``ValueError`` for an empty name.
    """
    name = _clean_name(name)
    with transaction.atomic():
        # Locked so that two people redeeming the last use at once cannot both get in.
        invite = (
            Invite.objects.select_for_update().select_related("room").filter(token=token)
            .first()
        )
        if invite is None or not invite.is_usable():
            raise InviteUnusable("this invite link is no longer valid")
        Invite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
        member = Member.objects.create(
            room=invite.room, name=name, color=_next_color(invite.room), role=invite.role,
            user=user, invite=invite,
        )
    _room_event(member.room_id, events.room_member(events.member_info(member)))
    return member


def member_create(*, room, name, role=Role.MEMBER, user=None):
    """Add a member with a device key; return ``(member, key)``.

    The key is shown once: only its hash is stored.
    """
    key = new_device_key()
    member = Member(room=room, name=_clean_name(name), color=_next_color(room), role=role,
                    user=user)
    member.set_key(key)
    member.save()
    _room_event(room.pk, events.room_member(events.member_info(member)))
    return member, key


def member_rotate_key(*, member):
    """Give the member a new device key and return it.

    The old key stops working at once: sockets opened with it are closed (4401).
    """
    key = new_device_key()
    member.set_key(key)
    member.save(update_fields=["key_hash"])
    _room_event(member.room_id, events.room_rekey(member.pk))
    return key


def member_remove(*, member):
    """Remove a member and everything of theirs: positions, sockets, marker."""
    room_pk, member_pk = member.room_id, member.pk
    with transaction.atomic():
        _lock_members(Member.objects.filter(pk=member_pk))
        member.delete()
    _room_event(room_pk, events.room_kick(member_pk))


def _lock_members(members):
    """Lock member rows ``FOR UPDATE`` before deleting them (PostgreSQL; SQLite no-op).

    The history writer holds ``FOR KEY SHARE`` on the members of the batch it is
    writing (maps.history): taking this lock first makes a delete wait for that batch
    to commit, so the delete then sees, and removes, the positions just written,
    instead of failing on them. A batch that comes second finds the members gone.
    """
    list(members.select_for_update().values_list("pk", flat=True))


def invite_revoke(*, invite):
    """Revoke an invite and remove the members who joined through it."""
    Invite.objects.filter(pk=invite.pk).update(revoked=True)
    for member in Member.objects.filter(invite=invite):
        member_remove(member=member)


def room_delete(*, room):
    """Delete a room with all its members and positions; close its sockets."""
    room_pk = room.pk
    with transaction.atomic():
        _lock_members(Member.objects.filter(room_id=room_pk))
        room.delete()
    _room_event(room_pk, events.room_deleted())


def room_set_retention(*, room, days):
    """Set how many days of history the room keeps (0: live only) and apply it now."""
    room.retention_days = days
    room.save(update_fields=["retention_days"])
    return positions_prune(rooms=[room])


PRUNE_BATCH = 5_000


def positions_prune(*, now=None, rooms=None):
    """Delete positions older than their room's retention; return how many went.

    Deletes in batches of :data:`PRUNE_BATCH` rows, each its own short transaction, so
    that the history writer is never held up for long. Rooms that keep history are
    then told (``room.retention``) to drop live positions past it, so nobody who joins
    later sees them. Safe to run at any time and concurrently with the service: the
    service runs it every ``GEOSHARE["PRUNE_EVERY_S"]`` seconds (maps.maintenance), and
    ``manage.py prune`` runs it once.
    """
    now = now or timezone.now()
    deleted = 0
    if rooms is None:
        rooms = Room.objects.all().only("pk", "retention_days")
    for room in rooms:
        cutoff = now - room.retention()
        old = Position.objects.filter(member__room=room, received__lt=cutoff)
        while ids := list(old.values_list("pk", flat=True)[:PRUNE_BATCH]):
            count, _ = Position.objects.filter(pk__in=ids).delete()
            deleted += count
        if room.retention_days:
            _room_event(room.pk, events.room_retention(to_ms(cutoff)))
    return deleted


def _room_event(room_pk, message):
    """Send a room event from synchronous code, after the transaction commits."""

    def send():
        layer = get_channel_layer()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            async_to_sync(layer.group_send)(events.room_group(room_pk), message)
        else:  # pragma: no cover - sync services are not called on the loop thread
            raise RuntimeError("call room services through database_sync_to_async")

    transaction.on_commit(send)
