"""The benchmark harness (bench/) counts and measures what it says it does.

Statistics are checked on known inputs; the generator is checked end to end on a tiny
room of each app served by a real uvicorn. No timing is asserted: only counts, and that
latencies are computed from the frames' ``ts``.
"""

import json
import secrets

import pytest

from bench.loadgen import (
    LatencyHistogram,
    count_positions,
    expected_deliveries,
    frame_type,
    record_latencies,
    run_spec,
)
from tests.servers import Project


def test_percentiles_are_nearest_rank_in_whole_ms():
    hist = LatencyHistogram()
    for ms in range(1, 101):
        hist.add(ms + 0.7)  # whole milliseconds: 1.7 counts as 1
    assert hist.summary() == {"n": 100, "p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert hist.percentile(100) == 100
    assert hist.percentile(0) == 1


def test_histogram_clamps_negative_and_huge_latencies():
    hist = LatencyHistogram()
    hist.add(-3)
    hist.add(10**9)
    assert hist.percentile(1) == 0
    assert hist.percentile(100) == 120_000
    assert hist.summary()["max"] == 10**9


def test_empty_histogram_has_no_percentiles():
    assert LatencyHistogram().summary() == {
        "n": 0,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
    }


def test_merged_histograms_add_up():
    a, b = LatencyHistogram(), LatencyHistogram()
    for ms in (5, 5, 7):
        a.add(ms)
    for ms in (1, 300):
        b.add(ms)
    a.merge(b)
    assert a.count == 5
    assert a.percentile(50) == 5
    assert a.max == 300


def test_latency_is_receive_time_minus_ts_for_positions_in_the_window():
    frame = json.dumps(
        {
            "type": "positions",
            "positions": [
                {"member": 1, "lat": 1.0, "lon": 2.0, "ts": 1_000_000},
                {"member": 2, "lat": 1.0, "lon": 2.0, "ts": 1_000_040},
                {"member": 3, "lat": 1.0, "lon": 2.0, "ts": 999_000},  # before window
            ],
        }
    ).encode()
    hist = LatencyHistogram()
    added = record_latencies(frame, 1_000_100.0, since_ms=999_500, hist=hist)
    assert added == 2
    assert hist.summary() == {"n": 2, "p50": 60, "p90": 100, "p99": 100, "max": 100}


@pytest.mark.parametrize(
    "frame",
    [
        # orjson (geoshare, bare) and json.dumps (the naive control) spellings.
        b'{"type":"positions","positions":[{"member":1,"ts":1},{"member":2,"ts":2}]}',
        b'{"type": "positions", "positions": [{"member": 1, "ts": 1}, {"member": 2}]}',
    ],
)
def test_positions_frames_are_recognised_and_counted_without_parsing(frame):
    assert frame_type(frame) == "positions"
    assert count_positions(frame) == 2


def test_other_frame_types_are_told_apart():
    assert frame_type(b'{"type":"snapshot","you":1,"positions":[]}') == "snapshot"
    assert frame_type(b'{"type": "error", "code": "invalid"}') == "error"
    assert frame_type(b'{"you": 1, "type": "presence"}') == "presence"
    assert frame_type(b"not json") is None


def test_every_position_is_expected_once_per_connected_client_of_its_room():
    assert expected_deliveries({"a": 10, "b": 3}, {"a": 5, "b": 2, "c": 9}) == 56


# -- end to end on a real uvicorn -------------------------------------------------------


@pytest.fixture(scope="module")
def bench_server(tmp_path_factory):
    """bench.run's server (uvicorn serving bench.asgi) on a fresh migrated SQLite
    database, with one geoshare room of three keyed members; shared by the module."""
    from bench.run import Server

    work = tmp_path_factory.mktemp("bench")
    project = Project(
        work, SECRET_KEY=secrets.token_urlsafe(40), DEBUG="0", LOG_LEVEL="WARNING"
    ).migrate()
    room, keys = project.make_room(members=("Ana", "Bo", "Cy"), name="bench test")
    geoshare = {"room": room, "keys": [k["key"] for k in keys.values()]}
    server = Server(project.env, work, core=None)
    try:
        yield server, geoshare
    finally:
        server.stop()


def tiny_room_spec(urls, rate_hz=2.0, duration_s=1.0):
    """Three clients, all publishing at ``rate_hz`` for ``duration_s``: each sends
    exactly rate x duration positions (the schedule is fixed, not measured)."""
    return {
        "rooms": [
            {"name": "tiny", "clients": [{"url": u, "publish": True} for u in urls]}
        ],
        "rate_hz": rate_hz,
        "duration_s": duration_s,
        # Generous: the counts must not depend on how busy the test machine is.
        "drain_s": 5.0,
        "settle_s": 0.5,
    }


@pytest.mark.slow
@pytest.mark.parametrize("app", ["naive", "bare", "geoshare"])
def test_tiny_room_delivers_every_position_to_every_client(bench_server, app):
    server, geoshare = bench_server
    base = f"ws://127.0.0.1:{server.port}"
    if app == "geoshare":
        urls = [
            f"{base}/ws/rooms/{geoshare['room']}/?key={k}" for k in geoshare["keys"]
        ]
    else:
        room = f"t{secrets.token_hex(4)}"
        urls = [f"{base}/ws/{app}/{room}/?member={m}" for m in (1, 2, 3)]

    result = run_spec(tiny_room_spec(urls))

    assert result["sockets"] == 3
    assert result["connect_failed"] == 0
    assert result["publishers"] == 3
    assert result["sent"] == 3 * 2  # three publishers, 2 Hz, 1 s
    assert result["expected"] == 6 * 3  # every position to all three, sender included
    # Positions 500 ms apart from one member never share a 100 ms tick: nothing is
    # coalesced, so every position arrives at every client.
    assert result["delivered"] == result["expected"]
    assert result["delivery"] == 1.0
    # A room this small is sampled whole: one latency per delivered position.
    assert result["sampled_receivers"] == 3
    lat = result["latency"]
    assert lat["n"] == result["delivered"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["error_frames"] == 0


# -- issue 16: the ingest and storm harnesses, tiny, on real processes --------------------


def _bench_lines(module, *args, timeout=300):
    """Run ``python -m module args`` from the repository; return its JSON lines."""
    import subprocess
    import sys

    from tests.servers import ROOT

    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_bare_http_control_parses_the_three_doors():
    import asyncio

    from bench.bare import http_application

    async def call(method, path, query=b"", body=b"", headers=()):
        sent = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "query_string": query,
                 "headers": list(headers)}
        await http_application(scope, receive, send)
        return sent[0]["status"], sent[1]["body"]

    def status(*args, **kwargs):
        return asyncio.run(call(*args, **kwargs))

    assert status("GET", "/bare/ingest/osmand/", b"id=k&lat=1&lon=2") == (200, b"")
    assert status("POST", "/bare/ingest/osmand/", body=b"id=k&lat=1&lon=2") == (200, b"")
    auth = (b"authorization", b"Basic YmVuY2g6a2V5")  # bench:key
    body = b'{"_type":"location","lat":1,"lon":2,"tst":1}'
    assert status("POST", "/bare/ingest/owntracks/", body=body, headers=[auth])[0] == 200
    assert status("POST", "/bare/ingest/owntracks/", body=body)[0] == 400  # no key
    assert status("GET", "/bare/ingest/osmand/", b"id=k&lat=x&lon=2")[0] == 400


def test_delivery_counts_viewers_holding_each_devices_last_stored_position():
    from bench.ingest import delivery

    live = {1: 1000, 2: 2000}  # device 3 stored nothing: not checked
    sampled = [{"1": 1000, "2": 2000}, {"1": 1000, "2": 1900}, {"1": 999}]
    reached, checked, missed = delivery(sampled, live, [1, 2, 3])
    assert (reached, checked) == (4, 6)
    assert missed == [{"member": 2, "stored_ts": 2000, "viewer_ts": 1900},
                      {"member": 2, "stored_ts": 2000, "viewer_ts": None}]


def test_summary_table_marks_targets_met_or_not():
    from bench.report import summary_text

    text = summary_text([
        {"name": "a", "geoshare": 1.5, "bare": 1.0, "ratio": 1.5, "target": "ratio <= 2",
         "met": True},
        {"name": "b", "geoshare": None, "bare": 3, "ratio": None, "target": "x",
         "met": False},
    ])
    lines = text.splitlines()
    assert lines[2].split()[-1] == "yes"
    assert lines[3].split()[-1] == "NO"
    assert " - " in lines[3]


@pytest.mark.slow
def test_tiny_ingest_stores_what_it_answered_and_reaches_every_viewer():
    import shutil

    from tests.servers import skip_or_fail

    if shutil.which("wrk") is None:
        skip_or_fail("wrk is not installed (apt-get install wrk)")
    lines = _bench_lines(
        "bench.ingest", "--devices", "20", "--viewers", "3", "--sample-viewers", "3",
        "--connections", "4", "--seconds", "1",
    )
    runs = {(r["door"], r["app"]): r for r in lines}
    assert set(runs) == {(d, a) for d in ("osmand-get", "osmand-post", "owntracks")
                         for a in ("geoshare", "bare")}
    for door in ("osmand-get", "osmand-post", "owntracks"):
        geo, bare = runs[door, "geoshare"], runs[door, "bare"]
        assert geo["not_200"] == 0 and bare["not_200"] == 0
        assert geo["answered_200"] > 0 and bare["answered_200"] > 0
        # Everything answered was stored (more may have been in flight at the end).
        assert geo["stored_at_kill"] >= geo["answered_200"]
        assert geo["answered_not_stored"] == 0
        assert geo["viewers_connected"] == 3
        # Every (sampled viewer, device with a stored position) pair is checked once.
        reached, checked = map(int, geo["delivered_pairs"].split("/"))
        assert checked % 3 == 0 and 0 < checked <= 3 * 20
        assert geo["delivered"] == round(reached / checked, 4)
        # Every device's last stored position reached every sampled viewer, but for
        # requests wrk gave up on at its deadline: geoshare may store those without
        # broadcasting them (seen in issue 16's runs; a server matter, not the
        # harness's), and the misses then say which.
        assert geo["delivered"] == 1.0 or geo["stored_not_answered"] > 0, geo["missed"]
        assert len(geo["missed"]) == min(5, checked - reached)
        assert geo["viewers_without_frames"] == 0


@pytest.mark.slow
def test_door_cpu_bench_answers_every_request_200():
    """bench.door drives each door through the ASGI application: every measured
    request answered 200 (a refusal would measure the wrong path)."""
    lines = _bench_lines("bench.door", "--doors", "osmand-get,osmand-post,owntracks",
                         "--requests", "200", "--warmup", "100")
    assert [r["door"] for r in lines] == ["osmand-get", "osmand-post", "owntracks"]
    for r in lines:
        assert r["statuses"] == {"200": 200}, r
        assert r["cpu_us_per_request"] > 0 and r["wall_us_per_request"] > 0


@pytest.mark.slow
def test_tiny_storm_gives_every_socket_its_snapshot():
    lines = _bench_lines(
        "bench.storm", "--key-sockets", "10", "--session-sockets", "2",
        "--room-sockets", "6",
    )
    runs = {(r["scenario"], r["app"]): r for r in lines}
    assert set(runs) == {("storm rooms 10+2", "geoshare"), ("storm rooms 10+2", "bare"),
                         ("storm room 6", "geoshare"), ("storm room 6", "bare")}
    for (scenario, _app), r in runs.items():
        n = 12 if scenario.startswith("storm rooms") else 6
        assert r["sockets"] == n
        assert r["failed"] == 0, r["first_error"]
        # The browser sessions (cookie and Origin) are let in like the keys.
        assert r["first_frame_types"] == {"snapshot": n}
        assert r["seconds"] is not None


def test_s1_and_s2_rows_compare_geoshare_p99_with_bare():
    from bench.run import Point, headline_rows, ratio_row

    def point(app, size, p99, delivery=1.0, scenario="S1"):
        p = Point(scenario, app, [size], [size], 1.0, 1.0)
        p.result = {"latency": {"p99": p99}, "delivery": delivery}
        return p

    row = ratio_row([point("geoshare", 50, 140), point("naive", 50, 900),
                     point("bare", 50, 100)])
    assert (row["geoshare"], row["bare"], row["ratio"], row["met"]) == (140, 100, 1.4, True)
    worse = ratio_row([point("geoshare", 500, 150), point("bare", 500, 100)])
    assert worse["met"] is False
    lossy = ratio_row([point("geoshare", 700, 100, delivery=0.9), point("bare", 700, 100)])
    assert lossy["met"] is False and "delivery" in lossy["name"]
    skipped = point("geoshare", 2000, None)
    skipped.result = {"skipped": "stopped after 1500"}
    stopped = ratio_row([skipped, point("bare", 2000, 300)])
    assert stopped["geoshare"] is None and stopped["met"] is False
    assert ratio_row([point("geoshare", 5, 1, scenario="S3"), point("bare", 5, 1)]) is None
    assert [r["name"].split()[1] for r in headline_rows([row, worse, lossy, stopped])] == [
        "2000"
    ]
