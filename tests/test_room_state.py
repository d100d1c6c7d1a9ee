"""The pure room state (maps.domain.room_state): transitions in, frames out, no event loop."""

from maps.domain.room_state import PRESENCE_FRAMES_MAX, RoomState
from maps.domain.watch import WatchView
from maps.protocol.events import check_frame, check_watch_frame

NOW = 1_763_700_000_000
ANA = {"id": 1, "name": "Ana", "color": "#1f77b4", "role": "member"}
BO = {"id": 2, "name": "Bo", "color": "#ff7f0e", "role": "member"}


def make_state(*members, share="on"):
    state = RoomState({"public_id": "r00m", "name": "Ski trip", "tick_ms": 100,
                       "stale_after_ms": 120_000, "trail_ms": 600_000})
    state.load({"members": [{"id": m["id"], "info": m, "last_seen": None,
                             "stopped_at": None, "share": share, "sharing_until": None}
                            for m in members], "positions": []})
    return state


def position(member_id, ts, seen=None, lat=46.0):
    return {"member": member_id, "lat": lat, "lon": 14.5, "ts": ts,
            "seen": ts if seen is None else seen}


def flushed(state):
    frames = state.flush()
    for frame in frames:
        check_frame(frame)
    return frames


def test_a_fix_gives_one_positions_frame_with_the_newest_per_member():
    state = make_state(ANA, BO)
    state.apply_fix(position(1, NOW))
    state.apply_fix(position(1, NOW + 1000, lat=46.1))
    state.apply_fix(position(2, NOW))
    frames = flushed(state)
    moved = [f for f in frames if f["type"] == "positions"]
    assert len(moved) == 1
    assert sorted((p["member"], p["lat"]) for p in moved[0]["positions"]) == [
        (1, 46.1), (2, 46.0)]
    # Only that frame: a member already sharing gets no presence for a first position
    # (the position carries its ``seen``; last_seen is kept for the next snapshot).
    assert [f["type"] for f in frames] == ["positions"]
    assert state.last_seen == {1: NOW + 1000, 2: NOW}
    assert flushed(state) == []


def test_an_older_fix_never_moves_the_marker_back():
    state = make_state(ANA)
    state.apply_fix(position(1, NOW + 5000))
    flushed(state)
    assert state.apply_fix(position(1, NOW)) is True
    assert flushed(state) == []
    assert state.latest[1]["ts"] == NOW + 5000


def test_a_fix_received_before_the_last_stop_is_not_shown():
    state = make_state(ANA)
    state.apply_stop(1, NOW)
    state.apply_fix(position(1, NOW + 10, seen=NOW - 1))
    assert 1 not in state.latest
    state.apply_fix(position(1, NOW + 20, seen=NOW + 1))
    assert state.latest[1]["ts"] == NOW + 20


def test_a_fix_of_an_unknown_member_is_handed_back():
    state = make_state(ANA)
    assert state.apply_fix(position(9, NOW)) is False
    assert state.latest == {}


def test_stop_removes_the_marker_once():
    state = make_state(ANA)
    state.apply_fix(position(1, NOW))
    flushed(state)
    state.apply_stop(1, NOW + 1)
    state.apply_stop(1, NOW + 2)
    frames = flushed(state)
    assert [f["type"] for f in frames] == ["stopped", "presence"]
    assert frames[1]["member"]["sharing"] is False


def test_kick_removes_member_and_marker():
    state = make_state(ANA, BO)
    state.apply_fix(position(1, NOW))
    flushed(state)
    state.apply_kick(1, NOW + 1)
    assert [f["type"] for f in flushed(state)] == ["stopped", "removed"]
    assert 1 not in state.members
    assert [m["id"] for m in state.snapshot(2, NOW)["members"]] == [2]


def test_expire_drops_positions_past_retention():
    state = make_state(ANA, BO)
    state.apply_fix(position(1, NOW - 10_000))
    state.apply_fix(position(2, NOW))
    flushed(state)
    state.expire(NOW - 5_000)
    assert [f["type"] for f in flushed(state)] == ["stopped", "presence"]
    assert [p["member"] for p in state.snapshot(2, NOW)["positions"]] == [2]


def test_presence_counts_local_and_remote_sockets():
    state = make_state(ANA)
    assert state.socket_opened(1, ANA, NOW) is True
    assert state.socket_opened(1, ANA, NOW) is False
    flushed(state)
    assert state.socket_closed(1, NOW) is False
    assert state.is_online(1)
    state.peer_presence("hub.b", 1, True, expiry=10.0)
    assert state.socket_closed(1, NOW) is True
    assert state.is_online(1)  # still online on the other process
    assert flushed(state) == []
    state.expire_peers(mono=11.0)
    (frame,) = flushed(state)
    assert (frame["type"], frame["online"]) == ("presence", False)


def test_many_changes_in_one_tick_go_as_one_members_frame():
    members = [{**ANA, "id": i, "name": f"M{i}"} for i in range(PRESENCE_FRAMES_MAX + 2)]
    state = make_state(*members)
    for member in members:
        state.socket_opened(member["id"], member, NOW)
    (frame,) = flushed(state)
    assert frame["type"] == "members" and len(frame["members"]) == len(members)


def test_peer_sync_applies_stops_and_positions():
    state = make_state(ANA, BO)
    state.apply_fix(position(1, NOW))
    flushed(state)
    state.peer_sync("hub.b", [2], [position(2, NOW)], [[1, NOW + 1]], expiry=10.0)
    types = [f["type"] for f in flushed(state)]
    assert types[0] == "stopped" and "positions" in types
    assert set(state.latest) == {2} and state.is_online(2)


def test_snapshot_and_sync_have_their_documented_shapes():
    state = make_state(ANA, BO)
    state.apply_fix(position(1, NOW))
    state.socket_opened(2, BO, NOW)
    check_frame(state.snapshot(2, NOW))
    sync = state.sync_event("hub.a")
    assert sync["online"] == [2] and sync["positions"][0]["member"] == 1


def test_a_share_with_an_end_ends_by_itself_and_refuses_after():
    state = make_state(ANA, BO, share="off")
    assert state.share_state(1, NOW) == "off"
    state.apply_share(1, NOW + 60_000)
    (presence,) = flushed(state)
    assert presence["member"]["sharing_until"] == NOW + 60_000
    assert state.share_state(1, NOW) == "on" and state.next_share_end() == NOW + 60_000
    state.apply_fix(position(1, NOW))
    flushed(state)
    assert state.expire_shares(NOW + 59_999) == []
    assert state.expire_shares(NOW + 60_000) == [1]
    frames = flushed(state)
    assert [f["type"] for f in frames] == ["stopped", "presence"]
    assert frames[1]["member"]["sharing"] is False
    assert state.share_state(1, NOW + 60_001) == "ended"
    assert state.next_share_end() is None
    # A share turned on again is open-ended until said otherwise.
    state.apply_share(1, None)
    assert state.share_state(1, NOW + 10**9) == "on"


def test_a_watch_link_sees_one_member_without_name_or_room():
    state = make_state(ANA, BO)
    state.apply_share(1, None)
    state.apply_fix(position(1, NOW))
    state.apply_fix(position(2, NOW))
    view = WatchView(1)
    snapshot = view.snapshot(state, NOW)
    check_watch_frame(snapshot)
    assert snapshot["member"] == {"id": 1, "sharing": True, "sharing_until": None}
    assert snapshot["position"]["lat"] == position(1, NOW)["lat"]
    frames = view.frames(state, flushed(state))
    for frame in frames:
        check_watch_frame(frame)
    text = repr(frames)
    assert "Bo" not in text and "Ana" not in text
    assert [f["type"] for f in frames] == ["positions"]
    # Another member's stop, and the watched member's presence, tell a watcher nothing.
    state.apply_stop(2, NOW + 1)
    state.socket_opened(1, ANA, NOW + 2)
    assert view.frames(state, flushed(state)) == []
    state.apply_stop(1, NOW + 3)
    assert [f["type"] for f in view.frames(state, flushed(state))] == ["stopped", "share"]


def test_a_watch_snapshot_newer_than_the_last_flush_is_told_to_everyone_again():
    state = make_state(ANA)
    state.apply_share(1, None)
    view = WatchView(1)
    view.snapshot(state, NOW)
    flushed(state)
    state.apply_share(1, NOW + 60_000)
    view.snapshot(state, NOW)  # a second watcher joins before the flush
    state.apply_share(1, None)  # and the change is undone within the tick
    frames = view.frames(state, flushed(state))
    assert frames == [{"type": "share",
                       "member": {"id": 1, "sharing": True, "sharing_until": None}}]


def frame_positions(state):
    return {p["member"]: p for f in flushed(state) if f["type"] == "positions"
            for p in f["positions"]}


def test_a_frame_names_a_device_only_when_it_changed():
    """docs/protocol.md, positions: the first frame names the device, the next ones
    leave it out while it is the same, a change names the new one, a browser tab is
    "", and after a stop the name comes again. The snapshot always names it."""
    state = make_state(ANA, BO)
    state.apply_fix({**position(1, NOW), "device": "Pixel"})
    state.apply_fix(position(2, NOW))
    first = frame_positions(state)
    assert first[1]["device"] == "Pixel" and first[2]["device"] == ""
    state.apply_fix({**position(1, NOW + 1000), "device": "Pixel"})
    state.apply_fix(position(2, NOW + 1000))
    same = frame_positions(state)
    assert "device" not in same[1] and "device" not in same[2]
    assert state.latest[1]["device"] == "Pixel"  # the live state keeps it
    snapshot = state.snapshot(1, NOW + 2000)
    assert {p["member"]: p.get("device") for p in snapshot["positions"]} == {
        1: "Pixel", 2: None}
    state.apply_fix({**position(1, NOW + 2000), "device": "iPad"})
    state.apply_fix({**position(2, NOW + 2000), "device": "Moto"})
    changed = frame_positions(state)
    assert (changed[1]["device"], changed[2]["device"]) == ("iPad", "Moto")
    state.apply_fix(position(1, NOW + 3000))
    assert frame_positions(state)[1]["device"] == ""  # now from a browser tab
    state.apply_stop(2, NOW + 3500)
    flushed(state)
    state.apply_share(2, None)
    state.apply_fix({**position(2, NOW + 4000, seen=NOW + 4000), "device": "Moto"})
    assert frame_positions(state)[2]["device"] == "Moto"


def test_a_share_moved_to_another_source_takes_its_next_position_whatever_its_clock():
    # One source per share (issue 25, item 12): two devices' clocks do not compare; the
    # new source's first fix replaces the old source's live one, then the usual rule.
    state = make_state(ANA)
    state.apply_share(1, None, "browser:laptop-0001", "Chrome · Linux")
    state.apply_fix(position(1, NOW, lat=52.5))
    state.apply_fix(position(1, NOW - 60_000, lat=52.49))
    assert state.latest[1]["lat"] == 52.5
    state.apply_share(1, None, "browser:phone-0002", "Chrome · Android")
    state.apply_fix(position(1, NOW - 30_000, lat=52.53))
    assert state.latest[1]["lat"] == 52.53
    state.apply_fix(position(1, NOW - 40_000, lat=52.52))
    assert state.latest[1]["lat"] == 52.53
    (presence, positions) = flushed(state)[-2:]
    assert (presence["member"]["source"], presence["member"]["source_name"]) == (
        "browser:phone-0002", "Chrome · Android")
    assert [p["lat"] for p in positions["positions"]] == [52.53]
