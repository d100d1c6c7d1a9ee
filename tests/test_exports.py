"""Exports that cannot exhaust memory (issue 25, item 3): GPX, GeoJSON and "download my
data" are streamed a keyset chunk at a time, capped at a number of positions, and limited
to a number running at once per member and per process.
"""

import asyncio
import io
import json
import tracemalloc
import warnings
import zipfile
from datetime import UTC, datetime
from xml.etree import ElementTree

import gpxpy
import gpxpy.gpx
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core.asgi import get_asgi_application
from django.http import StreamingHttpResponse
from django.test import Client

from maps.access.limits import export_slots
from maps.domain import exports, tracks
from maps.domain.fixes import Fix
from maps.domain.tracks import Track
from maps.services import member_create, room_create
from maps.storage import selectors
from maps.storage.history import write_batch
from maps.storage.selectors import to_ms
from tests.servers import until
from tests.test_tracks import cerknica_points

NOW_MS = to_ms(datetime.now(UTC))
HOUR = 3_600_000


@pytest.fixture(autouse=True)
def _no_exports_running():
    export_slots.clear()
    yield
    export_slots.clear()


def write(member, n, *, start, step=1000, extras=False):
    """Store ``n`` positions of ``member``, one every ``step`` ms from ``start``."""
    write_batch([(member.pk, Fix(lat=46.0 + i * 1e-5, lon=14.5 + i * 1e-5, ts=start + i * step,
                                 **({"altitude": 300.0 + i % 7, "speed": 1.25,
                                     "heading": 90.0, "accuracy": 5.0, "battery": 80.0,
                                     "charging": bool(i % 2)} if extras else {})),
                  start + i * step) for i in range(n)])


def bearer(key):
    return {"headers": {"Authorization": f"Bearer {key}"}}


def gpx_url(room, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/r/{room.public_id}/export.gpx" + (f"?{query}" if query else "")


def as_session(*members):
    client = Client()
    session = client.session
    session["members"] = {m.room.public_id: m.pk for m in members}
    session.save()
    return client


def read_body(response):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "StreamingHttpResponse must consume")
        return b"".join(response)


async def _drain(response):
    size = 0
    async for part in response:
        size += len(part)
    return size


# -- the same GPX gpxpy wrote ---------------------------------------------------------------


def gpxpy_document(found, *, name=None):
    """The GPX document as geoshare wrote it with gpxpy before it was streamed."""
    gpx = gpxpy.gpx.GPX()
    gpx.creator = "geoshare"
    gpx.name = name
    gpx.nsmap["gpxtpx"] = exports.GPXTPX_NS
    gpx.nsmap["geoshare"] = exports.GEOSHARE_NS
    for track in found:
        if not len(track):
            continue
        trk = gpxpy.gpx.GPXTrack(name=track.member["name"])
        gpx.tracks.append(trk)
        for start, stop in tracks.segment_bounds(track.ts):
            segment = gpxpy.gpx.GPXTrackSegment()
            trk.segments.append(segment)
            for i in range(start, stop):
                point = gpxpy.gpx.GPXTrackPoint(
                    track.lat[i], track.lon[i], elevation=track.altitude[i],
                    time=datetime.fromtimestamp(track.ts[i] / 1000, tz=UTC))
                extensions = []
                if track.speed[i] is not None or track.heading[i] is not None:
                    tpx = ElementTree.Element(f"{{{exports.GPXTPX_NS}}}TrackPointExtension")
                    for tag, value in (("speed", track.speed[i]),
                                       ("course", track.heading[i])):
                        if value is not None:
                            ElementTree.SubElement(
                                tpx, f"{{{exports.GPXTPX_NS}}}{tag}").text = repr(value)
                    extensions.append(tpx)
                for tag in ("accuracy", "battery"):
                    value = getattr(track, tag)[i]
                    if value is not None:
                        element = ElementTree.Element(f"{{{exports.GEOSHARE_NS}}}{tag}")
                        element.text = repr(value)
                        extensions.append(element)
                if track.charging[i] is not None:
                    element = ElementTree.Element(f"{{{exports.GEOSHARE_NS}}}charging")
                    element.text = "true" if track.charging[i] else "false"
                    extensions.append(element)
                point.extensions = extensions
                segment.points.append(point)
    return gpx.to_xml(version="1.1")


def chunked(track, size):
    for start in range(0, len(track), size):
        chunk = Track(track.member)
        for name in ("lat", "lon", "ts", "altitude", "speed", "heading", "accuracy",
                     "battery", "charging"):
            getattr(chunk, name).extend(getattr(track, name)[start:start + size])
        yield chunk


def test_streamed_gpx_is_the_document_gpxpy_wrote():
    ana = Track({"id": 7, "name": 'Ana <&> "A"', "color": "#e6194b", "role": "member"})
    for i, (lat, lon, ele, ts) in enumerate(cerknica_points()):
        ana.append(lat, lon, ts, altitude=ele, speed=1.5 if i % 3 else None,
                   heading=None if i % 4 else 270.0, accuracy=8.5 if i % 5 else None,
                   battery=None if i % 2 else 77.0, charging=[None, True, False][i % 3])
    ana.append(46.0, 1e-7, ana.ts[-1] + 10 * 60_000, altitude=-1e-8)  # alone after a gap
    bo = Track({"id": 8, "name": "Bo", "color": "#3cb44b", "role": "member"})
    old = gpxpy_document([ana, bo], name="Lake & <friends>")
    streamed = "".join(exports.gpx_pieces(
        [(ana.member["name"], chunked(ana, 7)), ("Bo", [])], name="Lake & <friends>"))
    assert streamed == old
    before, after = gpxpy.parse(old), gpxpy.parse(streamed)
    assert [t.name for t in after.tracks] == [t.name for t in before.tracks]
    assert after.name == before.name == "Lake & <friends>"
    assert len(after.tracks[0].segments) == len(before.tracks[0].segments) > 1
    read = [[(p.latitude, p.longitude, p.elevation, p.time) for s in gpx.tracks[0].segments
             for p in s.points] for gpx in (before, after)]
    assert read[0] == read[1]
    assert len(read[1]) == len(ana)


def test_streamed_geojson_is_the_collection_it_was():
    ana = Track({"id": 7, "name": "Ana", "color": "#e6194b", "role": "member"})
    for i, (lat, lon, ele, ts) in enumerate(cerknica_points()):
        ana.append(lat, lon, ts, altitude=ele, charging=bool(i % 2))
    ana.append(46.0, 14.0, ana.ts[-1] + 10 * 60_000)  # alone after a gap: given twice
    whole = tracks.feature_collection([ana], foreign={"since": 1, "until": 2})
    streamed = b"".join(exports.geojson_pieces([(ana.member, {}, chunked(ana, 7))],
                                                foreign={"since": 1, "until": 2}))
    assert json.loads(streamed) == whole


# -- streamed: a chunk at a time ---------------------------------------------------------------


def test_gpx_export_reads_the_database_a_chunk_at_a_time(room, member, member_key,
                                                         monkeypatch):
    write(member, 2_000, start=NOW_MS - HOUR)
    monkeypatch.setattr(selectors, "HISTORY_CHUNK", 300)
    fetched = []
    real_fetch = selectors._fetch
    monkeypatch.setattr(selectors, "_fetch",
                        lambda queryset: fetched.append(real_fetch(queryset)) or fetched[-1])
    response = Client().get(gpx_url(room), **bearer(member_key))
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse) and response.is_async
    assert fetched == []  # nothing read before the client reads

    async def first_piece():
        stream = aiter(response)
        piece = await anext(stream)
        await stream.aclose()
        return piece

    assert async_to_sync(first_piece)().startswith(b"<?xml")
    assert len(fetched) <= 2  # the first chunk (and maybe the second), not the range
    fetched.clear()
    gpx = gpxpy.parse(read_body(Client().get(gpx_url(room), **bearer(member_key))))
    assert sum(len(s.points) for s in gpx.tracks[0].segments) == 2_000
    # Ana's 2,000 in chunks of 300 (the owner's query finds none).
    assert [len(rows) for rows in fetched if rows] == [300] * 6 + [200]


@pytest.mark.parametrize("path", ["export.gpx", "export.geojson"])
def test_an_export_of_50000_positions_never_holds_the_document(room, member, member_key,
                                                               monkeypatch, path):
    write(member, 50_000, start=NOW_MS - 20 * HOUR, extras=True)
    monkeypatch.setattr(selectors, "HISTORY_CHUNK", 1_000)
    monkeypatch.setattr(exports, "SPOOL_BYTES", 64 * 1024)
    client = Client()
    # Once before measuring: what the first request imports and caches is not the export's.
    read_body(client.get(f"/r/{room.public_id}/{path}?since={NOW_MS}", **bearer(member_key)))
    tracemalloc.start()
    try:
        response = client.get(f"/r/{room.public_id}/{path}", **bearer(member_key))
        assert response.status_code == 200
        size = async_to_sync(_drain)(response)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 50,000 positions with every field: GPX 25 MB, GeoJSON 3.2 MB (and the 50,000
    # positions as Python lists, 14 MB, when the whole range was read first).
    assert size > 3_000_000
    # A chunk of 1,000 rows, one piece of text, and the spools' buffers (GeoJSON: up to
    # 64 KiB here for each of its eight arrays, then on disk).
    assert peak < 4_000_000, (peak, size)


# -- the cap ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["export.gpx", "export.geojson"])
def test_an_export_past_the_cap_is_413_saying_how_to_narrow_it(room, member, member_key,
                                                               settings, path):
    settings.GEOSHARE = {**settings.GEOSHARE, "EXPORT_MAX_POINTS": 100}
    write(member, 101, start=NOW_MS - HOUR)
    url = f"/r/{room.public_id}/{path}"
    response = Client().get(url, **bearer(member_key))
    assert response.status_code == 413
    body = response.json()
    assert body["field"] == "since"
    assert "101 positions" in body["error"] and "at most 100" in body["error"]
    assert "since" in body["error"] and "until" in body["error"]
    assert export_slots.running() == 0
    narrowed = Client().get(f"{url}?since={NOW_MS - HOUR + 1000}", **bearer(member_key))
    assert narrowed.status_code == 200
    read_body(narrowed)


def test_download_my_data_past_the_cap_is_413(room, member, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "EXPORT_MAX_POINTS": 100}
    write(member, 101, start=NOW_MS - HOUR)
    response = as_session(member).get("/me/data.zip")
    assert (response.status_code, response.json()["field"]) == (413, "since")
    settings.GEOSHARE = {**settings.GEOSHARE, "EXPORT_MAX_POINTS": 101}
    response = as_session(member).get("/me/data.zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(read_body(response)))
    gpx = gpxpy.parse(archive.read("positions.gpx").decode())
    assert sum(len(s.points) for s in gpx.tracks[0].segments) == 101
    (feature,) = json.loads(archive.read("positions.geojson"))["features"]
    assert (feature["properties"]["points"], feature["properties"]["room"]) == (
        101, room.public_id)
    assert json.loads(archive.read("members.json"))["members"][0]["positions"] == 101


# -- exports at once --------------------------------------------------------------------------


def test_a_second_export_by_the_same_member_waits_for_the_first(room, member, member_key,
                                                                other_key):
    write(member, 10, start=NOW_MS - HOUR)
    first = Client().get(gpx_url(room), **bearer(member_key))
    assert first.status_code == 200
    for path in ("export.gpx", "export.geojson"):
        second = Client().get(f"/r/{room.public_id}/{path}", **bearer(member_key))
        assert second.status_code == 429
        assert int(second["Retry-After"]) >= 1
        assert "already running" in second.json()["error"]
    assert as_session(member).get("/me/data.zip").status_code == 429
    # Another member is not held up by it.
    assert read_body(Client().get(gpx_url(room), **bearer(other_key)))
    read_body(first)  # the first one ends...
    assert export_slots.running() == 0
    again = Client().get(gpx_url(room), **bearer(member_key))  # ...and the member may again
    assert again.status_code == 200
    assert gpxpy.parse(read_body(again)).tracks


def test_the_process_runs_at_most_its_number_of_exports(room, owner, member, member_key,
                                                        other_key, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "EXPORTS_PER_PROCESS": 2}
    owner_client = as_session(owner)
    running = [Client().get(gpx_url(room), **bearer(member_key)),
               owner_client.get(gpx_url(room))]
    assert [r.status_code for r in running] == [200, 200]
    refused = Client().get(gpx_url(room), **bearer(other_key))
    assert refused.status_code == 429 and refused["Retry-After"]
    read_body(running[0])
    assert Client().get(gpx_url(room), **bearer(other_key)).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_a_client_that_goes_away_gives_its_export_slot_back(monkeypatch):
    room, _owner = await database_sync_to_async(room_create)(name="Lake", owner_name="Olga")
    ana, key = await database_sync_to_async(member_create)(room=room, name="Ana")
    await database_sync_to_async(write)(ana, 3_000, start=NOW_MS - HOUR)
    monkeypatch.setattr(exports, "GPX_PIECE_POINTS", 100)
    app = get_asgi_application()
    gone = asyncio.Event()
    sent = []
    asked = []
    held = []

    async def receive():
        asked.append(True)
        if len(asked) == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body":
            held.append(export_slots.running(ana.pk))
            gone.set()
            await asyncio.Event().wait()  # a client that stopped reading

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": gpx_url(room), "raw_path": b"",
             "query_string": b"", "root_path": "", "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"testserver"),
                         (b"authorization", f"Bearer {key}".encode())]}
    serving = asyncio.create_task(app(scope, receive, send))
    await until(lambda: gone.is_set())
    await asyncio.wait_for(serving, 5)
    assert sent[0]["status"] == 200
    assert held == [1]  # streaming, the slot taken...
    assert export_slots.running() == 0  # ...and given back when the client went away
    assert not any(m.get("more_body") is False and m.get("body") for m in sent[1:])
