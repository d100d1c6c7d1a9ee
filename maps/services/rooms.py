"""Rooms, invites and members: created, joined, renamed, removed, deleted."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from maps.domain.policy import may_publish
from maps.models import (
    MEMBER_NAME_CONSTRAINT,
    PALETTE,
    HistoryVisibility,
    Invite,
    Member,
    Position,
    Role,
    Room,
)
from maps.protocol import events
from maps.services import publish
from maps.services.devices import device_create
from maps.services.errors import InviteUnusable, NameTaken, TooManyInvites
from maps.services.names import clean_name
from maps.services.positions import positions_prune
from maps.storage import selectors

if TYPE_CHECKING:
    # The account model (settings.AUTH_USER_MODEL), as django-stubs resolves it.
    from django.contrib.auth.models import User


def _next_color(room: Room) -> str:
    used = room.members.count()
    return PALETTE[used % len(PALETTE)]


def _name_taken(room: Room | int, name: str) -> bool:
    """Return whether a member of ``room`` (a Room or its pk) is already called ``name``, ignoring case.

    Compared with ``str.casefold`` ("STRASSE" is "straße"), which the database's
    ``LOWER`` cannot do; the unique constraint on ``LOWER(name)`` backs this check
    up when two people join at once.
    """
    folded = name.casefold()
    names = Member.objects.filter(room=room).values_list("name", flat=True)
    return any(other.casefold() == folded for other in names)


def _member_insert(member: Member) -> Member:
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


def room_create(*, name: str, owner_name: str, user: "User | None" = None,
                retention_days: int | None = None) -> tuple[Room, Member]:
    """Create a room and its owner; return ``(room, owner)``.

    ``user`` is the signed-in account the owner belongs to, if any. ``retention_days``
    (days) defaults to ``GEOSHARE["DEFAULT_RETENTION_DAYS"]``; 0 keeps no history. The
    room's name is cleaned to at most 100 characters, the owner's as a display name
    (:func:`maps.services.names.clean_name`). Raises ``ValueError`` for an empty name.
    """

    if retention_days is None:
        retention_days = settings.GEOSHARE["DEFAULT_RETENTION_DAYS"]
    with transaction.atomic():
        room = Room.objects.create(name=clean_name(name, limit=100),
                                   retention_days=retention_days)
        owner = Member.objects.create(
            room=room, name=clean_name(owner_name), color=PALETTE[0], role=Role.OWNER,
            user=user,
        )
    return room, owner


def invite_create(*, room: Room, role: str = Role.MEMBER, expires_at: datetime | None = None,
                  max_uses: int | None = None, label: str | None = "") -> Invite:
    """Create an invite to ``room`` with ``role`` (``member`` or ``viewer``).

    ``expires_at`` is an aware UTC datetime or ``None`` (never); ``max_uses`` a count
    or ``None`` (unlimited); ``label`` the owner's name for it (cleaned as a display
    name, at most 60 characters; empty for none). Returns the new invite. Raises
    :class:`TooManyInvites` when the room already holds
    ``GEOSHARE["MAX_INVITES_PER_ROOM"]`` usable invites, ``ValueError`` for another
    role.
    """

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
                                     max_uses=max_uses, label=_invite_label(label))


def _invite_label(label: str | None) -> str:
    """Return ``label`` cleaned like a display name; empty (no label) when nothing is left."""
    try:
        return clean_name(label or "", limit=60)
    except ValueError:
        return ""


def invite_set_label(*, invite: Invite, label: str | None) -> None:
    """Give an invite the owner's name for it (``""`` or ``None`` removes it).

    Cleaned as a display name, at most 60 characters; a label of only invisible
    characters removes it too. Raises nothing.
    """
    invite.label = _invite_label(label)
    invite.save(update_fields=["label"])


def invite_redeem(*, token: str, name: str, user: "User | None" = None) -> Member:
    """Join the invite's room as a new member named ``name``; return the member.

    ``token`` is the invite link's token; ``user`` the signed-in account, if any. The
    member's arrival is announced (``room.member``) after the commit.
    Raises :class:`InviteUnusable` when the invite is unknown, revoked, expired or used
    up, :class:`NameTaken` when someone in the room has the name (the invite's use is
    not spent), and ``ValueError`` for an empty name.
    """
    name = clean_name(name)
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
    publish.room_event_on_commit(member.room_id, events.room_member(events.member_info(member)))
    return member


def member_create(*, room: Room, name: str, role: str = Role.MEMBER,
                  user: "User | None" = None) -> tuple[Member, str]:
    """Add a member with one device, "Phone"; return ``(member, key)``.

    ``role`` is a :class:`maps.models.Role` value; ``user`` the signed-in account, if
    any. The key is the device's, shown once: only its hash is stored. Raises
    :class:`NameTaken` when someone in the room has the name, ``ValueError`` for an
    empty name.
    """
    member = Member(room=room, name=clean_name(name), color=_next_color(room), role=role,
                    user=user)
    with transaction.atomic():
        _member_insert(member)
        _device, key = device_create(member=member, name="Phone")
    publish.room_event_on_commit(room.pk, events.room_member(events.member_info(member)))
    return member, key


def member_remove(*, member: Member, replace_invite: bool = False) -> list[Invite]:
    """Remove a member and everything of theirs: positions, sockets, marker.

    ``replace_invite`` is for removals by the owner or an admin: the links the member
    knows stop working, so that they cannot join again at once (:func:`members_remove`).
    A member leaving by themselves keeps nothing out.

    Returns the replacement invites, the one for the member's own invite first; an
    empty list when none was replaced.
    """
    if replace_invite:
        return members_remove(members=[member])
    room_pk, member_pk = member.room_id, member.pk
    with transaction.atomic():
        _lock_members(Member.objects.filter(pk=member_pk))
        member.delete()
    publish.room_event_on_commit(room_pk, events.room_kick(member_pk))
    return []


def members_remove(*, members: Iterable[Member]) -> list[Invite]:
    """Remove several members of one room at once, as the owner or an admin does.

    Each goes as by :func:`member_remove` (positions, sockets, marker; ``room.kick``
    after the commit). The links they know stop working: the invites they joined by
    and, if one of them could see it, the member invite the room's map shows
    (:func:`maps.storage.selectors.map_invite`). Each still usable one is revoked and
    replaced once (:func:`_invite_replace`), keeping its label; the people who joined
    by it and stay are listed under the replacement from then on.

    Returns the replacement invites (own invites first, then the map's link); an empty
    list when none was replaced. Raises nothing of its own.
    """
    members = list(members)
    if not members:
        return []
    with transaction.atomic():
        replacements = [_invite_replace(i) for i in _invites_known_to(members)]
        _lock_members(Member.objects.filter(pk__in=[m.pk for m in members]))
        gone = []
        for member in members:
            gone.append((member.room_id, member.pk))
            member.delete()
    for room_pk, member_pk in gone:
        publish.room_event_on_commit(room_pk, events.room_kick(member_pk))
    return replacements


def _invites_known_to(members: list[Member]) -> list[Invite]:
    """Return the usable invites whose links ``members`` have seen, own invites first."""
    # Read again: the caller may have loaded them before another removal moved them
    # to a replacement invite.
    ids = list(dict.fromkeys(
        Member.objects.filter(pk__in=[m.pk for m in members], invite__isnull=False)
        .order_by("pk").values_list("invite_id", flat=True)
    ))
    if any(may_publish(m) for m in members):
        for room_pk in dict.fromkeys(m.room_id for m in members):
            shown = selectors.map_invite(room_pk)
            if shown is not None and shown.pk not in ids:
                ids.append(shown.pk)
    # Locked so that a redemption cannot slip in between the check and the revocation.
    invites = {i.pk: i for i in Invite.objects.select_for_update().filter(pk__in=ids)}
    return [invites[pk] for pk in ids if pk in invites and invites[pk].is_usable()]


def _invite_replace(invite: Invite) -> Invite:
    """Revoke ``invite`` and return a new one with the same room, role, expiry, limit and label.

    The members who joined through the old link stay, and are listed from now on as
    joined through the new one, which stands for the same link (the owner's page
    offers to remove them under it). Revoking either removes nobody
    (:func:`invite_revoke`). The replacement starts with no uses.
    """
    Invite.objects.filter(pk=invite.pk).update(revoked=True)
    replacement = Invite.objects.create(
        room_id=invite.room_id, role=invite.role, expires_at=invite.expires_at,
        max_uses=invite.max_uses, label=invite.label,
    )
    Member.objects.filter(invite=invite).update(invite=replacement)
    return replacement


def _lock_members(members: QuerySet[Member]) -> None:
    """Lock member rows ``FOR UPDATE`` before deleting them (PostgreSQL; SQLite no-op).

    The history writer holds ``FOR KEY SHARE`` on the members of the batch it is
    writing (maps.storage.history): taking this lock first makes a delete wait for that batch
    to commit, so the delete then sees, and removes, the positions just written,
    instead of failing on them. A batch that comes second finds the members gone.
    """
    list(members.select_for_update().values_list("pk", flat=True))


def invite_revoke(*, invite: Invite) -> None:
    """Revoke an invite: its link admits nobody new from now on. Nothing else changes.

    The members who joined through it stay (removing them is its own step:
    :func:`members_remove`, after the owner's page names them). Revoking a revoked
    invite changes nothing. Raises nothing.
    """
    Invite.objects.filter(pk=invite.pk).update(revoked=True)
    invite.revoked = True


def room_delete(*, room: Room) -> None:
    """Delete a room with all its members and positions; close its sockets.

    The sockets hear ``room.deleted`` after the commit. Raises nothing.
    """
    room_pk = room.pk
    with transaction.atomic():
        _lock_members(Member.objects.filter(room_id=room_pk))
        room.delete()
    publish.room_event_on_commit(room_pk, events.room_deleted())


def room_retention_deletes(*, room: Room, days: int, now: datetime | None = None) -> int:
    """Return how many of the room's positions a retention of ``days`` would delete now.

    The positions received more than ``days`` days (0: any) before ``now`` (an aware
    UTC datetime, default the present): what :func:`room_set_retention` prunes. The
    owner's page asks before a change that deletes any. Raises nothing.
    """
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return Position.objects.filter(member__room_id=room.pk, received__lt=cutoff).count()


def room_set_retention(*, room: Room, days: int) -> int:
    """Set how many days of history the room keeps (0: live only) and apply it now.

    Returns how many positions were deleted (:func:`maps.services.positions.positions_prune`).
    ``days`` is checked by the caller (the form, which asks the owner first when
    :func:`room_retention_deletes` is not 0); nothing is raised here.
    """
    room.retention_days = days
    room.save(update_fields=["retention_days"])
    return positions_prune(rooms=[room])


def room_set_history_visibility(*, room: Room, visibility: str) -> None:
    """Set whose history the room's people may see (a :class:`HistoryVisibility`).

    ``everyone``, ``members`` (not viewers) or ``own``; read on every history and
    place-events request (:func:`maps.access.scope.history_scope`), and told to the
    room's hubs after the commit (``room.visibility``), which give the live
    ``place_event`` frames by it: it applies at once. Raises ``ValueError`` for
    another value.
    """
    if visibility not in HistoryVisibility.values:
        raise ValueError("history visibility is everyone, members or own")
    with transaction.atomic():
        room.history_visibility = visibility
        room.save(update_fields=["history_visibility"])
        publish.room_event_on_commit(
            room.pk, events.room_visibility(cast(events.Visibility, visibility)))
