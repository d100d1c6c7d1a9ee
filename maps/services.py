"""Writes: every change to rooms, invites, members and positions goes through here.

Synchronous functions are called from views and commands (and through
``database_sync_to_async`` from async code); the async ones are the publish path, the
single function that broadcasts a position, whichever door it came in by.
"""

import asyncio
import logging
import math
import unicodedata
from datetime import timedelta
from operator import attrgetter

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from maps.access import keycache
from maps.domain import places
from maps.domain.fixes import now_ms
from maps.domain.policy import may_publish
from maps.models import (
    MEMBER_NAME_CONSTRAINT,
    PALETTE,
    SECRET_MAX_BYTES,
    AlertRule,
    Device,
    HistoryVisibility,
    Invite,
    LivePosition,
    Member,
    Place,
    PlaceEvent,
    Position,
    Role,
    Room,
    Share,
    SignInLink,
    WatchLink,
    hash_key,
    new_device_key,
    new_invite_token,
    new_watch_token,
)
from maps.protocol import events
from maps.storage import selectors
from maps.storage.history import history_writer
from maps.storage.selectors import from_ms, to_ms

log = logging.getLogger(__name__)


class InviteUnusable(Exception):
    """The invite is revoked, expired or used up."""


class NotAllowed(Exception):
    """The member may not do this (for example a viewer publishing)."""


class NameTaken(ValueError):
    """Someone in the room already has this display name (compared case-insensitively)."""


class TooManyInvites(ValueError):
    """The room holds as many usable invites as ``GEOSHARE["MAX_INVITES_PER_ROOM"]``."""


class TooManyDevices(ValueError):
    """The member already has :data:`MAX_DEVICES_PER_MEMBER` devices."""


MAX_DEVICES_PER_MEMBER = 10


class TooManyPlaces(ValueError):
    """The room already has :data:`MAX_PLACES_PER_ROOM` places."""


class PlaceInvalid(ValueError):
    """A place's field is missing or out of range; ``field`` names it."""

    def __init__(self, field, detail):
        super().__init__(detail)
        self.field = field


MAX_PLACES_PER_ROOM = 100


# -- the publish path ---------------------------------------------------------------


async def positions_publish(*, member, fixes, durable=False, received_ms=None,
                            device_id=None):
    """Record and broadcast positions of ``member`` (a :class:`maps.domain.refs.MemberRef`).

    ``fixes`` are validated :class:`maps.domain.fixes.Fix` values (several: a phone's offline
    batch). They join the batched history, the newest by device time becoming the
    member's live position, and the newest goes once to the room's channel-layer group,
    whose hubs show it on every member's map. With ``durable`` (the phone doors) this
    returns only once they are committed (group commit, maps.storage.history), and the room
    hears of them after that, with the rest of the batch's positions in one
    ``room.fixes`` event per room, so a hub that starts meanwhile loads them; a channel
    layer that is away then does not undo the answer (the hubs resync when it is back).
    Returns the :class:`~maps.protocol.events.WirePosition` broadcast. ``device_id`` is the
    :class:`~maps.models.Device` whose key sent them: its ``last_seen`` (the "last
    report" of "Connect a phone") is written with them.

    Raises :class:`NotAllowed` for a member who may not publish (a viewer), and
    :class:`maps.storage.history.StoreFailed` when a durable batch could not be committed.
    The member's share is the caller's to check first (:func:`maps.domain.policy.share_gate`).
    """
    if not may_publish(member):
        raise NotAllowed("viewers cannot share a position")
    received_ms = now_ms() if received_ms is None else received_ms
    newest = max(fixes, key=attrgetter("ts"))
    wire = newest.to_wire(member.id, received_ms)
    writer = history_writer()
    if durable:
        # The writer announces the batch's positions per room after the commit.
        await writer.add(member.id, fixes, received_ms, durable=True,
                         device_id=device_id, announce=(member.room_pk, wire))
        return wire
    writer.add(member.id, fixes, received_ms, device_id=device_id)
    await room_event_send(member.room_pk, events.room_fix(wire))
    return wire


async def position_publish(*, member, fix, durable=False, received_ms=None):
    """Record and broadcast one position: :func:`positions_publish` of ``[fix]``."""
    return await positions_publish(member=member, fixes=[fix], durable=durable,
                                   received_ms=received_ms)


async def ashare_start(*, member, until_ms=None):
    """Start or change the share of ``member`` (a :class:`maps.domain.refs.MemberRef`).

    ``until_ms`` is when it ends by itself (epoch ms) or ``None`` for when the member
    turns it off. Raises :class:`NotAllowed` for a viewer, ``ValueError`` for an end
    that is not in the future.
    """
    if not may_publish(member):
        raise NotAllowed("viewers cannot share a position")
    if until_ms is not None and until_ms <= now_ms():
        raise ValueError("until must be in the future")
    until = None if until_ms is None else from_ms(until_ms)
    await database_sync_to_async(
        Member.objects.filter(pk=member.id).update
    )(share=Share.ON, sharing_until=until)
    await room_event_send(member.room_pk, events.room_share(member.id, until_ms))


def _share_end(member_ids, at):
    """Write down that these members' shares ended at ``at``; forget their positions.

    Their live positions go, and so do the watch links that ended with the share.
    Returns the ids of those links.
    """
    with transaction.atomic():
        Member.objects.filter(pk__in=member_ids).update(
            share=Share.ENDED, sharing_until=None, stopped_at=at)
        LivePosition.objects.filter(member_id__in=member_ids).delete()
        links = WatchLink.objects.filter(member_id__in=member_ids, expires_at=None,
                                         revoked=False)
        ids = list(links.values_list("pk", flat=True))
        links.update(revoked=True)
    return ids


async def amember_stop_sharing(*, member):
    """End the share of ``member`` (a :class:`maps.domain.refs.MemberRef`): the marker goes.

    Records the end first, so that no later snapshot, friends answer or restart shows
    a position received before it, then tells the room's hubs. Positions are refused
    from then on until the member shares again (:func:`ashare_start`).
    """
    at = timezone.now()
    await database_sync_to_async(_share_end)([member.id], at)
    await room_event_send(member.room_pk, events.room_stop(member.id, to_ms(at)))


def shares_expire(*, now=None):
    """Write down every share whose end time has passed; return how many ended.

    The hubs end them on the map at their end time by themselves (maps.realtime.hub); this
    makes it true in the database too (run by maps.ops.maintenance and by the hubs).
    """
    now = now or timezone.now()
    due = list(Member.objects.filter(share=Share.ON, sharing_until__lte=now)
               .values_list("pk", "sharing_until"))
    for member_id, until in due:
        _share_end([member_id], until)
    return len(due)


async def room_event_send(room_pk, event):
    """Send a room event (a :mod:`maps.protocol.events` builder's dict) to the room's hubs.

    An event that changes what the doors rely on (a share, a member, a key) makes
    every process load the room's device keys again (:mod:`maps.access.keycache`).
    """
    layer = get_channel_layer()
    forget = keycache.room_changed(room_pk, event)
    await layer.group_send(events.room_group(room_pk), event)
    if forget is not None:
        await layer.group_send(keycache.GROUP, forget)


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


def invite_create(*, room, role=Role.MEMBER, expires_at=None, max_uses=None, label=""):
    """Create an invite to ``room`` with ``role`` (``member`` or ``viewer``).

    ``expires_at`` is an aware datetime or ``None`` (never); ``max_uses`` a count or
    ``None`` (unlimited); ``label`` the owner's name for it (cleaned as a display
    name, at most 60 characters; empty for none). Raises :class:`TooManyInvites` when the room already holds
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
                                     max_uses=max_uses, label=_invite_label(label))


def _invite_label(label):
    """Return ``label`` cleaned like a display name; empty (no label) when nothing is left."""
    try:
        return _clean_name(label or "", limit=60)
    except ValueError:
        return ""


def invite_set_label(*, invite, label):
    """Give an invite the owner's name for it (``""`` removes it)."""
    invite.label = _invite_label(label)
    invite.save(update_fields=["label"])


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
    """Add a member with one device, "Phone"; return ``(member, key)``.

    The key is the device's, shown once: only its hash is stored. Raises
    :class:`NameTaken` when someone in the room has the name, ``ValueError`` for an
    empty name.
    """
    member = Member(room=room, name=_clean_name(name), color=_next_color(room), role=role,
                    user=user)
    with transaction.atomic():
        _member_insert(member)
        _device, key = device_create(member=member, name="Phone")
    _room_event(room.pk, events.room_member(events.member_info(member)))
    return member, key


def member_rotate_key(*, member):
    """Give the member's first device a new key (making a "Phone" if none); return it.

    The old key stops working at once: sockets opened with it are closed (4401); the
    member's other devices keep theirs.
    """
    device = Device.objects.filter(member=member).order_by("created", "pk").first()
    if device is None:
        return device_create(member=member, name="Phone")[1]
    return device_rotate_key(device=device)


def device_create(*, member, name):
    """Give ``member`` a new device called ``name``; return ``(device, key)``.

    The key (:func:`maps.models.new_device_key`) is shown once: only its hash is
    stored. Raises :class:`TooManyDevices` past :data:`MAX_DEVICES_PER_MEMBER`,
    ``ValueError`` for an empty name.
    """
    name = _clean_name(name)
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


def device_rotate_key(*, device):
    """Give ``device`` a new key and return it.

    The old key stops working at once, and the sockets opened with it are closed
    (``room.rekey`` with the device's id); the member's other devices keep theirs.
    """
    key = new_device_key()
    device.set_key(key)
    device.save(update_fields=["key_hash"])
    _room_event(device.member.room_id, events.room_rekey(device.member_id, device.pk))
    return key


def device_revoke(*, device):
    """Remove ``device``: its key stops working and its sockets are closed.

    The member, their other devices and their positions stay.
    """
    room_id, member_id, device_id = device.member.room_id, device.member_id, device.pk
    device.delete()
    _room_event(room_id, events.room_rekey(member_id, device_id))


def device_set_secret(*, device, secret):
    """Set the OwnTracks payload encryption secret of ``device`` ("" turns it off).

    Raises ``ValueError`` for a secret longer than 32 bytes in UTF-8: OwnTracks cuts
    its key there (``EncryptionProvider``), and a longer one would seem to work while
    meaning something else.
    """
    secret = str(secret).strip()
    if len(secret.encode("utf-8")) > SECRET_MAX_BYTES:
        raise ValueError(f"The secret may be at most {SECRET_MAX_BYTES} bytes long.")
    device.secret = secret
    device.save(update_fields=["secret"])
    _keys_changed(device.member.room_id, device.member_id)
    return device


def _keys_changed(room_pk, member_pk):
    """Make every process load the member's device keys again, after the commit."""

    def send():
        forget = keycache.member_changed(room_pk, member_pk)
        try:
            async_to_sync(get_channel_layer().group_send)(keycache.GROUP, forget)
        except Exception:  # the keys still expire (KEY_CACHE_S)
            log.warning("room %s: other processes not told of a key change", room_pk)

    transaction.on_commit(send)


def member_remove(*, member, replace_invite=False):
    """Remove a member and everything of theirs: positions, sockets, marker.

    ``replace_invite`` is for removals by the owner or an admin: the links the member
    knows stop working, so that they cannot join again at once. Those are the invite
    they joined by and, if they could see it, the member invite the room's map shows
    (:func:`maps.storage.selectors.map_invite`); each still usable one is revoked and replaced
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
    writing (maps.storage.history): taking this lock first makes a delete wait for that batch
    to commit, so the delete then sees, and removes, the positions just written,
    instead of failing on them. A batch that comes second finds the members gone.
    """
    list(members.select_for_update().values_list("pk", flat=True))


def invite_revoke(*, invite):
    """Revoke an invite and remove the members who joined through it.

    They have seen the room's map, so when one of them could see its invite link
    (:func:`maps.storage.selectors.map_invite`) and that is another invite, it is replaced too
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


WATCH_MINUTES_MIN = 15
WATCH_MINUTES_MAX = 7 * 24 * 60
MAX_WATCH_LINKS = 20


def watch_link_create(*, member, minutes=None):
    """Make a "watch me" link to ``member``'s marker; return ``(link, token)``.

    ``minutes`` (15 to 10,080, seven days) is how long it works; ``None`` means until
    the share running now ends (at its end time, or when the member turns it off).
    The token (192 random bits) is shown once: only its hash is stored. Raises
    ``ValueError`` for a duration out of range, for ``None`` without a running share,
    and past :data:`MAX_WATCH_LINKS` usable links; :class:`NotAllowed` for a viewer.
    """
    if not may_publish(member):
        raise NotAllowed("viewers do not share a position")
    now = timezone.now()
    if minutes is None:
        if member.share_state(now) != Share.ON:
            raise ValueError("start sharing first, or say for how many minutes")
        expires_at = member.sharing_until
    else:
        if not WATCH_MINUTES_MIN <= minutes <= WATCH_MINUTES_MAX:
            raise ValueError(f"a watch link lasts {WATCH_MINUTES_MIN} minutes to "
                             f"{WATCH_MINUTES_MAX // 1440} days")
        expires_at = now + timedelta(minutes=minutes)
    usable = [link for link in member.watch_links.filter(revoked=False)
              if link.is_usable(now)]
    if len(usable) >= MAX_WATCH_LINKS:
        raise ValueError(f"at most {MAX_WATCH_LINKS} watch links at a time: revoke one")
    token = new_watch_token()
    link = WatchLink.objects.create(member=member, token_hash=hash_key(token),
                                    expires_at=expires_at)
    return link, token


def watch_link_revoke(*, link):
    """Revoke a watch link: whoever watches through it is closed out (4403)."""
    WatchLink.objects.filter(pk=link.pk).update(revoked=True)
    _room_event(link.member.room_id, events.room_unwatch(link.pk))


# "Open on another device": how long a sign-in link works, and how many at a time.
SIGNIN_MINUTES = 10
MAX_SIGNIN_LINKS = 5


class SignInUnusable(Exception):
    """The sign-in link is unknown, used, expired or revoked."""


def signin_link_create(*, member, minutes=SIGNIN_MINUTES):
    """Make a one-time link that signs another browser in as ``member``.

    Returns ``(link, token)``; the token (192 random bits) is shown once, only its
    SHA-256 is stored. Works ``minutes`` minutes (1 to 1,440) and once. Raises
    ``ValueError`` for a duration out of range or past :data:`MAX_SIGNIN_LINKS`
    usable links.
    """
    if not 1 <= minutes <= 1440:
        raise ValueError("a sign-in link lasts 1 to 1,440 minutes")
    now = timezone.now()
    usable = [link for link in member.signin_links.all() if link.is_usable(now)]
    if len(usable) >= MAX_SIGNIN_LINKS:
        raise ValueError(f"at most {MAX_SIGNIN_LINKS} sign-in links at a time: revoke one")
    token = new_invite_token()
    link = SignInLink.objects.create(member=member, token_hash=hash_key(token),
                                     expires_at=now + timedelta(minutes=minutes))
    return link, token


def signin_link_redeem(*, token):
    """Use a sign-in link: return its member, and the link never works again.

    Raises :class:`SignInUnusable` for an unknown, used, expired or revoked token.
    """
    now = timezone.now()
    with transaction.atomic():
        # Locked: two browsers opening the same link at once must not both get in.
        link = (SignInLink.objects.select_for_update()
                .select_related("member__room").filter(token_hash=hash_key(token)).first())
        if link is None or not link.is_usable(now):
            raise SignInUnusable("this sign-in link is used, expired or revoked")
        link.used_at = now
        link.save(update_fields=["used_at"])
    return link.member


def signin_link_revoke(*, link):
    """Revoke a sign-in link that has not been used yet."""
    SignInLink.objects.filter(pk=link.pk).update(revoked=True)


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
    (:func:`maps.access.scope.history_scope`), so it applies at once. Raises ``ValueError``
    for another value.
    """
    if visibility not in HistoryVisibility.values:
        raise ValueError("history visibility is everyone, members or own")
    room.history_visibility = visibility
    room.save(update_fields=["history_visibility"])


PRUNE_BATCH = 5_000


# Rooms pruned together (one retention, one cutoff) per query.
PRUNE_ROOMS = 500


def positions_prune(*, now=None, rooms=None):
    """Delete positions older than their room's retention; return how many went.

    Place events (arrivals and departures) go with them, by the time they were made.

    Deletes in batches of :data:`PRUNE_BATCH` rows, each its own short transaction, so
    that the history writer is never held up for long; rooms of one retention are
    pruned together, :data:`PRUNE_ROOMS` at a time. Rooms that keep history and had
    live positions past it are then told (``room.retention``) to drop them, so nobody
    who joins later sees them. Safe to run at any time and concurrently with the service: the
    service runs it every ``GEOSHARE["PRUNE_EVERY_S"]`` seconds (maps.ops.maintenance), and
    ``manage.py prune`` runs it once.
    """
    now = now or timezone.now()
    deleted = 0
    if rooms is None:
        rooms = Room.objects.all().only("pk", "retention_days")
    # Rooms of one retention share one cutoff: their rows go by the same queries, in
    # chunks of rooms, rather than several queries per room (a server with thousands
    # of rooms spent seconds on it, make bench). Only rooms that had live positions
    # past it are told: the hubs' memory holds nothing the database no longer has.
    by_days = {}
    for room in rooms:
        by_days.setdefault(room.retention_days, []).append(room)
    for days, of_days in by_days.items():
        cutoff = now - of_days[0].retention()
        room_ids = [room.pk for room in of_days]
        for start in range(0, len(room_ids), PRUNE_ROOMS):
            chunk = room_ids[start:start + PRUNE_ROOMS]
            old = Position.objects.filter(member__room_id__in=chunk, received__lt=cutoff)
            while ids := list(old.values_list("pk", flat=True)[:PRUNE_BATCH]):
                count, _ = Position.objects.filter(pk__in=ids).delete()
                deleted += count
            PlaceEvent.objects.filter(room_id__in=chunk, created__lt=cutoff).delete()
            if days:
                stale = LivePosition.objects.filter(member__room_id__in=chunk,
                                                    received__lt=cutoff)
                told = sorted(set(stale.values_list("member__room_id", flat=True)))
                stale.delete()
                for room_pk in told:
                    _room_event(room_pk, events.room_retention(to_ms(cutoff)))
    return deleted


def _room_event(room_pk, message):
    """Send a room event from synchronous code, after the transaction commits."""

    def send():
        layer = get_channel_layer()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            forget = keycache.room_changed(room_pk, message)
            async_to_sync(layer.group_send)(events.room_group(room_pk), message)
            if forget is not None:
                async_to_sync(layer.group_send)(keycache.GROUP, forget)
        else:  # pragma: no cover - sync services are not called on the loop thread
            raise RuntimeError("call room services through database_sync_to_async")

    transaction.on_commit(send)


# -- places ----------------------------------------------------------------------------


def _place_number(data, field, low, high):
    value = data.get(field)
    if type(value) not in (int, float) or not math.isfinite(value):
        raise PlaceInvalid(field, f"{field} must be a number")
    if not low <= value <= high:
        raise PlaceInvalid(field, f"{field} must be between {low:g} and {high:g}")
    return float(value)


def place_values(data, *, partial=False):
    """Return the checked fields of a place from ``data`` (a decoded JSON object).

    ``name`` (1 to 60 characters once cleaned), ``lat`` (-90..90 degrees), ``lon``
    (-180..180), ``radius`` (25 m to 5 km). With ``partial`` only the fields present.
    Raises :class:`PlaceInvalid` naming the first bad field.
    """
    if type(data) is not dict:
        raise PlaceInvalid("body", "send a JSON object")
    limits = {"lat": (-90, 90), "lon": (-180, 180),
              "radius": (places.MIN_RADIUS_M, places.MAX_RADIUS_M)}
    values = {}
    for field in ("name", "lat", "lon", "radius"):
        if field not in data:
            if partial:
                continue
            raise PlaceInvalid(field, f"{field} is required")
        if field == "name":
            if type(data["name"]) is not str:
                raise PlaceInvalid("name", "name must be text")
            try:
                values["name"] = _clean_name(data["name"], limit=60)
            except ValueError:
                raise PlaceInvalid("name", "name is required") from None
        else:
            values[field] = _place_number(data, field, *limits[field])
    return values


def may_edit_place(member, place):
    """Return whether ``member`` may change or delete ``place``: its creator or the
    room's owner."""
    return member.role == Role.OWNER or place.created_by_id == member.pk


def _place_name_taken(room_id, name, exclude=None):
    found = Place.objects.filter(room_id=room_id, name__iexact=name)
    if exclude is not None:
        found = found.exclude(pk=exclude)
    return found.exists()


def _places_changed(room_id):
    Room.objects.filter(pk=room_id).update(places_changed=timezone.now())
    wire = [p.to_dict() for p in Place.objects.filter(room_id=room_id)]
    _room_event(room_id, events.room_places(wire))


def place_create(*, member, values):
    """Create a place of ``member``'s room from checked ``values`` (:func:`place_values`).

    Raises :class:`NotAllowed` for a viewer, :class:`TooManyPlaces` past
    :data:`MAX_PLACES_PER_ROOM`, :class:`PlaceInvalid` (``name``) for a name the room
    already has (ignoring case). Every map hears of it (``room.places``).
    """
    if not may_publish(member):
        raise NotAllowed("viewers cannot make places")
    with transaction.atomic():
        # The room row is the lock: two creations cannot both pass the count.
        Room.objects.select_for_update().filter(pk=member.room_id).first()
        if Place.objects.filter(room_id=member.room_id).count() >= MAX_PLACES_PER_ROOM:
            raise TooManyPlaces(f"a room has at most {MAX_PLACES_PER_ROOM} places")
        if _place_name_taken(member.room_id, values["name"]):
            raise PlaceInvalid("name", "this room already has a place of that name")
        place = Place.objects.create(room_id=member.room_id, created_by_id=member.pk,
                                     **values)
        _places_changed(member.room_id)
    return place


def place_update(*, member, place, values):
    """Change ``place`` (creator or owner only, else :class:`NotAllowed`)."""
    if not may_edit_place(member, place):
        raise NotAllowed("only the place's maker or the room's owner can change it")
    with transaction.atomic():
        if "name" in values and _place_name_taken(place.room_id, values["name"],
                                                  exclude=place.pk):
            raise PlaceInvalid("name", "this room already has a place of that name")
        for field, value in values.items():
            setattr(place, field, value)
        place.updated = timezone.now()
        place.save(update_fields=[*values, "updated"])
        _places_changed(place.room_id)
    return place


def place_delete(*, member, place):
    """Delete ``place`` and its events (creator or owner only, else :class:`NotAllowed`)."""
    if not may_edit_place(member, place):
        raise NotAllowed("only the place's maker or the room's owner can delete it")
    with transaction.atomic():
        room_id = place.room_id
        place.delete()
        _places_changed(room_id)


async def place_events_announce(created):
    """Tell each room of its new arrivals and departures (``room.place_event``).

    ``created`` is ``[(room id, member id, place id, kind, device time ms)]`` as the
    history writer stored them (maps.storage.history.evaluate_places), sent after the commit.
    """
    for room_id, member_id, place_id, kind, ts in created:
        await room_event_send(room_id,
                              events.room_place_event(member_id, place_id, kind, ts))


def place_for_region(*, room_id, rid, desc):
    """Return the place of room ``room_id`` a phone's region names, or ``None``.

    By the region id geoshare gave it (``geoshare-<id>``, maps.ingest.owntracks), else
    by name, ignoring case.
    """
    if rid.startswith("geoshare-") and rid[9:].isdigit():
        found = Place.objects.filter(room_id=room_id, pk=int(rid[9:])).first()
        if found is not None:
            return found
    if not desc:
        return None
    return Place.objects.filter(room_id=room_id, name__iexact=desc.strip()).first()


def place_transition_record(*, member, rid, desc, kind, ts):
    """Record a phone's own enter/leave report (OwnTracks ``transition``) for a place
    of ``member``'s room (a :class:`maps.domain.refs.MemberRef`); return the events stored
    (maps.storage.history.place_transition: never a second event for one crossing)."""
    from maps.storage.history import place_transition

    place = place_for_region(room_id=member.room_pk, rid=rid, desc=desc)
    if place is None:
        return []
    return place_transition(member.room_pk, member.id, place.pk, kind, ts)


def places_import(*, member, waypoints):
    """Make places of a phone's regions (``[Waypoint]``) the room does not have yet.

    By name, ignoring case; the radius is brought into 25 m..5 km; names cleaned as
    any place's; stops at :data:`MAX_PLACES_PER_ROOM`. Returns the places made.
    """
    made = []
    for waypoint in waypoints:
        try:
            values = place_values({
                "name": waypoint.desc, "lat": waypoint.lat, "lon": waypoint.lon,
                "radius": min(max(waypoint.rad, places.MIN_RADIUS_M),
                              places.MAX_RADIUS_M)})
        except PlaceInvalid:
            continue
        if _place_name_taken(member.room_id, values["name"]):
            continue
        try:
            made.append(place_create(member=member, values=values))
        except (TooManyPlaces, PlaceInvalid):
            break
    return made


def places_for_device(*, device):
    """Return the room's places for the phone of ``device`` if they changed since it
    last got them (``[dict]`` with ``created`` in epoch seconds), else ``None``; marks
    them sent."""
    room = Room.objects.filter(pk=device.member.room_id).only("places_changed").first()
    if room is None or room.places_changed is None:
        return None
    if device.places_sent is not None and device.places_sent >= room.places_changed:
        return None
    found = [{**p.to_dict(), "created": int(p.created.timestamp())}
             for p in Place.objects.filter(room_id=room.pk)]
    Device.objects.filter(pk=device.pk).update(places_sent=room.places_changed)
    device.places_sent = room.places_changed
    return found


MAX_ALERT_RULES = 50


def alert_rules_set(*, member, rules):
    """Replace ``member``'s alert rules with ``rules`` (a decoded JSON list of
    ``{"member": id or null, "place": id or null}``, null meaning any).

    Every id must be a member or a place of the room. At most
    :data:`MAX_ALERT_RULES`. Raises :class:`PlaceInvalid` naming the bad field
    (``rules``, ``member`` or ``place``). Returns the stored rules as dicts.
    """
    if type(rules) is not list:
        raise PlaceInvalid("rules", "rules must be a list")
    if len(rules) > MAX_ALERT_RULES:
        raise PlaceInvalid("rules", f"at most {MAX_ALERT_RULES} alert rules")
    members = set(Member.objects.filter(room_id=member.room_id)
                  .values_list("pk", flat=True))
    place_ids = set(Place.objects.filter(room_id=member.room_id)
                    .values_list("pk", flat=True))
    wanted = []
    for rule in rules:
        if type(rule) is not dict or set(rule) - {"member", "place"}:
            raise PlaceInvalid("rules", 'each rule is {"member": id|null, '
                                        '"place": id|null}')
        watched, place = rule.get("member"), rule.get("place")
        if watched is not None and (type(watched) is not int or watched not in members):
            raise PlaceInvalid("member", "member must be a member of the room, or null")
        if place is not None and (type(place) is not int or place not in place_ids):
            raise PlaceInvalid("place", "place must be a place of the room, or null")
        if (watched, place) not in wanted:
            wanted.append((watched, place))
    with transaction.atomic():
        AlertRule.objects.filter(member_id=member.pk).delete()
        AlertRule.objects.bulk_create([
            AlertRule(member_id=member.pk, watched_id=w, place_id=p) for w, p in wanted])
    return [{"member": w, "place": p} for w, p in wanted]
