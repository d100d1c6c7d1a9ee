"""Export files, written piece by piece: GPX 1.1 and GeoJSON (RFC 7946). No database.

An export may hold a million positions (docs/security.md), so no writer here holds a
whole document: each takes every member's positions as an iterable of
:class:`~maps.domain.tracks.Track` chunks (:func:`maps.storage.selectors.history_chunks`
reads them from the database a chunk at a time) and yields the file as pieces of text
or bytes, letting a chunk go before it asks for the next. Segments are cut at gaps of
more than :data:`~maps.domain.tracks.GAP_MS` across chunks as within them.
"""

import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from xml.sax.saxutils import escape

import orjson

from maps.domain.tracks import GAP_MS, Track
from maps.protocol.events import MemberInfo

# GPX 1.1 has no element for speed, heading, accuracy, battery or charging. Speed and
# course go where Garmin's TrackPointExtension v2 puts them (read by most GPX tools);
# accuracy, battery and charging in geoshare's own namespace.
GPXTPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
GEOSHARE_NS = "urn:geoshare:gpx:1"


# -- GPX 1.1 -------------------------------------------------------------------------

_GPX_HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gpx xmlns="http://www.topografix.com/GPX/1/1" '
    f'xmlns:geoshare="{GEOSHARE_NS}" xmlns:gpxtpx="{GPXTPX_NS}" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://www.topografix.com/GPX/1/1 '
    'http://www.topografix.com/GPX/1/1/gpx.xsd" version="1.1" creator="geoshare">\n'
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Points written into one piece of text at most, so a piece stays near 300 KB.
GPX_PIECE_POINTS = 1000


def _gpx_number(value: float) -> str:
    """A decimal as gpxpy writes it: ``str``, without the exponent GPX 1.1 forbids."""
    text = str(float(value))
    if "e" not in text:
        return text
    return format(value, ".10f").rstrip("0").rstrip(".")


def _gpx_time(ms: int) -> str:
    """UTC epoch ms as gpxpy writes a time: ISO 8601, microseconds only when not zero."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")


def _gpx_point(chunk: Track, i: int) -> str:
    """One ``trkpt`` of position ``i``, indented as gpxpy indents it."""
    parts = [f'      <trkpt lat="{_gpx_number(chunk.lat[i])}" '
             f'lon="{_gpx_number(chunk.lon[i])}">\n']
    altitude = chunk.altitude[i]
    if altitude is not None:
        parts.append(f"        <ele>{_gpx_number(altitude)}</ele>\n")
    parts.append(f"        <time>{_gpx_time(chunk.ts[i])}</time>\n")
    extensions = []
    speed, heading = chunk.speed[i], chunk.heading[i]
    if speed is not None or heading is not None:
        extensions.append("          <gpxtpx:TrackPointExtension>\n")
        if speed is not None:
            extensions.append(f"            <gpxtpx:speed>{float(speed)!r}</gpxtpx:speed>\n")
        if heading is not None:
            extensions.append(
                f"            <gpxtpx:course>{float(heading)!r}</gpxtpx:course>\n")
        extensions.append("          </gpxtpx:TrackPointExtension>\n")
    for name in ("accuracy", "battery"):
        value = getattr(chunk, name)[i]
        if value is not None:
            extensions.append(f"          <geoshare:{name}>{float(value)!r}"
                              f"</geoshare:{name}>\n")
    charging = chunk.charging[i]
    if charging is not None:
        extensions.append("          <geoshare:charging>"
                          f"{'true' if charging else 'false'}</geoshare:charging>\n")
    if extensions:
        parts.append("        <extensions>\n")
        parts.extend(extensions)
        parts.append("        </extensions>\n")
    parts.append("      </trkpt>\n")
    return "".join(parts)


def gpx_pieces(tracks: Iterable[tuple[str, Iterable[Track]]], *,
               name: str | None = None) -> Iterator[str]:
    """Yield a GPX 1.1 document (text) piece by piece, one ``trk`` per non-empty track.

    ``tracks`` are ``(track name, chunks)``: each chunk a :class:`Track` holding the
    next positions of that member in device-time order, so that a caller can read
    them from the database a chunk at a time; a chunk is let go before the next is
    asked for, so memory holds one chunk and one piece (at most
    :data:`GPX_PIECE_POINTS` points of text), never the document.

    The document is the one gpxpy 1.6 wrote before it was streamed (the same
    elements, order, number and time formats; names escaped with
    ``xml.sax.saxutils``): a ``trkseg`` per segment (:func:`segment_bounds`: cut at
    gaps of more than :data:`GAP_MS`, across chunks too), each point with ``lat``,
    ``lon``, ``ele`` (altitude, when known) and ``time`` (UTC); speed (m/s) and course
    (degrees) in Garmin's ``gpxtpx:TrackPointExtension``, accuracy (m), battery (%)
    and charging (``true``/``false``) as ``geoshare:accuracy``, ``geoshare:battery``
    and ``geoshare:charging`` (namespace ``urn:geoshare:gpx:1``).
    """
    yield _GPX_HEADER
    if name:
        yield f"  <metadata>\n    <name>{escape(name)}</name>\n  </metadata>\n"
    for track_name, chunks in tracks:
        last: int | None = None
        for chunk in chunks:
            parts: list[str] = []
            for i in range(len(chunk)):
                ts = chunk.ts[i]
                if last is None:
                    parts.append("  <trk>\n")
                    if track_name is not None:
                        parts.append(f"    <name>{escape(track_name)}</name>\n")
                    parts.append("    <trkseg>\n")
                elif ts - last > GAP_MS:
                    parts.append("    </trkseg>\n    <trkseg>\n")
                last = ts
                parts.append(_gpx_point(chunk, i))
                if len(parts) >= GPX_PIECE_POINTS:
                    yield "".join(parts)
                    parts = []
            if parts:
                yield "".join(parts)
        if last is not None:
            yield "    </trkseg>\n  </trk>\n"
    yield "</gpx>"


def gpx_document(tracks: Iterable[Track], *, name: str | None = None) -> str:
    """Return the whole GPX 1.1 document of :func:`gpx_pieces` for tracks in memory.

    For tests and small tracks; the exports stream :func:`gpx_pieces`.
    """
    return "".join(gpx_pieces(((track.member["name"], [track]) for track in tracks),
                              name=name))


# -- GeoJSON (RFC 7946) ------------------------------------------------------------------

_GEOJSON_EXTRAS = ("altitude", "speed", "heading", "accuracy", "battery", "charging")
_GEOJSON_ARRAYS = ("coordinates", "times", *_GEOJSON_EXTRAS)
# Bytes of one array kept in memory before it is spooled to a temporary file.
SPOOL_BYTES = 1 << 18
# Bytes read back from a spool per piece.
READ_BYTES = 1 << 16


def _columns(chunk: Track, start: int, stop: int) -> dict[str, list[Any]]:
    """The GeoJSON arrays' values of positions ``start:stop`` of ``chunk``."""
    values: dict[str, list[Any]] = {
        "coordinates": list(zip(chunk.lon[start:stop], chunk.lat[start:stop])),
        "times": chunk.ts[start:stop],
    }
    for name in _GEOJSON_EXTRAS:
        values[name] = getattr(chunk, name)[start:stop]
    return values


class _Feature:
    """One member's track Feature being written: each array spooled to its own file."""

    def __init__(self) -> None:
        self.spools: dict[str, IO[bytes]] = {
            name: tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
            for name in _GEOJSON_ARRAYS}
        self.points = 0
        self.segments = 0
        self.in_segment = 0  # positions in the open segment
        self.last_ts: int | None = None
        self.last: dict[str, list[Any]] = {}

    def add(self, chunk: Track) -> None:
        """Write the next chunk's positions, opening a segment at each gap."""
        start = 0
        for i, ts in enumerate(chunk.ts):
            if self.last_ts is not None and ts - self.last_ts > GAP_MS:
                self._write(chunk, start, i)
                self._close()
                start = i
            self.last_ts = ts
        self._write(chunk, start, len(chunk))

    def _write(self, chunk: Track, start: int, stop: int) -> None:
        """Add positions ``start:stop`` of ``chunk`` to the open segment (or a new one)."""
        if stop == start:
            return
        values = _columns(chunk, start, stop)
        for name, spool in self.spools.items():
            if self.in_segment:
                spool.write(b",")
            else:
                spool.write(b",[" if self.segments else b"[")
            spool.write(orjson.dumps(values[name])[1:-1])
        if not self.in_segment:
            self.segments += 1
        self.in_segment += stop - start
        self.points += stop - start
        self.last = {name: column[-1:] for name, column in values.items()}

    def _close(self) -> None:
        """End the open segment; a lone position is given twice (RFC 7946 3.1.4)."""
        if not self.in_segment:
            return
        for name, spool in self.spools.items():
            if self.in_segment == 1:
                spool.write(b"," + orjson.dumps(self.last[name])[1:-1])
            spool.write(b"]")
        self.in_segment = 0

    def pieces(self, member: MemberInfo, extra: dict[str, Any]) -> Iterator[bytes]:
        """The Feature's JSON, as :func:`maps.domain.tracks.track_feature` shapes it."""
        self._close()
        multi = self.segments > 1
        properties = orjson.dumps({"member": member["id"], "name": member["name"],
                                   "color": member["color"], "points": self.points})
        kind = "MultiLineString" if multi else "LineString"
        yield b'{"type":"Feature","geometry":{"type":"' + kind.encode() + b'"'
        for name in _GEOJSON_ARRAYS:
            if name == "times":
                yield b'},"properties":' + properties[:-1]
            yield b',"' + name.encode() + b'":' + (b"[" if multi else b"")
            spool = self.spools[name]
            spool.seek(0)
            while block := spool.read(READ_BYTES):
                yield block
            spool.close()
            if multi:
                yield b"]"
        tail = orjson.dumps({"kind": "track", **extra})
        yield b"," + tail[1:] + b"}"

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()


def geojson_pieces(tracks: Iterable[tuple[MemberInfo, dict[str, Any], Iterable[Track]]],
                   *, foreign: dict[str, Any] | None = None) -> Iterator[bytes]:
    """Yield a GeoJSON FeatureCollection (UTF-8 bytes) piece by piece.

    ``tracks`` are ``(member info, extra properties, chunks)``; the document is
    :func:`maps.domain.tracks.feature_collection` of the joined chunks (``extras`` on),
    each track Feature's properties followed by ``kind`` (``"track"``) and the extra
    properties, ``foreign`` members (``since``, ``until``) before ``features``. A
    Feature's arrays (coordinates, times, altitude, ...) come one after the other,
    so while a member's chunks are read each array is spooled to a temporary file
    (in memory up to :data:`SPOOL_BYTES`, then on disk): memory holds one chunk and
    the spools' buffers, never the document.
    """
    head = orjson.dumps({"type": "FeatureCollection", **(foreign or {})})
    yield head[:-1] + b',"features":['
    first = True
    for member, extra, chunks in tracks:
        feature = _Feature()
        try:
            for chunk in chunks:
                feature.add(chunk)
            if not feature.points:
                continue
            if not first:
                yield b","
            first = False
            yield from feature.pieces(member, extra)
        finally:
            feature.close()
    yield b"]}"
