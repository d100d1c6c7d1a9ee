"""Prometheus metrics (maps.telemetry.metrics): who may read them, that traffic moves them, and
that no label names a room or a person."""

import socket

import httpx
import pytest
from channels.db import database_sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from maps.models import Position
from maps.storage.history import history_writer
from maps.telemetry import metrics
from tests.phone_payloads import T, gpslogger_params, owntracks_location, traccar_json
from tests.servers import Project, Uvicorn

pytestmark = pytest.mark.django_db(transaction=True)
slow = pytest.mark.slow

TOKEN = "scrape-" + "t" * 40


def with_geoshare(settings, **values):
    settings.GEOSHARE = {**settings.GEOSHARE, **values}


def samples(text=None):
    """Return ``{(name, frozenset(labels.items())): value}`` of an exposition."""
    if text is None:
        text = metrics.exposition()[0].decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0.0)


# -- who may read them ----------------------------------------------------------------------


def test_metrics_are_404_with_neither_token_nor_port(client, settings):
    with_geoshare(settings, METRICS_TOKEN="", METRICS_PORT=0)
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


def test_metrics_need_the_bearer_token(client, settings):
    with_geoshare(settings, METRICS_TOKEN=TOKEN)
    for header in (None, "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
        response = client.get("/metrics", **extra)
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"geoshare_" not in response.content
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "geoshare_open_sockets" in {f.name for f in
                                       text_string_to_metric_families(response.content.decode())}


# -- traffic moves them ----------------------------------------------------------------------


async def _traffic(room, member, member_key, other_key, connect, async_client):
    """Drive every door once or more; return the keys and names that must not leak."""
    sender = await connect(room, key=member_key)
    watcher = await connect(room, key=other_key)
    for step in range(3):
        await sender.send({"type": "position", "lat": 46.05 + step / 1000, "lon": 14.5,
                           "ts": (T + step) * 1000})
        await watcher.receive_type("positions")
    assert (await async_client.post(
        "/ingest/osmand/", traccar_json(member_key), content_type="application/json"
    )).status_code == 200
    assert (await async_client.get(f"/ingest/gpslogger/{member_key}/",
                                   gpslogger_params(timestamp=str(T + 10)))).status_code == 200
    assert (await async_client.post(
        f"/ingest/owntracks/?key={member_key}", owntracks_location(tst=T + 20),
        content_type="application/json")).status_code == 200
    for _ in range(21):
        await async_client.get("/ingest/gpslogger/not-a-key/", gpslogger_params())
    await watcher.receive_type("positions")
    await history_writer().flush()
    return sender, watcher


async def test_traffic_moves_the_metrics(settings, room, member, member_key, other,
                                         other_key, connect, async_client):
    before = samples()
    await _traffic(room, member, member_key, other_key, connect, async_client)
    after = samples()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    stored = await database_sync_to_async(Position.objects.filter(member=member).count)()
    assert stored == 6
    assert moved("geoshare_positions_received_total", door="websocket") == 3
    assert moved("geoshare_positions_received_total", door="osmand") == 1
    assert moved("geoshare_positions_received_total", door="gpslogger") == 1
    assert moved("geoshare_positions_received_total", door="owntracks") == 1
    # Two snapshots, then at least one positions frame per websocket position to two
    # sockets (the HTTP doors' positions may share a tick).
    assert moved("geoshare_frames_sent_total") >= 2 + 3 * 2 + 2
    assert moved("geoshare_frame_bytes_sent_total") > 100 * moved("geoshare_frames_sent_total")
    assert moved("geoshare_tick_flush_seconds_count") >= 4
    assert moved("geoshare_history_batch_positions_sum") == 6
    assert moved("geoshare_history_batch_positions_count") >= 1
    assert moved("geoshare_history_commit_seconds_count") == moved(
        "geoshare_history_batch_positions_count")
    # 20 wrong keys a minute are answered 401; the 21st is refused by the limit.
    assert moved("geoshare_rate_limited_total", bucket="badkey") == 1
    assert value(after, "geoshare_open_sockets") == 2
    assert value(after, "geoshare_live_hubs") >= 1


async def test_no_label_names_a_room_or_a_person(settings, room, owner, member,
                                                 member_key, other, other_key, connect,
                                                 async_client):
    await _traffic(room, member, member_key, other_key, connect, async_client)
    text = metrics.exposition()[0].decode()
    for secret in (room.public_id, member_key, other_key, member.name, other.name,
                   owner.name, room.name):
        assert secret not in text
    ids = {str(m.pk) for m in (owner, member, other)} | {str(room.pk)}
    allowed_labels = {"door": set(metrics.DOORS),
                      "bucket": set(settings.GEOSHARE["RATE_LIMITS"]) | {"flood", "export"},
                      "path": set(metrics.WRITE_PATHS),
                      "le": None}
    # prometheus_client's own process and Python collectors: fixed, impersonal labels.
    runtime_labels = {"generation", "implementation", "major", "minor", "patchlevel",
                      "version"}
    for (name, labels), _ in samples(text).items():
        for label, label_value in labels:
            if not name.startswith("geoshare_"):
                assert label in runtime_labels, (name, label)
                continue
            assert label in allowed_labels, (name, label)
            if allowed_labels[label] is not None:
                assert label_value in allowed_labels[label], (name, label, label_value)
            if label != "le":  # histogram bounds are numbers, not ids
                assert label_value not in ids, (name, label, label_value)


# -- the metrics port ------------------------------------------------------------------------


@slow
def test_metrics_port_serves_metrics_and_site_answers_404(tmp_path):
    project = Project(tmp_path).migrate()
    room, keys = project.make_room(members=("Ana",))
    metrics_port = _free_port()
    with Uvicorn(project, extra_env={"GEOSHARE_METRICS_PORT": str(metrics_port)}) as server:
        key = keys["Ana"]["key"]
        response = httpx.get(f"{server.http}/ingest/gpslogger/{key}/",
                             params=gpslogger_params())
        assert response.status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200
        assert value(samples(scraped.text), "geoshare_positions_received_total",
                     door="gpslogger") == 1
        # Not on the site itself: no token is set.
        assert httpx.get(f"{server.http}/metrics").status_code == 404
    # The lifespan shut the metrics server down with the process.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)


@slow
def test_a_metrics_port_in_use_stops_the_start(tmp_path):
    project = Project(tmp_path).migrate()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Uvicorn(project, extra_env={"GEOSHARE_METRICS_PORT": str(port)},
                         timeout=20)
        with pytest.raises(RuntimeError, match="did not start"):
            server.start()
        assert f"cannot serve metrics on port {port}" in server.output()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
