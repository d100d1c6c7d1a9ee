"""Play a recorded GPX track into a room, as a live client would send it."""

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import gpxpy
import orjson
import websockets
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from maps.management.commands._common import get_room
from maps.models import Role
from maps.services import member_create, member_rotate_key


def track_points(path):
    """Return the points of a GPX file as ``(seconds since first, lat, lon, elevation)``.

    Track points first, then routes; points without a time are spaced one second apart.
    """
    with open(path, encoding="utf-8") as handle:
        gpx = gpxpy.parse(handle)
    points = [p for track in gpx.tracks for seg in track.segments for p in seg.points]
    if not points:
        points = [p for route in gpx.routes for p in route.points]
    if not points:
        raise CommandError(f"{path}: no track or route points")
    first = points[0].time
    result = []
    for index, point in enumerate(points):
        if first is not None and point.time is not None:
            offset = (point.time - first).total_seconds()
        else:
            offset = float(index)
        result.append((offset, point.latitude, point.longitude, point.elevation))
    return result


def websocket_url(base, room_id, key):
    """Return the room's WebSocket URL on the server at ``base`` (http[s]://host:port)."""
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, f"/ws/rooms/{room_id}/", f"key={key}", ""))


async def replay(url, points, speed, stdout=None):
    """Send ``points`` as ``position`` frames, keeping their timing divided by ``speed``.

    Device times (``ts``) start now and advance as the track's times, scaled. Returns
    the number of positions sent. Raises ``CommandError`` if the server refuses.
    """
    start = time.monotonic()
    start_ms = int(time.time() * 1000)
    async with websockets.connect(url, max_size=2**20) as socket:
        first = orjson.loads(await socket.recv())
        if first.get("type") != "snapshot":
            raise CommandError(f"unexpected first frame: {first}")
        errors = []
        # Read (and drop) the room's frames: an unread socket fills up and the server
        # would stop reading from it, and closing would wait for a timeout.
        reader = asyncio.create_task(_drain(socket, errors))
        sent = 0
        for offset, lat, lon, elevation in points:
            delay = start + offset / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = {"type": "position", "lat": lat, "lon": lon,
                     "ts": start_ms + int(offset * 1000 / speed)}
            if elevation is not None:
                frame["altitude"] = elevation
            await socket.send(orjson.dumps(frame).decode())
            sent += 1
        # Let the last tick go out before closing.
        await asyncio.sleep(0.3)
        reader.cancel()
    if errors:
        raise CommandError(f"the server refused positions: {errors[0]}")
    return sent


async def _drain(socket, errors):
    try:
        async for text in socket:
            frame = orjson.loads(text)
            # rate_limited only says a fast replay is coalesced on the map.
            if frame.get("type") == "error" and frame.get("code") != "rate_limited":
                errors.append(frame)
    except websockets.ConnectionClosed:
        pass


class Command(BaseCommand):
    help = ("Replay a GPX track into a room through the WebSocket, as member NAME "
            "(created if missing; an existing member's device key is replaced).")

    def add_arguments(self, parser):
        parser.add_argument("room", help="the room's public id")
        parser.add_argument("file", help="a GPX file")
        parser.add_argument("--member", required=True, help="display name of the member")
        parser.add_argument("--speed", type=float, default=1.0,
                            help="play N times faster than recorded")
        parser.add_argument("--url", default=None,
                            help="the running server (default: GEOSHARE_PUBLIC_URL)")

    def handle(self, *args, **options):
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive")
        room = get_room(options["room"])
        points = track_points(options["file"])
        # Names are unique in a room whatever their case (maps.services.NameTaken).
        member = room.members.filter(name__iexact=options["member"].strip()).first()
        if member is None:
            try:
                member, key = member_create(room=room, name=options["member"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        elif member.role == Role.VIEWER:
            raise CommandError(f"{member.name} is a viewer and cannot share")
        else:
            key = member_rotate_key(member=member)
        url = websocket_url(options["url"] or settings.GEOSHARE["PUBLIC_URL"],
                            room.public_id, key)
        try:
            sent = asyncio.run(replay(url, points, options["speed"]))
        except (OSError, websockets.WebSocketException) as exc:
            raise CommandError(f"could not replay into the server: {exc}") from exc
        self.stdout.write(f"sent {sent} positions as {member.name}")
