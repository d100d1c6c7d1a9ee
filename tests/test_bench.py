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
