"""History over HTTP (maps.web.api_views): the track API, the map's history, the exports,
"download my data", and the one history rule (maps.access.scope.history_scope) behind them.

The real walk around Lake Cerknica goes in through the OsmAnd door as a JSON batch, its
times moved to the last hours (the door refuses nothing old, but the room's retention
would). Elsewhere positions are written with the history writer's ``write_batch``.
"""

import io
import json
import warnings
import zipfile
from datetime import UTC, datetime, timedelta

import gpxpy
import pytest
from django.test import AsyncClient, Client
from django.utils import timezone

from maps.domain.fixes import Fix
from maps.models import HistoryVisibility, PlaceEvent, Position, Role
from maps.services import (
    alert_rules_set,
    member_create,
    place_create,
    place_values,
    room_create,
    room_set_history_visibility,
)
from maps.storage.history import history_writer, write_batch
from maps.storage.selectors import to_ms
from tests.test_tracks import cerknica_points, check_rfc7946

NOW_MS = to_ms(timezone.now())
HOUR = 3_600_000


def write(member, points, *, received_ms=None):
    """Store ``[(lat, lon, ts), ...]`` of ``member`` as the history writer does."""
    write_batch([(member.pk, Fix(lat=lat, lon=lon, ts=ts), received_ms or ts)
                 for lat, lon, ts in points])


def line(n, *, start, step=1000, lat=46.0, lon=14.5):
    return [(lat + i * 1e-5, lon + i * 1e-5, start + i * step) for i in range(n)]


def as_session(*members):
    """A test client whose browser session holds ``members`` (as after their invites)."""
    client = Client()
    session = client.session
    session["members"] = {m.room.public_id: m.pk for m in members}
    session.save()
    return client


def read_body(response):
    """A response's bytes, streamed (the exports, from an async iterator) or not."""
    if not response.streaming:
        return response.content
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "StreamingHttpResponse must consume")
        return b"".join(response)


def read_json(response):
    return json.loads(read_body(response))


def bearer(key):
    return {"headers": {"Authorization": f"Bearer {key}"}}


def track_url(room, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/rooms/{room.public_id}/track" + (f"?{query}" if query else "")


@pytest.fixture
def walked(room, owner, member, other, viewer):
    """Ana (member) and Bo (other) each walked for ten minutes two hours ago."""
    write(member, line(600, start=NOW_MS - 2 * HOUR))
    write(other, line(600, start=NOW_MS - 2 * HOUR, lat=46.1))
    return room


# -- the real walk, in through a phone door and out as files ----------------------------


@pytest.fixture
def replayed_points():
    points = cerknica_points()
    shift = NOW_MS - 10 * 60_000 - points[-1][3]
    return [(lat, lon, ele, ts + shift) for lat, lon, ele, ts in points]


@pytest.mark.django_db(transaction=True)
async def test_real_walk_through_the_osmand_door_comes_back_whole(replayed_points):
    from channels.db import database_sync_to_async

    room, _owner = await database_sync_to_async(room_create)(name="Lake", owner_name="Olga")
    ana, key = await database_sync_to_async(member_create)(room=room, name="Ana")
    batch = [{"id": key, "lat": lat, "lon": lon, "altitude": ele, "timestamp": ts}
             for lat, lon, ele, ts in replayed_points]
    client = AsyncClient()
    response = await client.post("/ingest/osmand/", json.dumps(batch),
                                 content_type="application/json")
    assert response.status_code == 200
    await history_writer().flush()

    gpx_response = await client.get(f"/r/{room.public_id}/export.gpx", **bearer(key))
    assert gpx_response.status_code == 200
    assert gpx_response["Content-Type"] == "application/gpx+xml"
    assert gpx_response["Content-Disposition"].startswith('attachment; filename="geoshare-')
    gpx = gpxpy.parse(b"".join([part async for part in gpx_response]).decode())
    assert [t.name for t in gpx.tracks] == ["Ana"]
    read = [(p.latitude, p.longitude, p.elevation, round(p.time.timestamp() * 1000))
            for s in gpx.tracks[0].segments for p in s.points]
    assert read == replayed_points

    geojson = await client.get(f"/r/{room.public_id}/export.geojson", **bearer(key))
    collection = json.loads(b"".join([part async for part in geojson]))
    check_rfc7946(collection)
    (feature,) = collection["features"]
    coordinates = [p for part in feature["geometry"]["coordinates"] for p in part]
    times = [t for part in feature["properties"]["times"] for t in part]
    assert coordinates == [[lon, lat] for lat, lon, _, _ in replayed_points]
    assert times == [p[3] for p in replayed_points]
    assert feature["properties"]["name"] == "Ana"
    assert feature["properties"]["color"] == ana.color

    # The API pages through the same positions, in the same order, in the wire shape.
    seen, cursor = [], None
    while True:
        url = track_url(room, limit=100) + (f"&cursor={cursor}" if cursor else "")
        page = json.loads((await client.get(url, **bearer(key))).content)
        seen.extend(page["positions"])
        cursor = page["next"]
        if cursor is None:
            break
    assert [(p["lat"], p["lon"], p["altitude"], p["ts"]) for p in seen] == replayed_points
    assert set(seen[0]) == {"member", "lat", "lon", "altitude", "device", "ts", "seen"}
    assert seen[0]["device"] == "Phone"  # the name of the device whose key sent it

    # The map's history finds the walk's stops (the recording has pauses of minutes).
    history = json.loads((await client.get(
        f"/api/rooms/{room.public_id}/history?since={replayed_points[0][3]}&zoom=15",
        **bearer(key))).content)
    check_rfc7946(history)
    stays = [f for f in history["features"] if f["properties"]["kind"] == "stay"]
    assert stays and all(s["properties"]["duration_ms"] >= 300_000 for s in stays)
    drawn = [f for f in history["features"] if f["properties"]["kind"] == "track"]
    assert 2 < sum(len(part) for part in drawn[0]["geometry"]["coordinates"]) < len(
        replayed_points)
    assert history["stay_rule"] == {"radius_m": 50.0, "min_ms": 300_000}


# -- who may see what -------------------------------------------------------------------

ROLES = ["owner", "member", "viewer"]
# For each setting: whose tracks each role gets (names), or the status of a refusal.
EXPECTED = {
    HistoryVisibility.EVERYONE: {"owner": {"Ana", "Bo"}, "member": {"Ana", "Bo"},
                                 "viewer": {"Ana", "Bo"}},
    HistoryVisibility.MEMBERS: {"owner": {"Ana", "Bo"}, "member": {"Ana", "Bo"},
                                "viewer": 403},
    HistoryVisibility.OWN: {"owner": set(), "member": {"Ana"}, "viewer": set()},
}


def _callers(owner, member, viewer, member_key, viewer_key):
    """A client per role: the owner by session, the others by device key."""
    return {
        "owner": (as_session(owner), {}),
        "member": (Client(), bearer(member_key)),
        "viewer": (Client(), bearer(viewer_key)),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("visibility", list(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_visibility_setting_decides_whose_history_each_role_sees(
        walked, owner, member, viewer, member_key, viewer_key, visibility, role):
    room_set_history_visibility(room=walked, visibility=visibility)
    client, headers = _callers(owner, member, viewer, member_key, viewer_key)[role]
    expected = EXPECTED[visibility][role]
    urls = [
        f"/api/rooms/{walked.public_id}/history?since={NOW_MS - 3 * HOUR}",
        f"/r/{walked.public_id}/export.geojson",
    ]
    for url in urls:
        response = client.get(url, **headers)
        if isinstance(expected, int):
            assert response.status_code == expected
            assert response.json()["error"]
            continue
        assert response.status_code == 200
        names = {f["properties"]["name"] for f in read_json(response)["features"]}
        assert names == expected
    response = client.get(track_url(walked, limit=5000), **headers)
    if isinstance(expected, int):
        assert response.status_code == expected
    else:
        members = {p["member"] for p in response.json()["positions"]}
        ids = {"Ana": member.pk}
        assert members == {ids.get(n) or walked.members.get(name=n).pk for n in expected}


@pytest.mark.django_db
def test_asking_for_someone_else_in_own_mode_is_403_naming_the_field(walked, member_key,
                                                                      other):
    room_set_history_visibility(room=walked, visibility=HistoryVisibility.OWN)
    response = Client().get(track_url(walked, member=other.pk), **bearer(member_key))
    assert response.status_code == 403
    assert response.json()["field"] == "member"


@pytest.mark.django_db
def test_one_member_asked_for_is_all_that_comes(walked, member_key, other):
    response = Client().get(track_url(walked, member=other.pk, limit=5000),
                            **bearer(member_key))
    assert {p["member"] for p in response.json()["positions"]} == {other.pk}
    assert len(response.json()["positions"]) == 600


@pytest.mark.django_db
def test_stranger_key_of_another_room_gets_404_not_403(walked, stranger_key):
    for url in (track_url(walked), f"/r/{walked.public_id}/export.gpx",
                f"/api/rooms/{walked.public_id}/history"):
        response = Client().get(url, **bearer(stranger_key))
        assert response.status_code == 404
        assert response.json()["field"] == "room"


@pytest.mark.django_db
def test_stranger_session_gets_404_and_nobody_gets_401(walked, stranger_and_key):
    stranger, _ = stranger_and_key
    assert as_session(stranger).get(track_url(walked)).status_code == 404
    anonymous = Client().get(track_url(walked))
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert Client().get(track_url(walked), HTTP_AUTHORIZATION="Basic eDp5").status_code \
        == 401


@pytest.mark.django_db
def test_member_not_in_the_room_is_404_naming_member(walked, member_key):
    response = Client().get(track_url(walked, member=999_999), **bearer(member_key))
    assert (response.status_code, response.json()["field"]) == (404, "member")


@pytest.mark.django_db
def test_wrong_keys_count_against_the_address_as_at_the_doors(walked, member_key,
                                                             settings):
    settings.GEOSHARE = {**settings.GEOSHARE,
                         "RATE_LIMITS": {**settings.GEOSHARE["RATE_LIMITS"],
                                         "badkey": (3, 60)}}
    client = Client()
    statuses = [client.get(track_url(walked), **bearer(f"wrong{i}")).status_code
                for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    # A right key still works from that address.
    assert client.get(track_url(walked), **bearer(member_key)).status_code == 200


def test_watch_me_links_never_see_history(room, member):
    from maps.access.doors import Refused
    from maps.access.scope import history_scope

    room_set_history_visibility(room=room, visibility=HistoryVisibility.EVERYONE)
    member.role = "watch"  # whatever role a watch-me link's caller will carry
    with pytest.raises(Refused) as refused:
        history_scope(member)
    assert refused.value.status == 403


# -- retention ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_retention_cuts_the_history_before_any_prune(room, member, member_key):
    room.retention_days = 1
    room.save()
    write(member, line(3, start=NOW_MS - 30 * HOUR))  # recorded and received 30 h ago
    write(member, line(3, start=NOW_MS - 30 * HOUR, lat=47),
          received_ms=NOW_MS - HOUR)  # an old recording, uploaded lately
    write(member, line(3, start=NOW_MS - 2 * HOUR, lat=48),
          received_ms=NOW_MS - 26 * HOUR)  # received before the window (clock skew)
    write(member, line(3, start=NOW_MS - HOUR, lat=49))
    assert Position.objects.count() == 12
    client = Client()
    for url in (track_url(room, since=0), f"/r/{room.public_id}/export.geojson?since=0",
                f"/api/rooms/{room.public_id}/history?since=0"):
        response = client.get(url, **bearer(member_key))
        assert response.status_code == 200
        body = read_json(response)
        if "positions" in body:
            lats = {round(p["lat"]) for p in body["positions"]}
        else:
            lats = {round(c[1]) for f in body["features"]
                    for c in f["geometry"]["coordinates"]}
        assert lats == {49}


@pytest.mark.django_db
def test_live_only_room_returns_no_history(room, member, member_key):
    write(member, line(3, start=NOW_MS - HOUR))
    room.retention_days = 0
    room.save()
    response = Client().get(track_url(room), **bearer(member_key))
    assert response.json() == {"positions": [], "next": None}


# -- the API's pages and parameters ---------------------------------------------------------


@pytest.mark.django_db
def test_pages_follow_device_time_then_id_across_members_without_gaps_or_repeats(
        room, member, other, member_key):
    start = NOW_MS - HOUR
    # Equal device times across members and within one member (a phone's batch).
    write(member, [(46.0, 14.0, start + 1000 * (i // 3)) for i in range(50)])
    write(other, [(46.5, 14.5, start + 1000 * (i // 2)) for i in range(40)])
    expected = sorted(Position.objects.values_list("device_time", "id"))
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = Client().get(track_url(room, **params), **bearer(member_key)).json()
        seen.extend(body["positions"])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 13  # 90 positions, 7 a page
    assert [(p["ts"], p["member"]) for p in seen] == [
        (to_ms(t), Position.objects.get(pk=pk).member_id) for t, pk in expected]


@pytest.mark.django_db
def test_since_and_until_take_iso_8601_or_epoch_ms(walked, member_key):
    start = NOW_MS - 2 * HOUR
    iso = datetime.fromtimestamp((start + 100_000) / 1000, tz=UTC).isoformat()
    by_ms = Client().get(track_url(walked, member=walked.members.get(name="Ana").pk,
                                   since=start + 100_000, until=start + 200_000),
                         **bearer(member_key)).json()
    assert len(by_ms["positions"]) == 100
    by_iso = Client().get(track_url(walked, member=walked.members.get(name="Ana").pk,
                                    since=iso.replace("+00:00", "Z"),
                                    until=start + 200_000),
                          **bearer(member_key)).json()
    assert by_iso == by_ms


@pytest.mark.django_db
@pytest.mark.parametrize("params, field", [
    ({"since": "yesterday"}, "since"),
    ({"since": "2025-06-01T08:00:00"}, "since"),  # no time zone
    ({"until": "2025-13-01T00:00:00Z"}, "until"),
    ({"since": "99999999999999999"}, "since"),
    ({"since": 2_000, "until": 1_000}, "until"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"limit": "0"}, "limit"),
    ({"limit": "5001"}, "limit"),
    ({"member": "Ana"}, "member"),
])
def test_bad_parameters_are_400_json_naming_the_field(walked, member_key, params, field):
    response = Client().get(track_url(walked, **params), **bearer(member_key))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["field"] == field


@pytest.mark.django_db
@pytest.mark.parametrize("params, field", [({"zoom": "-1"}, "zoom"),
                                           ({"tolerance": "nan"}, "tolerance")])
def test_history_refuses_bad_zoom_and_tolerance(walked, member_key, params, field):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = Client().get(f"/api/rooms/{walked.public_id}/history?{query}",
                            **bearer(member_key))
    assert (response.status_code, response.json()["field"]) == (400, field)


@pytest.mark.django_db
def test_history_simplifies_to_the_zoom_and_exports_stay_complete(walked, member_key):
    ana = walked.members.get(name="Ana").pk
    base = f"/api/rooms/{walked.public_id}/history?member={ana}&since={NOW_MS - 3 * HOUR}"
    counts = {}
    for zoom in (8, 18):
        body = Client().get(f"{base}&zoom={zoom}", **bearer(member_key)).json()
        (feature,) = [f for f in body["features"] if f["properties"]["kind"] == "track"]
        counts[zoom] = len(feature["geometry"]["coordinates"])
        assert body["tolerance_m"] == pytest.approx(
            40_075_016.686 * 0.6946 / 2 ** (zoom + 8), rel=1e-2)
        assert feature["properties"]["points"] == 600
    assert counts[8] == 2  # a straight line at a steady pace: its two ends
    export = read_json(Client().get(f"/r/{walked.public_id}/export.geojson?member={ana}",
                                    **bearer(member_key)))
    assert len(export["features"][0]["geometry"]["coordinates"]) == 600


# -- download my data ------------------------------------------------------------------------


@pytest.mark.django_db
def test_my_data_holds_exactly_my_positions_and_records_in_every_room(
        walked, member, other, stranger_and_key):
    elsewhere, _ = room_create(name="Second trip", owner_name="Zed")
    me_elsewhere, _ = member_create(room=elsewhere, name="Ana too")
    write(me_elsewhere, line(5, start=NOW_MS - HOUR, lat=40))
    stranger, _ = stranger_and_key
    write(stranger, line(5, start=NOW_MS - HOUR, lat=30))
    room_set_history_visibility(room=walked, visibility=HistoryVisibility.MEMBERS)

    response = as_session(member, me_elsewhere).get("/me/data.zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(read_body(response)))
    assert sorted(archive.namelist()) == ["README.txt", "members.json",
                                          "positions.geojson", "positions.gpx"]
    records = json.loads(archive.read("members.json"))["members"]
    assert sorted((r["room"]["id"], r["member"]["id"], r["positions"]) for r in records) \
        == sorted([(walked.public_id, member.pk, 600), (elsewhere.public_id,
                                                         me_elsewhere.pk, 5)])
    text = b"".join(archive.read(n) for n in archive.namelist()).decode()
    for name in ("Bo", "Olga", "Vera", "Sam", "Zed"):
        assert name not in text
    collection = json.loads(archive.read("positions.geojson"))
    check_rfc7946(collection)
    assert sorted((f["properties"]["member"], len(f["geometry"]["coordinates"]))
                  for f in collection["features"]) == sorted([(member.pk, 600),
                                                              (me_elsewhere.pk, 5)])
    gpx = gpxpy.parse(archive.read("positions.gpx").decode())
    assert sorted(sum(len(s.points) for s in t.segments) for t in gpx.tracks) == [5, 600]
    lats = {round(p.latitude) for t in gpx.tracks for s in t.segments for p in s.points}
    assert lats == {46, 40}


@pytest.mark.django_db
def test_my_data_holds_my_places_place_events_and_alert_rules(room, member, other):
    mine = place_create(member=member, values=place_values(
        {"name": "School", "lat": 46.0, "lon": 14.5, "radius": 100}))
    theirs = place_create(member=other, values=place_values(
        {"name": "Gym", "lat": 46.1, "lon": 14.6, "radius": 50}))
    day = timezone.now().replace(microsecond=0)
    PlaceEvent.objects.bulk_create([
        PlaceEvent(room=room, member=member, place=theirs, kind="enter", device_time=day),
        PlaceEvent(room=room, member=member, place=theirs, kind="leave",
                   device_time=day + timedelta(minutes=5)),
        PlaceEvent(room=room, member=other, place=mine, kind="enter", device_time=day),
        # Past the room's retention (7 days): the events endpoint no longer shows it.
        PlaceEvent(room=room, member=member, place=mine, kind="enter",
                   device_time=day - timedelta(days=30),
                   created=day - timedelta(days=30)),
    ])
    alert_rules_set(member=member, rules=[{"member": other.pk, "place": theirs.pk},
                                          {"member": None, "place": None}])
    alert_rules_set(member=other, rules=[{"member": member.pk, "place": mine.pk}])

    response = as_session(member).get("/me/data.zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(read_body(response)))
    (record,) = json.loads(archive.read("members.json"))["members"]
    assert record["places"] == [{
        "id": mine.pk, "name": "School", "lat": 46.0, "lon": 14.5, "radius": 100.0,
        "created_by": member.pk, "created": to_ms(mine.created),
        "updated": to_ms(mine.updated)}]
    assert [(e["place"], e["place_name"], e["kind"], e["ts"])
            for e in record["place_events"]] == [
        (theirs.pk, "Gym", "enter", to_ms(day)),
        (theirs.pk, "Gym", "leave", to_ms(day + timedelta(minutes=5)))]
    assert record["alert_rules"] == [{"member": other.pk, "place": theirs.pk},
                                     {"member": None, "place": None}]
    # The events endpoint shows the same of this member.
    listed = as_session(member).get(f"/api/rooms/{room.public_id}/events").json()["events"]
    assert [(e["place"], e["kind"], e["ts"]) for e in listed
            if e["member"] == member.pk] == [
        (e["place"], e["kind"], e["ts"]) for e in record["place_events"]]
    assert "README.txt" in archive.namelist()
    assert "alert rules" in archive.read("README.txt").decode()


@pytest.mark.django_db
def test_my_data_without_a_room_is_401():
    response = Client().get("/me/data.zip")
    assert response.status_code == 401
    assert response.json()["field"] == "session"


# -- the owner's setting and the map page ------------------------------------------------------


@pytest.mark.django_db
def test_owner_sets_who_sees_history_on_the_manage_page(room, owner, viewer):
    client = as_session(owner)
    page = client.get(f"/r/{room.public_id}/manage/")
    assert b'name="visibility-history_visibility"' in page.content
    response = client.post(f"/r/{room.public_id}/manage/", {
        "action": "visibility", "visibility-history_visibility": "own"})
    assert response.status_code == 302
    room.refresh_from_db()
    assert room.history_visibility == HistoryVisibility.OWN
    bad = client.post(f"/r/{room.public_id}/manage/", {
        "action": "visibility", "visibility-history_visibility": "strangers"})
    assert bad.status_code == 200
    room.refresh_from_db()
    assert room.history_visibility == HistoryVisibility.OWN


@pytest.mark.django_db
def test_map_offers_history_to_whom_the_room_shows_it(room, owner, viewer):
    assert room.history_visibility == HistoryVisibility.MEMBERS  # the default
    config = as_session(owner).get(f"/r/{room.public_id}/").context["config"]
    assert config["history"]["url"] == f"/api/rooms/{room.public_id}/history"
    assert as_session(viewer).get(f"/r/{room.public_id}/").context["config"][
        "history"] is None
    assert Role.VIEWER == viewer.role


# -- times at the edge of the calendar ---------------------------------------------------

EDGE_ENDPOINTS = ["/api/rooms/{room}/track", "/api/rooms/{room}/history",
                  "/r/{room}/export.gpx", "/r/{room}/export.geojson",
                  "/api/rooms/{room}/events"]


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", EDGE_ENDPOINTS)
@pytest.mark.parametrize("field", ["since", "until"])
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59",
                                   "0001-01-01T00:00:00+23:59"])
def test_times_past_the_calendar_in_utc_are_400_naming_the_field(
        walked, member_key, endpoint, field, value):
    # Each is a valid ISO 8601 time whose UTC instant falls outside years 1 to 9999.
    if field == "until" and endpoint.endswith("/events"):
        pytest.skip("the events list reads since only")
    query = f"{field}={value.replace('+', '%2B')}"
    url = endpoint.format(room=walked.public_id) + "?" + query
    response = Client().get(url, **bearer(member_key))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["field"] == field
    assert "out of range" in response.json()["error"]


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", EDGE_ENDPOINTS)
def test_the_calendars_first_and_last_second_are_accepted(walked, member_key, endpoint):
    query = "since=0001-01-01T00:00:00Z"
    if not endpoint.endswith("/events"):
        query += "&until=9999-12-31T23:59:59Z"
    url = endpoint.format(room=walked.public_id) + "?" + query
    response = Client().get(url, **bearer(member_key))
    assert response.status_code == 200
    read_body(response)  # an export holds its slot until its stream is read
