"""Writes: every change to rooms, invites, members and positions goes through here.

Synchronous functions are called from views and commands (and through
``database_sync_to_async`` from async code); the async ones are the publish path, the
single function that broadcasts a position, whichever door it came in by.
"""

import asyncio
import unicodedata

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import events, selectors
from .auth import may_publish
from .fixes import now_ms
from .history import history_writer
from .models import (
    MEMBER_NAME_CONSTRAINT,
    PALETTE,
    HistoryVisibility,
    Invite,
    Member,
    Position,
    Role,
    Room,
    new_device_key,
)
from .selectors import to_ms


class InviteUnusable(Exception):
    """The invite is revoked, expired or used up."""


class NotAllowed(Exception):
    """The member may not do this (for example a viewer publishing)."""


class NameTaken(ValueError):
    """Someone in the room already has this display name (compared case-insensitively)."""


class TooManyInvites(ValueError):
    """The room holds as many usable invites as ``GEOSHARE["MAX_INVITES_PER_ROOM"]``."""


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


# Control (Cc) and format (Cf) characters: among them the bidi embeddings, overrides
# and isolates (U+202A-U+202E, U+2066-U+2069) and marks (U+200E, U+200F, U+061C), which
# reverse the text around a name on the others' pages, and the zero-width characters
# (U+200B-U+200D, U+FEFF), which make two names look alike. Lone surrogates (Cs) cannot
# even be encoded as UTF-8.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})


def _clean_name(name, *, limit=40):
    """Return ``name`` fit to show: NFC, without invisible characters, spaces collapsed.

    Whitespace of any kind (tabs, newlines, U+2028...) becomes one space between words;
    control and format characters go; at most ``limit`` characters are kept. Raises
    ``ValueError`` when nothing is left.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or unicodedata.category(char) not in _INVISIBLE
    )
    text = " ".join(text.split())[:limit].rstrip()
    if not text:
        raise ValueError("a name is required")
    return text


def _name_taken(room, name):
    """Return whether a member of ``room`` is already called ``name``, ignoring case.

    Compared with ``str.casefold`` ("STRASSE" is "straße"), which the database's
    ``LOWER`` cannot do; the unique constraint on ``LOWER(name)`` backs this check
    up when two people join at once.
    """
    folded = name.casefold()
    names = Member.objects.filter(room=room).values_list("name", flat=True)
    return any(other.casefold() == folded for other in names)


def _member_insert(member):
    """Save a new ``member``; raise :class:`NameTaken` if the database finds the name taken.

    In a savepoint, so that the caller's transaction can go on (or roll back) cleanly.
    """
    if _name_taken(member.room_id, member.name):
        raise NameTaken(f"Someone in this room is already called {member.name}.")
    try:
        with transaction.atomic():
            member.save(force_insert=True)
    except IntegrityError as exc:
        # Another request took the name between the check and the insert.
        if MEMBER_NAME_CONSTRAINT not in str(exc):
            raise
        raise NameTaken(f"Someone in this room is already called {member.name}.") from exc
    return member


def room_create(*, name, owner_name, user=None, retention_days=None):
    """Create a room and its owner; return ``(room, owner)``.

    ``retention_days`` defaults to ``GEOSHARE["DEFAULT_RETENTION_DAYS"]``; 0 keeps no
    history. Both names are cleaned as display names (:func:`_clean_name`). Raises
    ``ValueError`` for an empty name.
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
    """Create an invite to ``room`` with ``role`` (``member`` or ``viewer``).

    ``expires_at`` is an aware datetime or ``None`` (never); ``max_uses`` a count or
    ``None`` (unlimited). Raises :class:`TooManyInvites` when the room already holds
    ``GEOSHARE["MAX_INVITES_PER_ROOM"]`` usable invites, ``ValueError`` for another role.
    """
    from django.conf import settings

    if role not in (Role.MEMBER, Role.VIEWER):
        raise ValueError("an invite's role is member or viewer")
    limit = settings.GEOSHARE["MAX_INVITES_PER_ROOM"]
    with transaction.atomic():
        # The room row locked, so that two requests cannot both take the last place.
        Room.objects.select_for_update().filter(pk=room.pk).first()
        if selectors.usable_invites(room).count() >= limit:
            raise TooManyInvites(
                f"This room already has {limit} usable invites: revoke one first."
            )
        return Invite.objects.create(room=room, role=role, expires_at=expires_at,
                                     max_uses=max_uses)


def invite_redeem(*, token, name, user=None):
    """Join the invite's room as a new member named ``name``; return the member.

    Raises :class:`InviteUnusable` when the invite is unknown, revoked, expired or used
    up, :class:`NameTaken` when someone in the room has the name (the invite's use is
    not spent), and ``ValueError`` for an empty name.
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
        member = _member_insert(Member(
            room=invite.room, name=name, color=_next_color(invite.room), role=invite.role,
            user=user, invite=invite,
        ))
        Invite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
    _room_event(member.room_id, events.room_member(events.member_info(member)))
    return member


def member_create(*, room, name, role=Role.MEMBER, user=None):
    """Add a member with a device key; return ``(member, key)``.

    The key is shown once: only its hash is stored. Raises :class:`NameTaken` when
    someone in the room has the name, ``ValueError`` for an empty name.
    """
    key = new_device_key()
    member = Member(room=room, name=_clean_name(name), color=_next_color(room), role=role,
                    user=user)
    member.set_key(key)
    _member_insert(member)
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


def member_remove(*, member, replace_invite=False):
    """Remove a member and everything of theirs: positions, sockets, marker.

    ``replace_invite`` is for removals by the owner or an admin: the links the member
    knows stop working, so that they cannot join again at once. Those are the invite
    they joined by and, if they could see it, the member invite the room's map shows
    (:func:`maps.selectors.map_invite`); each still usable one is revoked and replaced
    (:func:`_invite_replace`). A member leaving by themselves keeps nothing out.

    Returns the replacement invites, the one for the member's own invite first; an
    empty list when none was replaced.
    """
    room_pk, member_pk = member.room_id, member.pk
    with transaction.atomic():
        replacements = []
        if replace_invite:
            replacements = [_invite_replace(i) for i in _invites_known_to(member)]
        _lock_members(Member.objects.filter(pk=member_pk))
        member.delete()
    _room_event(room_pk, events.room_kick(member_pk))
    return replacements


def _invites_known_to(member):
    """Return the usable invites whose links ``member`` has seen, own invite first."""
    # Read again: in a bulk removal an earlier replacement may have moved the member
    # to a new invite since the caller loaded them.
    own = Member.objects.filter(pk=member.pk).values_list("invite_id", flat=True).first()
    ids = [own] if own is not None else []
    if may_publish(member):
        shown = selectors.map_invite(member.room_id)
        if shown is not None and shown.pk not in ids:
            ids.append(shown.pk)
    # Locked so that a redemption cannot slip in between the check and the revocation.
    invites = {i.pk: i for i in Invite.objects.select_for_update().filter(pk__in=ids)}
    return [invites[pk] for pk in ids if pk in invites and invites[pk].is_usable()]


def _invite_replace(invite):
    """Revoke ``invite`` and return a new one with the same room, role, expiry and limit.

    The members who joined through the old link stay, and count from now on as joined
    through the new one: revoking the replacement removes them too, as revoking the
    original would have. The replacement starts with no uses.
    """
    Invite.objects.filter(pk=invite.pk).update(revoked=True)
    replacement = Invite.objects.create(
        room_id=invite.room_id, role=invite.role, expires_at=invite.expires_at,
        max_uses=invite.max_uses,
    )
    Member.objects.filter(invite=invite).update(invite=replacement)
    return replacement


def _lock_members(members):
    """Lock member rows ``FOR UPDATE`` before deleting them (PostgreSQL; SQLite no-op).

    The history writer holds ``FOR KEY SHARE`` on the members of the batch it is
    writing (maps.history): taking this lock first makes a delete wait for that batch
    to commit, so the delete then sees, and removes, the positions just written,
    instead of failing on them. A batch that comes second finds the members gone.
    """
    list(members.select_for_update().values_list("pk", flat=True))


def invite_revoke(*, invite):
    """Revoke an invite and remove the members who joined through it.

    They have seen the room's map, so when one of them could see its invite link
    (:func:`maps.selectors.map_invite`) and that is another invite, it is replaced too
    (:func:`_invite_replace`): otherwise they would come straight back by it.
    """
    with transaction.atomic():
        shown = selectors.map_invite(invite.room_id)
        Invite.objects.filter(pk=invite.pk).update(revoked=True)
        members = list(Member.objects.filter(invite=invite))
        if (shown is not None and shown.pk != invite.pk
                and any(may_publish(m) for m in members)):
            _invite_replace(shown)
        for member in members:
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


def room_set_history_visibility(*, room, visibility):
    """Set whose history the room's people may see (a :class:`HistoryVisibility`).

    ``everyone``, ``members`` (not viewers) or ``own``; read on every history request
    (:func:`maps.auth.history_scope`), so it applies at once. Raises ``ValueError``
    for another value.
    """
    if visibility not in HistoryVisibility.values:
        raise ValueError("history visibility is everyone, members or own")
    room.history_visibility = visibility
    room.save(update_fields=["history_visibility"])


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
