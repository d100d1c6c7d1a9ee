"""The one publisher: the only module of maps/ that sends room events on the channel layer.

Every service that changes a room asks it to tell the room (:func:`room_event_send` from
the event loop, :func:`room_event_on_commit` from synchronous code inside a
transaction), and the history writer reports each commit's arrivals and departures
to it through the callback :func:`install` registers (:func:`batch_committed`). The
hubs' own bookkeeping between processes (``room.hello``, ``room.sync``,
``room.presence``, ``room.beat``) stays in :mod:`maps.realtime.hub`.

An event that changes what the doors rely on (a share, a member, a key, the room's
places; :data:`FORGETTING_EVENTS`) also makes every process forget the device keys it
keeps of that member or room: this process at once, through the hooks registered
with :func:`on_forget` (the key cache, :mod:`maps.access.keycache`), and every other
through a ``keys.forget`` message to :data:`maps.protocol.events.KEYS_GROUP`.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, cast

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from maps.protocol import events
from maps.storage import history

log = logging.getLogger(__name__)

#: The room events after which a room's (or one member's) device keys are loaded again.
FORGETTING_EVENTS = frozenset({"room.share", "room.stop", "room.member", "room.kick",
                               "room.rekey", "room.deleted", "room.places"})

#: ``hook(message)`` for each ``keys.forget`` this process sends, called before it is
#: sent (registered by :func:`on_forget`).
_forget_hooks: list[Callable[[events.KeysForget], None]] = []

#: A place event as the history writer stored it:
#: ``(room id, member id, place id, kind, device time ms)``.
PlaceEventRow = history.PlaceEventRow


def on_forget(hook: Callable[[events.KeysForget], None]) -> None:
    """Call ``hook(message)`` in this process for every ``keys.forget`` it sends.

    Registered once at start-up (``maps.apps``): the key cache forgets at once what a
    change made stale, before the change is announced to the other processes.
    """
    if hook not in _forget_hooks:
        _forget_hooks.append(hook)


def forget_message(room_pk: int, event: Mapping[str, Any] | None = None) -> events.KeysForget | None:
    """Return the ``keys.forget`` that ``event`` calls for in room ``room_pk``, or ``None``.

    ``event`` is the room event being sent (``None``: the whole room). Events that change
    nothing a door relies on (positions, presence) forget nothing; those about one
    member (a share, a stop, a change, a removal, a key) that member's keys; the rest
    (the room deleted, its places changed) the room's.
    """
    if event is not None and event["type"] not in FORGETTING_EVENTS:
        return None
    member = event.get("member") if event is not None else None
    if type(member) is dict:  # room.member carries the member's info
        member = member.get("id")
    if type(member) is int:
        return events.keys_forget(room_pk, member)
    return events.keys_forget(room_pk)


def _forget_here(message: events.KeysForget) -> None:
    for hook in _forget_hooks:
        hook(message)


async def room_event_send(room_pk: int, event: Mapping[str, Any]) -> None:
    """Send a room event (a :mod:`maps.protocol.events` builder's dict) to the room's hubs.

    From the event loop. An event of :data:`FORGETTING_EVENTS` makes every process
    forget the keys it concerns (this one first). Raises what the channel layer raises
    (the caller decides whether a layer that is away undoes its answer).
    """
    layer = get_channel_layer()
    forget = forget_message(room_pk, event)
    if forget is not None:
        _forget_here(forget)
    await layer.group_send(events.room_group(room_pk), event)
    if forget is not None:
        await layer.group_send(events.KEYS_GROUP, forget)


def room_event_on_commit(room_pk: int, event: Mapping[str, Any]) -> None:
    """Send a room event from synchronous code, once the transaction commits.

    Called by the synchronous services inside their transaction (or outside one: then
    at once). Raises ``RuntimeError`` when the send happens on the event loop's thread
    (call the service through ``database_sync_to_async``).
    """

    def send() -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            async_to_sync(room_event_send)(room_pk, event)
        else:  # pragma: no cover - sync services are not called on the loop thread
            raise RuntimeError("call room services through database_sync_to_async")

    transaction.on_commit(send)


def keys_changed_on_commit(room_pk: int, member_pk: int) -> None:
    """Make every process load member ``member_pk``'s device keys again, after the commit.

    For changes that no room event carries (a device's OwnTracks secret). A channel
    layer that is away is logged: the other processes' keys still expire
    (``GEOSHARE["KEY_CACHE_S"]``).
    """

    def send() -> None:
        forget = events.keys_forget(room_pk, member_pk)
        _forget_here(forget)
        try:
            async_to_sync(get_channel_layer().group_send)(events.KEYS_GROUP, forget)
        except Exception:
            log.warning("room %s: other processes not told of a key change", room_pk)

    transaction.on_commit(send)


async def position_announce(room_pk: int, wire: events.WirePosition) -> None:
    """Tell the room's hubs of a member's newest accepted position (``room.fix``).

    The one rule for every door (docs/protocol.md, "When a position is announced"): a
    position is announced once accepted, before its commit; a phone door answers only
    after the commit. Raises what the channel layer raises.
    """
    await room_event_send(room_pk, events.room_fix(wire))


async def place_events_announce(created: Iterable[PlaceEventRow]) -> None:
    """Tell each room of its new arrivals and departures (``room.place_event``).

    ``created`` is ``[(room id, member id, place id, kind, device time ms)]``: computed
    from positions by the history writer (:func:`maps.storage.history.evaluate_places`)
    or reported by a phone (:func:`maps.services.places.place_transition_record`), and
    sent after their commit either way.
    """
    for room_id, member_id, place_id, kind, ts in created:
        await room_event_send(room_id,
                              events.room_place_event(
                                  member_id, place_id,
                                  cast(Literal["enter", "leave"], kind), ts))


def place_events_on_commit(created: list[PlaceEventRow]) -> None:
    """Announce place events stored by synchronous code, once its transaction commits
    (:func:`place_events_announce`; a phone's own report, from a thread)."""
    transaction.on_commit(lambda: async_to_sync(batch_committed)(created))


async def batch_committed(place_events: list[PlaceEventRow]) -> None:
    """The history writer's callback after each commit: announce its place events.

    A channel layer that is away is logged, not raised: the events are stored, and the
    ``/events`` API lists them.
    """
    try:
        await place_events_announce(place_events)
    except Exception:
        log.warning("place events stored but not announced (channel layer away)")


def install() -> None:
    """Register :func:`batch_committed` with the history writer (``maps.apps`` at start-up)."""
    history.on_commit(batch_committed)
