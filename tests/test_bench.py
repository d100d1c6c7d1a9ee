"""The benchmark harness (bench/) counts and measures what it says it does.

Statistics are checked on known inputs; the generator is checked end to end on a tiny
room of each app served by a real uvicorn. No timing is asserted: only counts, and that
latencies are computed from the frames' ``ts``.
"""

import asyncio
import json
import secrets

import pytest

from bench.loadgen import (
    InvalidHandshake,
    LatencyHistogram,
    WSClient,
    accept_for,
    check_handshake_response,
    client_frame,
    count_positions,
    expected_deliveries,
    frame_type,
    handshake_request,
    mask_payload,
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


# -- the generator's WebSocket client (RFC 6455) ---------------------------------------


class FakeTransport:
    def __init__(self):
        self.written = []
        self.closing = False
        self.aborted = False

    def write(self, data):
        self.written.append(bytes(data))

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    def abort(self):
        self.closing = self.aborted = True


class Recorder(WSClient):
    loop = None

    def __init__(self):
        if Recorder.loop is None:
            Recorder.loop = asyncio.new_event_loop()
        super().__init__("dGhlIHNhbXBsZSBub25jZQ==", b"", loop=Recorder.loop)
        self.messages, self.codes = [], []
        self.open = True  # past the handshake
        self.transport = FakeTransport()

    def message(self, data):
        self.messages.append(data)

    def closed(self, code):
        self.codes.append(code)


def server_frame(opcode, payload, fin=True):
    """An unmasked server frame, as RFC 6455 section 5.2 lays it out."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, n))
    elif n < 65536:
        head = bytes((b0, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 127)) + n.to_bytes(8, "big")
    return head + payload


def unmask(frame):
    """(opcode, payload) of one masked client frame."""
    assert frame[0] & 0x80 and frame[1] & 0x80  # final, masked
    n, i = frame[1] & 0x7F, 2
    if n == 126:
        n, i = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, i = int.from_bytes(frame[2:10], "big"), 10
    mask, payload = frame[i : i + 4], frame[i + 4 :]
    assert len(payload) == n
    return frame[0] & 0x0F, bytes(b ^ mask[j % 4] for j, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frames_of_every_length_encoding_are_parsed_whole_across_reads(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = server_frame(0x1, payload) + server_frame(0x2, b"next")
    client = Recorder()
    for i in range(0, len(data), 7000):  # arbitrary read boundaries
        client.data_received(data[i : i + 7000])
    assert client.messages == [payload, b"next"]
    assert client.buf == b""


def test_header_split_mid_length_waits_for_the_rest():
    data = server_frame(0x1, b"x" * 70000)
    client = Recorder()
    for i in range(len(data)):
        if i < 12:
            client.data_received(data[i : i + 1])
    client.data_received(data[12:])
    assert client.messages == [b"x" * 70000]


def test_fragmented_message_is_assembled_and_pings_between_are_answered():
    client = Recorder()
    client.data_received(
        server_frame(0x1, b'{"type":', fin=False)
        + server_frame(0x9, b"hi")
        + server_frame(0x0, b'"positions",', fin=False)
        + server_frame(0x0, b'"positions":[]}')
    )
    assert client.messages == [b'{"type":"positions","positions":[]}']
    assert [unmask(f) for f in client.transport.written] == [(0xA, b"hi")]


def test_ping_is_answered_with_a_masked_pong_of_the_same_payload():
    client = Recorder()
    client.data_received(server_frame(0x9, b"payload!"))
    (pong,) = client.transport.written
    assert pong[:2] == bytes((0x8A, 0x88))  # FIN + pong; masked, 8 bytes
    assert unmask(pong) == (0xA, b"payload!")
    assert client.messages == []


def test_close_frame_records_its_code_once_and_is_echoed():
    client = Recorder()
    client.data_received(server_frame(0x8, (4403).to_bytes(2, "big") + b"bye"))
    client.data_received(server_frame(0x1, b"after close: ignored"))
    client.connection_lost(None)
    assert client.codes == [4403]
    assert unmask(client.transport.written[0]) == (0x8, (4403).to_bytes(2, "big"))
    assert client.transport.closing
    assert client.messages == []


def test_close_without_code_is_1005_and_a_lost_connection_is_1006():
    client = Recorder()
    client.data_received(server_frame(0x8, b""))
    assert client.codes == [1005]
    lost = Recorder()
    lost.connection_lost(ConnectionResetError())
    assert lost.codes == [1006]
    aborted = Recorder()
    aborted.abort()
    aborted.connection_lost(None)
    assert aborted.codes == []  # the generator's own abort at the end is not counted


def test_masked_or_rsv_server_frames_fail_the_connection():
    for bad in (bytes((0x81, 0x81)) + b"mask" + b"x", bytes((0xC1, 1)) + b"x"):
        client = Recorder()
        client.data_received(bad)
        assert client.transport.aborted and client.messages == []


def test_client_frames_are_masked_with_the_given_key():
    assert client_frame(0x1, b"Hello", mask=bytes.fromhex("37fa213d")) == bytes.fromhex(
        "818537fa213d7f9f4d5158"  # RFC 6455 section 5.7's masked "Hello"
    )
    big = b"a" * 300
    op, payload = unmask(client_frame(0x1, big))
    assert (op, payload) == (0x1, big)
    assert mask_payload(b"", b"abcd") == b""


def test_handshake_request_and_accept_check():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    assert accept_for(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3
    request = handshake_request("ws://127.0.0.1:8001/ws/r/?member=2", key)
    assert request.startswith(
        b"GET /ws/r/?member=2 HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
    )
    assert b"Sec-WebSocket-Key: " + key.encode() in request
    assert b"Sec-WebSocket-Version: 13\r\n" in request
    assert request.endswith(b"\r\n\r\n")
    ok = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    )
    check_handshake_response(ok, key)
    with pytest.raises(InvalidHandshake, match="Accept"):
        check_handshake_response(ok.replace(b"s3pP", b"AAAA"), key)
    with pytest.raises(InvalidHandshake, match="HTTP 403"):
        check_handshake_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0", key)
    with pytest.raises(InvalidHandshake, match="extension"):
        check_handshake_response(ok + b"\r\nSec-WebSocket-Extensions: x", key)


def test_handshake_response_then_frames_in_one_read():
    client = Recorder()
    client.open = False
    client.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        b"\r\n\r\n" + server_frame(0x1, b"first")
    )
    assert client.open and client.opened.done()
    assert client.messages == [b"first"]


# -- end to end on a real uvicorn -------------------------------------------------------


@pytest.fixture(scope="module")
def bench_server(tmp_path_factory):
    """bench.common.Server (uvicorn serving bench.asgi) on a fresh migrated SQLite
    database, with one geoshare room of three keyed members; shared by the module."""
    from bench.common import Server

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


def test_calibrate_prints_its_timings(capsys):
    from bench import calibrate

    assert calibrate.main(["--times", "2", "--every", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["ms"]) == 2 and all(ms > 0 for ms in result["ms"])
    assert result["spread"] == round(max(result["ms"]) / min(result["ms"]), 2)
