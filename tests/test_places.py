"""The enter/leave rule of maps.domain.places: pure, no database."""

import math
import random

import pytest

from maps.domain import places
from maps.domain.places import OUTSIDE, Circle, PlaceState

LAT, LON = 48.8566, 2.3522
SCHOOL = Circle(LAT, LON, 100.0)


def east(metres):
    """Return (lat, lon) ``metres`` east of the centre."""
    dlon = metres / (places.EARTH_RADIUS_M * math.cos(math.radians(LAT))) * 180 / math.pi
    return LAT, LON + dlon


def fix(metres, accuracy, ts):
    return (*east(metres), accuracy, ts)


def test_haversine_matches_a_known_distance():
    # Paris to London, about 343.5 km on the sphere.
    d = places.distance_m(48.8566, 2.3522, 51.5074, -0.1278)
    assert 343_000 < d < 344_500
    assert places.distance_m(LAT, LON, *east(100)) == pytest.approx(100, abs=0.01)


def test_margin_is_20_m_or_a_tenth_of_the_radius():
    assert places.margin(50) == 20
    assert places.margin(1000) == 100


def test_jitter_at_the_boundary_does_not_flap():
    rng = random.Random(7)
    fixes = [fix(100 + rng.uniform(-25, 25), 15, 1000 * i) for i in range(300)]
    fixes.insert(0, fix(60, 10, -1000))
    state, found = places.run(SCHOOL, OUTSIDE, fixes)
    assert [kind for kind, _ in found] == ["enter"]
    assert state.inside


def test_slow_crossing_enters_once_and_leaves_once():
    # 2 m/s straight through: in at 100 m, out past 100 + 20 + 10 m on the other side.
    walk = [fix(300 - 2 * i, 10, 1000 * i) for i in range(301)]
    state, found = places.run(SCHOOL, OUTSIDE, walk)
    kinds = [kind for kind, _ in found]
    assert kinds == ["enter", "leave"]
    enter_ts, leave_ts = found[0][1], found[1][1]
    assert enter_ts == 100_000  # first fix at 100 m
    assert leave_ts == 216_000  # first fix further than 130 m: 300 - 2 * 216 = -132
    assert not state.inside


def test_fast_crossing_with_one_fix_inside_is_seen():
    walk = [fix(-500, 10, 0), fix(0, 10, 10_000), fix(500, 10, 20_000)]
    _, found = places.run(SCHOOL, OUTSIDE, walk)
    assert found == [("enter", 10_000), ("leave", 20_000)]


def test_fix_with_accuracy_larger_than_the_place_is_ignored():
    small = Circle(LAT, LON, 30)
    state, found = places.run(small, OUTSIDE, [fix(0, 61, 0)])
    assert found == [] and not state.inside
    inside = PlaceState(True, 0, 0)
    state, found = places.run(small, inside, [fix(5000, 2000, 10)])
    assert found == [] and state.inside


def test_poor_fix_near_the_edge_does_not_leave():
    inside = PlaceState(True, 0, 0)
    # 180 m from the centre with 60 m accuracy: could still be at 120 m <= 100 + 20.
    _, found = places.run(SCHOOL, inside, [fix(180, 60, 10)])
    assert found == []
    _, found = places.run(SCHOOL, inside, [fix(181, 60, 10)])
    assert found == [("leave", 10)]


def test_late_out_of_order_batch_is_decided_by_device_time():
    # Live: entered at 10 s, still inside at 50 s.
    state, found = places.run(SCHOOL, OUTSIDE, [fix(500, 10, 0), fix(20, 10, 10_000),
                                                 fix(30, 10, 50_000)])
    assert found == [("enter", 10_000)]
    # An offline batch from before 50 s arrives late, shuffled: changes nothing.
    late = [fix(900, 10, 20_000), fix(0, 10, 15_000), fix(900, 10, 40_000)]
    same, found = places.run(SCHOOL, state, late)
    assert found == [] and same == state
    # Its out-of-order fixes after 50 s are sorted by device time.
    later = [fix(900, 10, 70_000), fix(10, 10, 60_000)]
    state, found = places.run(SCHOOL, state, later)
    assert found == [("leave", 70_000)]


def test_a_fix_decided_once_is_not_decided_twice():
    state, found = places.run(SCHOOL, OUTSIDE, [fix(0, 5, 1000)])
    assert found == [("enter", 1000)]
    again, found = places.run(SCHOOL, state, [fix(0, 5, 1000)])
    assert found == [] and again == state
