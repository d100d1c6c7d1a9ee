"""Shares (a member showing their marker, until a time or until stopped) and watch-me links."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from maps.domain import sources
from maps.domain.fixes import now_ms
from maps.domain.policy import may_publish
from maps.domain.refs import MemberRef
from maps.domain.sources import SOURCE_NAME_MAX
from maps.models import (
    LivePosition,
    Member,
    Share,
    WatchLink,
    hash_key,
    new_watch_token,
)
from maps.protocol import events
from maps.services import publish
from maps.services.errors import NotAllowed
from maps.storage.selectors import from_ms, to_ms


def _share_on(member_id: int, until: datetime | None, now: datetime, source: str,
              source_name: str) -> None:
    """Turn the member's share on, to end at ``until`` (or when they stop), its
    positions coming from ``source``.

    A share that is not running at ``now`` (off, or ended by its end time with nothing
    written down yet) is a new share: the links bound to the old one are revoked first,
    so that they never show it. A running share that moves to another source forgets
    its live position: the new source's first fix replaces it whatever the two devices'
    clocks say (a live position is replaced only by a newer device time,
    maps.storage.history).
    """
    with transaction.atomic():
        # Locked: a stop or the maintenance loop ending the share at the same moment
        # must not leave a bound link of the old share usable under the new one.
        member = Member.objects.select_for_update().filter(pk=member_id).first()
        if member is None:  # removed meanwhile: nothing to share
            return
        if member.share_state(now) != Share.ON:
            WatchLink.objects.filter(member_id=member_id, bound_to_share=True,
                                     revoked=False).update(revoked=True)
        elif member.share_source != source:
            LivePosition.objects.filter(member_id=member_id).delete()
        Member.objects.filter(pk=member_id).update(
            share=Share.ON, sharing_until=until, share_source=source,
            share_source_name=source_name)


async def ashare_start(*, ref: MemberRef, until_ms: int | None = None,
                       source: str = "", source_name: str = "") -> None:
    """Start or change the share of the member ``ref`` names.

    ``until_ms`` is when it ends by itself (epoch ms) or ``None`` for when the member
    turns it off; ``source`` is where its positions will come from (a
    :mod:`maps.domain.sources` string; ``""``: the next position claims it) and
    ``source_name`` that source's name (cut to 40 characters). A running share's
    source is replaced: the door decides first whether it may be
    (:func:`maps.domain.policy.may_take_share`). Changing a running share keeps its
    "until my share ends" links; a new share starts without them. The room's hubs hear
    ``room.share``. Raises :class:`NotAllowed` for a viewer, ``ValueError`` for an end
    that is not in the future, and what the channel layer raises.
    """
    if not may_publish(ref):
        raise NotAllowed("viewers cannot share a position")
    if until_ms is not None and until_ms <= now_ms():
        raise ValueError("until must be in the future")
    until = None if until_ms is None else from_ms(until_ms)
    source_name = source_name[:SOURCE_NAME_MAX]
    await database_sync_to_async(_share_on)(ref.id, until, timezone.now(), source,
                                            source_name)
    await publish.room_event_send(
        ref.room_pk, events.room_share(ref.id, until_ms, source, source_name))


async def ashare_claim(*, ref: MemberRef, source: str, source_name: str,
                       start: bool, until_ms: int | None = None) -> bool:
    """Make ``source`` the source of the member's share, if nobody else did first.

    With ``start``, a first position starts an open-ended share (the member never
    shared: :func:`maps.domain.policy.share_gate` said ``"start"``); without, it
    claims a running share (ending at ``until_ms``, epoch ms or ``None``) whose
    source is not recorded yet (``"claim"``). The row is changed only while it is
    still so (one conditional ``UPDATE``), so of two sources at once one wins.
    Returns whether this one did (then the room's hubs hear ``room.share``). Raises
    :class:`NotAllowed` for a viewer and what the channel layer raises.
    """
    if not may_publish(ref):
        raise NotAllowed("viewers cannot share a position")
    source_name = source_name[:SOURCE_NAME_MAX]
    rows = Member.objects.filter(pk=ref.id)
    if start:
        rows = rows.filter(share=Share.OFF)
        changes: dict = {"share": Share.ON, "sharing_until": None}
        until_ms = None
    else:
        rows = rows.filter(share=Share.ON, share_source__in=sources.claimable(source))
        changes = {}
    won = await database_sync_to_async(rows.update)(
        share_source=source, share_source_name=source_name, **changes)
    if won:
        await publish.room_event_send(
            ref.room_pk, events.room_share(ref.id, until_ms, source, source_name))
    return bool(won)


def _share_end(member_ids: Iterable[int], at: datetime) -> list[int]:
    """Write down that these members' shares ended at ``at``; forget their positions.

    Their live positions go, and so do the watch links that ended with the share.
    Returns the ids of those links.
    """
    with transaction.atomic():
        Member.objects.filter(pk__in=member_ids).update(
            share=Share.ENDED, sharing_until=None, stopped_at=at, share_source="",
            share_source_name="")
        LivePosition.objects.filter(member_id__in=member_ids).delete()
        links = WatchLink.objects.filter(member_id__in=member_ids, bound_to_share=True,
                                         revoked=False)
        ids = list(links.values_list("pk", flat=True))
        links.update(revoked=True)
    return ids


async def amember_stop_sharing(*, ref: MemberRef) -> None:
    """End the share of the member ``ref`` names: the marker goes.

    Records the end first (an aware UTC datetime, sent as epoch ms in ``room.stop``),
    so that no later snapshot, friends answer or restart shows a position received
    before it, then tells the room's hubs. Positions are refused from then on until
    the member shares again (:func:`ashare_start`). Raises what the channel layer
    raises (the end is stored by then).
    """
    at = timezone.now()
    await database_sync_to_async(_share_end)([ref.id], at)
    await publish.room_event_send(ref.room_pk, events.room_stop(ref.id, to_ms(at)))


def shares_expire(*, now: datetime | None = None) -> int:
    """Write down every share whose end time has passed; return how many ended.

    ``now`` is an aware UTC datetime (default the present). Raises nothing.

    The hubs end them on the map at their end time by themselves (maps.realtime.hub); this
    makes it true in the database too (run by maps.ops.maintenance and by the hubs).
    """
    now = now or timezone.now()
    due = list(Member.objects.filter(share=Share.ON, sharing_until__lte=now)
               .values_list("pk", "sharing_until"))
    for member_id, until in due:
        assert until is not None  # sharing_until__lte matched it
        _share_end([member_id], until)
    return len(due)


WATCH_MINUTES_MIN = 15


WATCH_MINUTES_MAX = 7 * 24 * 60


MAX_WATCH_LINKS = 20


def watch_link_create(*, member: Member,
                      minutes: int | None = None) -> tuple[WatchLink, str]:
    """Make a "watch me" link to ``member``'s marker; return ``(link, token)``.

    ``minutes`` (15 to 10,080, seven days) is how long it works: it shows the member's
    marker whenever they share within that time. ``None`` binds it to the share running
    now: it works while that share runs (changing its end keeps it), and stopping it, or
    its end time, revokes the link; seven days at most either way
    (:func:`maps.domain.policy.watch_link_shows`). The token (192 random bits) is shown
    once: only its hash is stored. Raises ``ValueError`` for a duration out of range, for
    ``None`` without a running share, and past :data:`MAX_WATCH_LINKS` usable links
    (counted with the member's row locked, so requests at once cannot pass it);
    :class:`NotAllowed` for a viewer.
    """
    if not may_publish(member):
        raise NotAllowed("viewers do not share a position")
    now = timezone.now()
    if minutes is None:
        if member.share_state(now) != Share.ON:
            raise ValueError("start sharing first, or say for how many minutes")
        expires_at = now + timedelta(minutes=WATCH_MINUTES_MAX)
    else:
        if not WATCH_MINUTES_MIN <= minutes <= WATCH_MINUTES_MAX:
            raise ValueError(f"a watch link lasts {WATCH_MINUTES_MIN} minutes to "
                             f"{WATCH_MINUTES_MAX // 1440} days")
        expires_at = now + timedelta(minutes=minutes)
    with transaction.atomic():
        # The member row locked, so that two requests cannot both make the last link
        # (without it, 32 at once made 32 of 20: tests/test_postgres.py).
        Member.objects.select_for_update().filter(pk=member.pk).first()
        usable = [link for link in member.watch_links.filter(revoked=False)
                  if link.is_usable(now)]
        if len(usable) >= MAX_WATCH_LINKS:
            raise ValueError(f"at most {MAX_WATCH_LINKS} watch links at a time: "
                             "revoke one")
        token = new_watch_token()
        link = WatchLink.objects.create(member=member, token_hash=hash_key(token),
                                        expires_at=expires_at,
                                        bound_to_share=minutes is None)
    return link, token


def watch_link_revoke(*, link: WatchLink) -> None:
    """Revoke a watch link: whoever watches through it is closed out (4403).

    Told to the room (``room.unwatch``) after the commit. Raises nothing.
    """
    WatchLink.objects.filter(pk=link.pk).update(revoked=True)
    publish.room_event_on_commit(link.member.room_id, events.room_unwatch(link.pk))
