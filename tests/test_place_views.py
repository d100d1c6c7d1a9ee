"""Places over HTTP (maps.web.place_views) and where their events are computed
(maps.storage.history.evaluate_places), with the frames a map gets (places, place_event)."""

import json
import math
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from maps.domain.fixes import Fix, now_ms
from maps.models import Place, PlaceEvent, PlaceState
from maps.protocol import events
from maps.services import (
    MAX_PLACE_NAME,
    MAX_PLACES_PER_ROOM,
    place_create,
    place_for_region,
    places_import,
    positions_prune,
)
from maps.storage.history import history_writer, write_batch
from tests.test_api_views import as_session, bearer

LAT, LON = 46.05, 14.5
T0 = 1763700000000


def east(metres):
    dlon = metres / (6_371_008.8 * math.cos(math.radians(LAT))) * 180 / math.pi
    return LAT, LON + dlon


def walk(member, metres_list, *, start=T0, step=10_000, accuracy=10.0):
    """Fixes of ``member`` at those distances east of the place, 10 s apart."""
    return [(member.pk, Fix(lat=east(d)[0], lon=east(d)[1], accuracy=accuracy,
                            ts=start + i * step), start + i * step)
            for i, d in enumerate(metres_list)]


def url(room, suffix=""):
    return f"/api/rooms/{room.public_id}/places{suffix}"


def post(client, room, data, **extra):
    return client.post(url(room), json.dumps(data), content_type="application/json",
                       **extra)


SCHOOL = {"name": "School", "lat": LAT, "lon": LON, "radius": 100}


@pytest.fixture
def school(member):
    return place_create(member=member, values={**SCHOOL, "radius": 100.0})


# -- the API --------------------------------------------------------------------------


def test_member_creates_a_place_with_a_device_key(room, member, member_key):
    response = post(Client(), room, SCHOOL, **bearer(member_key))
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "School" and body["radius"] == 100 and \
        body["created_by"] == member.pk
    listed = Client().get(url(room), **bearer(member_key)).json()
    assert [p["name"] for p in listed["places"]] == ["School"]


def test_viewer_cannot_create_a_place(room, viewer_key):
    assert post(Client(), room, SCHOOL, **bearer(viewer_key)).status_code == 403


def test_stranger_is_refused(room, stranger_key):
    assert post(Client(), room, SCHOOL, **bearer(stranger_key)).status_code == 404
    assert Client().get(url(room)).status_code == 401


@pytest.mark.parametrize("field, value", [
    ("name", ""), ("name", 5), ("lat", 91), ("lon", "x"), ("radius", 24),
    ("radius", 5001), ("lat", None),
])
def test_bad_input_is_400_naming_the_field(room, member_key, field, value):
    response = post(Client(), room, {**SCHOOL, field: value}, **bearer(member_key))
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_missing_field_and_bad_json_are_400(room, member_key):
    data = dict(SCHOOL)
    del data["radius"]
    assert post(Client(), room, data, **bearer(member_key)).json()["field"] == "radius"
    response = Client().post(url(room), "{", content_type="application/json",
                             **bearer(member_key))
    assert response.status_code == 400 and response.json()["field"] == "body"


def test_duplicate_name_is_refused(room, member_key, school):
    response = post(Client(), room, {**SCHOOL, "name": "school"}, **bearer(member_key))
    assert response.status_code == 400 and response.json()["field"] == "name"


def test_a_name_over_60_characters_is_400_not_cut(room, member, member_key, school):
    sixty = "Grandmother's house by the old mill at the end of the lane.."
    assert len(sixty) == MAX_PLACE_NAME == 60
    for name in (sixty + "!", sixty + " x", "ü" * 61, "学校" * 31):
        response = post(Client(), room, {**SCHOOL, "name": name}, **bearer(member_key))
        assert response.status_code == 400, name
        assert response.json() == {"error": "name must be at most 60 characters",
                                   "field": "name"}
        response = Client().patch(url(room, f"/{school.pk}"), json.dumps({"name": name}),
                                  content_type="application/json", **bearer(member_key))
        assert response.status_code == 400 and response.json()["field"] == "name"
    assert [p.name for p in Place.objects.filter(room=room)] == ["School"]
    # Sixty is taken whole; the spaces around a name are not part of it.
    response = post(Client(), room, {**SCHOOL, "name": f"  {sixty}  "}, **bearer(member_key))
    assert response.status_code == 201 and response.json()["name"] == sixty


def test_a_phones_long_region_name_is_cut_to_fit_and_still_found(room, member):
    desc = "Region named on the phone, longer than any place name may be here"
    assert len(desc) > MAX_PLACE_NAME
    region = SimpleNamespace(desc=desc, lat=LAT, lon=LON, rad=100.0)
    (made,) = places_import(member=member, waypoints=[region])
    assert made.name == desc[:MAX_PLACE_NAME].rstrip()
    # The phone's transitions name the region in full: they find the place it made.
    assert place_for_region(room_id=room.pk, rid="", desc=desc) == made
    assert places_import(member=member, waypoints=[region]) == []


def test_at_most_100_places_per_room(room, member, member_key):
    for i in range(MAX_PLACES_PER_ROOM):
        place_create(member=member, values={**SCHOOL, "name": f"P{i}",
                                            "radius": 100.0})
    response = post(Client(), room, SCHOOL, **bearer(member_key))
    assert response.status_code == 409


def test_creator_and_owner_edit_others_cannot(room, school, member_key, other_key,
                                               owner):
    patch = {"data": json.dumps({"radius": 200}), "content_type": "application/json"}
    assert Client().patch(url(room, f"/{school.pk}"), **patch,
                          **bearer(other_key)).status_code == 403
    response = Client().patch(url(room, f"/{school.pk}"), **patch, **bearer(member_key))
    assert response.status_code == 200 and response.json()["radius"] == 200
    assert Client().delete(url(room, f"/{school.pk}"),
                           **bearer(other_key)).status_code == 403
    owner_client = as_session(owner)
    owner_client.handler.enforce_csrf_checks = False
    assert owner_client.delete(url(room, f"/{school.pk}")).status_code == 204
    assert not Place.objects.filter(pk=school.pk).exists()


def test_session_writes_need_the_csrf_token(room, member):
    client = as_session(member)
    client.handler.enforce_csrf_checks = True
    assert post(client, room, SCHOOL).status_code == 403
    assert client.get(url(room)).status_code == 200


# -- where events are computed ---------------------------------------------------------


def test_a_walk_through_gives_one_enter_and_one_leave(room, member, school):
    found = []
    write_batch(walk(member, [500, 300, 90, 0, 50, 110, 140, 600]), place_events=found)
    assert [(kind, ts) for _r, _m, _p, kind, ts in found] == [
        ("enter", T0 + 20_000), ("leave", T0 + 60_000)]
    kinds = list(PlaceEvent.objects.order_by("device_time").values_list("kind", flat=True))
    assert kinds == ["enter", "leave"]
    assert not PlaceState.objects.get(member=member, place=school).inside


def test_state_is_stored_between_batches_and_replays_change_nothing(room, member, school):
    first = walk(member, [500, 0, 10])
    found = []
    write_batch(first, place_events=found)
    assert [f[3] for f in found] == ["enter"]
    found = []
    write_batch(first, place_events=found)  # the same batch again (a phone's retry)
    assert found == []
    write_batch(walk(member, [600], start=T0 + 100_000), place_events=found)
    assert [f[3] for f in found] == ["leave"]
    assert PlaceEvent.objects.count() == 2


def test_two_devices_of_one_member_share_one_state(room, member, school):
    found = []
    # Phone and tablet both inside, interleaved in one batch: one enter.
    batch = walk(member, [400, 0, 5, 8, 3], step=5_000)
    write_batch(batch, place_events=found)
    assert [f[3] for f in found] == ["enter"]


def test_live_only_rooms_get_events_live_but_store_none(room, member, school):
    room.retention_days = 0
    room.save()
    found = []
    write_batch(walk(member, [500, 0]), place_events=found)
    assert [f[3] for f in found] == ["enter"]
    assert PlaceEvent.objects.count() == 0


def test_events_are_listed_and_pruned_with_the_history(room, member, member_key,
                                                       school):
    # Within the room's retention (older events are not listed).
    start = now_ms() - 3_600_000
    write_batch(walk(member, [500, 0, 600], start=start))
    body = Client().get(f"/api/rooms/{room.public_id}/events?since={start}",
                        **bearer(member_key)).json()
    assert [(e["kind"], e["place"], e["member"]) for e in body["events"]] == [
        ("enter", school.pk, member.pk), ("leave", school.pk, member.pk)]
    later = Client().get(f"/api/rooms/{room.public_id}/events?since={start + 15_000}",
                         **bearer(member_key)).json()
    assert [e["kind"] for e in later["events"]] == ["leave"]
    from datetime import timedelta

    from django.utils import timezone
    positions_prune(now=timezone.now() + timedelta(days=room.retention_days + 1))
    assert PlaceEvent.objects.count() == 0


# -- live frames ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_places_and_place_events_reach_every_map(room, member, member_key,
                                                       other_key, connect):
    bo = await connect(room, key=other_key)
    places = await bo.receive_type("places")
    assert places["places"] == []
    values = {**SCHOOL, "radius": 100.0}
    await database_sync_to_async(place_create)(member=member, values=values)
    places = await bo.receive_type("places")
    events.check_frame(places)
    assert [p["name"] for p in places["places"]] == ["School"]
    ana = await connect(room, key=member_key)
    assert [p["name"] for p in (await ana.receive_type("places"))["places"]] == ["School"]
    await ana.send({"type": "position", "lat": LAT, "lon": LON, "accuracy": 5})
    await history_writer().flush()
    frame = await bo.receive_type("place_event", timeout=5)
    events.check_frame(frame)
    assert frame["member"] == member.pk and frame["kind"] == "enter"


# -- alert rules ------------------------------------------------------------------------


def alerts_url(room):
    return f"/api/rooms/{room.public_id}/alerts"


def put_rules(client, room, rules, **extra):
    return client.put(alerts_url(room), json.dumps({"rules": rules}),
                      content_type="application/json", **extra)


def test_alert_rules_are_each_members_own(room, member, member_key, other, other_key,
                                          school):
    rules = [{"member": other.pk, "place": school.pk}, {"member": None, "place": None}]
    response = put_rules(Client(), room, rules, **bearer(member_key))
    assert response.status_code == 200 and response.json()["rules"] == rules
    assert Client().get(alerts_url(room), **bearer(member_key)).json()["rules"] == rules
    assert Client().get(alerts_url(room), **bearer(other_key)).json()["rules"] == []
    put_rules(Client(), room, [], **bearer(member_key))
    assert Client().get(alerts_url(room), **bearer(member_key)).json()["rules"] == []


def test_alert_rules_refuse_ids_of_other_rooms(room, member_key, stranger_and_key):
    stranger, _key = stranger_and_key
    response = put_rules(Client(), room, [{"member": stranger.pk, "place": None}],
                         **bearer(member_key))
    assert response.status_code == 400 and response.json()["field"] == "member"
    response = put_rules(Client(), room, [{"member": None, "place": 999}],
                         **bearer(member_key))
    assert response.status_code == 400 and response.json()["field"] == "place"
    response = put_rules(Client(), room, [{"member": None}] * 51, **bearer(member_key))
    assert response.status_code == 400 and response.json()["field"] == "rules"


@pytest.mark.django_db(transaction=True)
async def test_a_resync_sends_the_places_again_after_the_snapshot(room, member,
                                                                  other_key, connect,
                                                                  hubs):
    await database_sync_to_async(place_create)(member=member,
                                               values={**SCHOOL, "radius": 100.0})
    bo = await connect(room, key=other_key)
    await bo.receive_type("places")
    hubs.get(room.pk).resync_all()
    assert (await bo.receive())["type"] == "snapshot"
    frame = await bo.receive()
    assert frame["type"] == "places" and [p["name"] for p in frame["places"]] == [
        "School"]
