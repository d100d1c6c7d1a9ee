"""Positions: the publish path every door calls, and pruning past a room's retention."""

import logging
from collections.abc import Iterable
from datetime import datetime
from operator import attrgetter

from django.utils import timezone

from maps.domain.fixes import Fix, now_ms
from maps.domain.policy import may_publish
from maps.domain.refs import MemberRef
from maps.models import (
    LivePosition,
    PlaceEvent,
    Position,
    Room,
)
from maps.protocol import events
from maps.protocol.events import WirePosition
from maps.services import publish
from maps.services.errors import NotAllowed
from maps.storage.history import history_writer
from maps.storage.selectors import to_ms

log = logging.getLogger(__name__)


async def positions_publish(*, ref: MemberRef, fixes: list[Fix], durable: bool = False,
                            received_ms: int | None = None,
                            device_id: int | None = None) -> WirePosition:
    """Record and announce positions of the member ``ref`` names.

    ``fixes`` are validated :class:`~maps.domain.fixes.Fix` values (several: a phone's
    offline batch). They join the batched history, the newest by device time becoming
    the member's live position, and the newest is announced once to the room's hubs
    (:func:`maps.services.publish.position_announce`, ``room.fix``), which show it on
    every member's map. The rule is the same for every door (docs/protocol.md, "When a
    position is announced"): a position is announced once accepted, before its commit.
    With ``durable`` (the phone doors) this returns only once the positions are
    committed (group commit, :mod:`maps.storage.history`): a success answer means
    stored; a channel layer that is away does not undo that answer (the hubs resync
    when it is back). ``received_ms`` is the receive time (epoch ms, default now).
    ``device_id`` is the :class:`~maps.models.Device` whose key sent them: its
    ``last_seen`` (the "last report" of "Connect a phone") is written with them.
    Returns the :class:`~maps.protocol.events.WirePosition` announced.

    Raises :class:`NotAllowed` for a member who may not publish (a viewer),
    :class:`maps.storage.history.StoreFailed` when a durable batch could not be
    committed, and (not durable) what the channel layer raises. The member's share is
    the caller's to check first (:func:`maps.domain.policy.share_gate`).
    """
    if not may_publish(ref):
        raise NotAllowed("viewers cannot share a position")
    received_ms = now_ms() if received_ms is None else received_ms
    newest = max(fixes, key=attrgetter("ts"))
    wire = newest.to_wire(ref.id, received_ms)
    writer = history_writer()
    if durable:
        stored = writer.add(ref.id, fixes, received_ms, durable=True,
                            device_id=device_id)
        assert stored is not None  # durable: a future
        try:
            await publish.position_announce(ref.room_pk, wire)
        except Exception:
            log.warning("room %s: a position not announced (channel layer away)",
                        ref.room_pk)
        await stored
        return wire
    writer.add(ref.id, fixes, received_ms, device_id=device_id)
    await publish.position_announce(ref.room_pk, wire)
    return wire


async def position_publish(*, ref: MemberRef, fix: Fix, durable: bool = False,
                           received_ms: int | None = None) -> WirePosition:
    """Record and announce one position: :func:`positions_publish` of ``[fix]``."""
    return await positions_publish(ref=ref, fixes=[fix], durable=durable,
                                   received_ms=received_ms)


PRUNE_BATCH = 5_000


# Rooms pruned together (one retention, one cutoff) per query.
PRUNE_ROOMS = 500


def positions_prune(*, now: datetime | None = None,
                    rooms: Iterable[Room] | None = None) -> int:
    """Delete positions older than their room's retention; return how many went.

    ``now`` is an aware UTC datetime (default the present); ``rooms`` the rooms to
    prune (default all of them; each needs ``pk`` and ``retention_days``).

    Place events (arrivals and departures) go with them, by the time they were made.

    Deletes in batches of :data:`PRUNE_BATCH` rows, each its own short transaction, so
    that the history writer is never held up for long; rooms of one retention are
    pruned together, :data:`PRUNE_ROOMS` at a time. Rooms that keep history and had
    live positions past it are then told (``room.retention``) to drop them, so nobody
    who joins later sees them. Safe to run at any time and concurrently with the service: the
    service runs it every ``GEOSHARE["PRUNE_EVERY_S"]`` seconds (maps.ops.maintenance), and
    ``manage.py prune`` runs it once. Raises only what the database raises.
    """
    now = now or timezone.now()
    deleted = 0
    if rooms is None:
        rooms = Room.objects.all().only("pk", "retention_days")
    # Rooms of one retention share one cutoff: their rows go by the same queries, in
    # chunks of rooms, rather than several queries per room (a server with thousands
    # of rooms spent seconds on it, make bench). Only rooms that had live positions
    # past it are told: the hubs' memory holds nothing the database no longer has.
    by_days: dict[int, list[Room]] = {}
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
                    publish.room_event_on_commit(room_pk, events.room_retention(to_ms(cutoff)))
    return deleted
