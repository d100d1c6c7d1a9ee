"""Places (circles in a room), a phone's own region reports, and members' alert rules."""

import math
from collections.abc import Iterable
from typing import Any, Literal, Protocol, TypedDict

from django.db import transaction
from django.utils import timezone

from maps.domain import places, policy
from maps.domain.policy import may_publish
from maps.domain.refs import MemberRef
from maps.models import (
    AlertRule,
    Device,
    Member,
    Place,
    Room,
)
from maps.protocol import events
from maps.services import publish
from maps.services.errors import NotAllowed, PlaceInvalid, TooManyPlaces
from maps.services.names import clean_name
from maps.storage.history import place_transition

MAX_PLACES_PER_ROOM = 100
#: The longest place name, in characters once cleaned (:func:`maps.services.names.clean_name`).
MAX_PLACE_NAME = 60


class PlaceValues(TypedDict, total=False):
    """A place's checked fields (:func:`place_values`): all four, or with ``partial``
    those present."""

    name: str
    lat: float  # degrees, -90..90
    lon: float  # degrees, -180..180
    radius: float  # metres


class Region(Protocol):
    """A region a phone defined (an OwnTracks waypoint,
    :class:`maps.ingest.owntracks.Waypoint`): ``desc``, centre in degrees, ``rad`` in
    metres."""

    @property
    def desc(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def rad(self) -> float: ...


_NumberField = Literal["lat", "lon", "radius"]


def _place_number(data: dict[str, Any], field: _NumberField, low: float,
                  high: float) -> float:
    value = data.get(field)
    # JSON's true and false are ints to Python, not numbers here.
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise PlaceInvalid(field, f"{field} must be a number")
    if not low <= value <= high:
        raise PlaceInvalid(field, f"{field} must be between {low:g} and {high:g}")
    return float(value)


def place_values(data: object, *, partial: bool = False,
                 cut_name: bool = False) -> PlaceValues:
    """Return the checked fields of a place from ``data`` (a decoded JSON object).

    ``name`` (1 to :data:`MAX_PLACE_NAME` characters once cleaned; a longer one is
    refused, or with ``cut_name`` cut to fit, as a phone's region names are),
    ``lat`` (-90..90 degrees), ``lon`` (-180..180), ``radius`` (25 m to 5 km). With
    ``partial`` only the fields present. Raises :class:`PlaceInvalid` naming the first
    bad field (``body`` when ``data`` is not an object).
    """
    if type(data) is not dict:
        raise PlaceInvalid("body", "send a JSON object")
    values: PlaceValues = {}
    if "name" in data:
        if type(data["name"]) is not str:
            raise PlaceInvalid("name", "name must be text")
        # Cleaned whole (NFC grows a text by at most three times), then measured.
        whole = len(data["name"]) * 3
        try:
            name = clean_name(data["name"], limit=MAX_PLACE_NAME if cut_name else whole)
        except ValueError:
            raise PlaceInvalid("name", "name is required") from None
        if len(name) > MAX_PLACE_NAME:
            raise PlaceInvalid("name", f"name must be at most {MAX_PLACE_NAME} characters")
        values["name"] = name
    elif not partial:
        raise PlaceInvalid("name", "name is required")
    limits: tuple[tuple[_NumberField, float, float], ...] = (
        ("lat", -90, 90), ("lon", -180, 180),
        ("radius", places.MIN_RADIUS_M, places.MAX_RADIUS_M))
    for field, low, high in limits:
        if field not in data:
            if partial:
                continue
            raise PlaceInvalid(field, f"{field} is required")
        values[field] = _place_number(data, field, low, high)
    return values


def may_edit_place(member: Member, place: Place) -> bool:
    """Return whether ``member`` may change or delete ``place``: its creator or the
    room's owner (the rule: :func:`maps.domain.policy.may_edit_place`). Raises nothing."""
    return policy.may_edit_place(member.role, member.pk, place.created_by_id)


def _place_name_taken(room_id: int, name: str, exclude: int | None = None) -> bool:
    found = Place.objects.filter(room_id=room_id, name__iexact=name)
    if exclude is not None:
        found = found.exclude(pk=exclude)
    return found.exists()


def _places_changed(room_id: int) -> None:
    Room.objects.filter(pk=room_id).update(places_changed=timezone.now())
    wire = [p.to_dict() for p in Place.objects.filter(room_id=room_id)]
    publish.room_event_on_commit(room_id, events.room_places(wire))


def place_create(*, member: Member, values: PlaceValues) -> Place:
    """Create a place of ``member``'s room from checked ``values`` (:func:`place_values`).

    Raises :class:`NotAllowed` for a viewer, :class:`TooManyPlaces` past
    :data:`MAX_PLACES_PER_ROOM`, :class:`PlaceInvalid` (``name``) for a name the room
    already has (ignoring case), ``KeyError`` when ``values`` lacks a field. Returns
    the place; every map hears of it (``room.places``) after the commit.
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


def place_update(*, member: Member, place: Place, values: PlaceValues) -> Place:
    """Change ``place`` to the checked ``values`` (:func:`place_values`, partial) and
    return it.

    Creator or owner only, else :class:`NotAllowed`; :class:`PlaceInvalid`
    (``name``) for a name another place of the room has (ignoring case). Every map
    hears of it (``room.places``) after the commit.
    """
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


def place_delete(*, member: Member, place: Place) -> None:
    """Delete ``place`` and its events (creator or owner only, else :class:`NotAllowed`).

    Every map hears of it (``room.places``) after the commit.
    """
    if not may_edit_place(member, place):
        raise NotAllowed("only the place's maker or the room's owner can delete it")
    with transaction.atomic():
        room_id = place.room_id
        place.delete()
        _places_changed(room_id)


def place_for_region(*, room_id: int, rid: str, desc: str | None) -> Place | None:
    """Return the place of room ``room_id`` a phone's region names, or ``None``.

    By the region id geoshare gave it (``geoshare-<id>``, maps.ingest.owntracks), else
    by name (``desc``, cleaned and cut as :func:`places_import` cuts it), ignoring
    case. Raises nothing.
    """
    if rid.startswith("geoshare-") and rid[9:].isdigit():
        found = Place.objects.filter(room_id=room_id, pk=int(rid[9:])).first()
        if found is not None:
            return found
    if not desc:
        return None
    try:
        name = clean_name(desc, limit=MAX_PLACE_NAME)
    except ValueError:
        return None
    return Place.objects.filter(room_id=room_id, name__iexact=name).first()


def place_transition_record(*, ref: MemberRef, rid: str, desc: str, kind: str,
                            ts: int) -> list[publish.PlaceEventRow]:
    """Record a phone's own enter/leave report (OwnTracks ``transition``) for a place
    of the room of the member ``ref`` names; return the new events
    (``[(room id, member id, place id, kind, device time ms)]``, empty when the
    region names no place or the crossing is known already).

    ``kind`` is ``"enter"`` or ``"leave"``, ``ts`` the device time (epoch ms). The same
    stored state as the crossings computed from positions decides
    (:func:`maps.storage.history.place_transition`: never a second event for one
    crossing), and the events take the same route: announced after the commit by the
    one publisher (:func:`maps.services.publish.place_events_on_commit`). In a
    live-only room the event is announced but not stored.
    """
    place = place_for_region(room_id=ref.room_pk, rid=rid, desc=desc)
    if place is None:
        return []
    # As the positions' history: the retention as it is set now; a live-only room
    # keeps no events (announced live, not stored).
    days = Room.objects.filter(pk=ref.room_pk).values_list("retention_days",
                                                           flat=True).first()
    with transaction.atomic():
        created = place_transition(ref.room_pk, ref.id, place.pk, kind, ts,
                                   keep=days != 0)
        if created:
            publish.place_events_on_commit(created)
    return created


def places_import(*, member: Member, waypoints: Iterable[Region]) -> list[Place]:
    """Make places of a phone's regions (:class:`Region`) the room does not have yet.

    By name, ignoring case; the radius is brought into 25 m..5 km; names cleaned as
    any place's and cut to :data:`MAX_PLACE_NAME` characters (the app named them, not
    the member, and nobody could be told); regions that are still invalid are skipped; stops at
    :data:`MAX_PLACES_PER_ROOM`. Returns the places made. Raises :class:`NotAllowed`
    for a viewer.
    """
    made: list[Place] = []
    for waypoint in waypoints:
        try:
            values = place_values({
                "name": waypoint.desc, "lat": waypoint.lat, "lon": waypoint.lon,
                "radius": min(max(waypoint.rad, places.MIN_RADIUS_M),
                              places.MAX_RADIUS_M)}, cut_name=True)
        except PlaceInvalid:
            continue
        if _place_name_taken(member.room_id, values["name"]):
            continue
        try:
            made.append(place_create(member=member, values=values))
        except (TooManyPlaces, PlaceInvalid):
            break
    return made


def places_for_device(*, device: Device) -> list[dict[str, Any]] | None:
    """Return the room's places for the phone of ``device`` if they changed since it
    last got them (``[dict]``: :meth:`maps.models.Place.to_dict` with ``created`` in
    epoch seconds), else ``None``; marks them sent. Raises nothing."""
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


def alert_rules_set(*, member: Member, rules: object) -> list[dict[str, int | None]]:
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
    wanted: list[tuple[int | None, int | None]] = []
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
