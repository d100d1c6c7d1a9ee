"""Write maps/ops/demo_data/park-loop.gpx: the demo walker's track, made up by geoshare.

A walk of about 1.6 km once around an ellipse in Ljubljana's Tivoli park, one point every
5 seconds at a walking pace (1.4 m/s), with a little wobble so that it looks walked.
Deterministic: running it again writes the same file. ``python scripts/make_demo_track.py``
"""

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpxpy.gpx

CENTRE = (46.0555, 14.4978)  # latitude, longitude (degrees)
RADII_M = (330.0, 180.0)  # north-south, east-west semi-axes (metres)
STEP_S = 5
SPEED_MS = 1.4
EARTH_M = 6371008.8
OUT = Path(__file__).resolve().parent.parent / "maps" / "demo_data" / "park-loop.gpx"


def points():
    """Yield (lat, lon) around the ellipse, spaced by the walking pace."""
    a, b = RADII_M
    circumference = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    count = int(circumference / (SPEED_MS * STEP_S))
    for i in range(count):
        t = 2 * math.pi * i / count
        wobble = 4.0 * math.sin(7 * t)  # metres
        north = (a + wobble) * math.cos(t)
        east = (b + wobble) * math.sin(t)
        lat = CENTRE[0] + math.degrees(north / EARTH_M)
        lon = CENTRE[1] + math.degrees(east / (EARTH_M * math.cos(math.radians(CENTRE[0]))))
        yield round(lat, 6), round(lon, 6)


def main():
    gpx = gpxpy.gpx.GPX()
    gpx.creator = "geoshare scripts/make_demo_track.py"
    track = gpxpy.gpx.GPXTrack(name="Demo walk: a loop in the park")
    segment = gpxpy.gpx.GPXTrackSegment()
    start = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    for i, (lat, lon) in enumerate(points()):
        segment.points.append(gpxpy.gpx.GPXTrackPoint(
            lat, lon, elevation=298.0, time=start + timedelta(seconds=i * STEP_S)))
    track.segments.append(segment)
    gpx.tracks.append(track)
    OUT.write_text(gpx.to_xml())
    print(f"{OUT}: {len(segment.points)} points")


if __name__ == "__main__":
    main()
