"""The history benchmark (issue 13): one room of a million positions on PostgreSQL.

``python -m bench.history`` (``make bench`` runs it through ``bench.run``). On a private
database of the PostgreSQL server the tests use (``tests.servers.postgres_database``),
migrated, it makes one room of 13 members (an owner, the day's walker and 11
others) and bulk-loads 1,000,000 positions with
``COPY``: one member's day at 1 Hz (86,400 positions, a day of stays and trips), and
913,600 more of the 11 others over the last 14 days. Then it times, each ``--repeat``
times (the median is reported, and the first, cold, run):

- the map's history of the day (``GET /api/rooms/<room>/history``: query, stays,
  simplification at zoom 12 and 16, GeoJSON encoding; target under 300 ms);
- the day as GPX (``GET /r/<room>/export.gpx``, complete);
- the track API's first page of the room (12 members) and of the member
  (``GET /api/rooms/<room>/track``);
- a prune of a week of the whole room (``maps.services.positions_prune`` after the
  retention is cut from 14 to 7 days) while another connection inserts single
  positions one after another; the longest insert is what the prune held ingest up
  (target: never over 100 ms).

Requests go through Django's test client with a device key, so the door check, the
history rule and the JSON encoding are in the times. Each query's plan is shown
(``EXPLAIN``) with the indexes it uses.
"""

import argparse
import os
import statistics
import sys
import threading
import time
import warnings
from datetime import timedelta

import django
import numpy as np

from tests.servers import postgres_database

TOTAL = 1_000_000
DAY_POINTS = 86_400
OTHERS = 11
DAYS = 14


def _setup(database_url):
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "geoshare.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.pop("REDIS_URL", None)
    django.setup()
    from django.core.management import call_command  # after django.setup()

    call_command("migrate", "--noinput", verbosity=0)


# -- data -------------------------------------------------------------------------------


def _day(start_ms, rng):
    """A day at 1 Hz: still for a while (GPS jitter of a few metres), then a trip."""
    lat = np.empty(DAY_POINTS)
    lon = np.empty(DAY_POINTS)
    speed = np.zeros(DAY_POINTS)
    y = x = 0.0
    i = 0
    moving = False
    heading = rng.uniform(0, 2 * np.pi)
    while i < DAY_POINTS:
        n = int(rng.uniform(5, 60) * 60) if moving else int(rng.uniform(20, 180) * 60)
        n = min(n, DAY_POINTS - i)
        if moving:
            pace = rng.uniform(1.0, 15.0)
            turns = np.cumsum(rng.normal(0, 0.05, n)) + heading
            x_steps = np.cumsum(pace * np.sin(turns))
            y_steps = np.cumsum(pace * np.cos(turns))
            xs, ys = x + x_steps, y + y_steps
            speed[i:i + n] = pace
            heading = float(turns[-1])
        else:
            xs = x + rng.normal(0, 3, n)
            ys = y + rng.normal(0, 3, n)
        lat[i:i + n] = 46.05 + ys / 111_195.0
        lon[i:i + n] = 14.5 + xs / (111_195.0 * np.cos(np.radians(46.05)))
        x, y = (float(x_steps[-1]) + x, float(y_steps[-1]) + y) if moving else (x, y)
        i += n
        moving = not moving
    ts = start_ms + np.arange(DAY_POINTS, dtype=np.int64) * 1000
    return lat, lon, speed, ts


def _others(count, start_ms, end_ms, rng):
    """``count`` positions of one member spread over ``[start_ms, end_ms)``, walking."""
    ts = np.sort(rng.integers(start_ms, end_ms, count))
    lat = 46.0 + np.cumsum(rng.normal(0, 2e-5, count))
    lon = 14.4 + np.cumsum(rng.normal(0, 2e-5, count))
    return lat, lon, np.full(count, np.nan), ts


def _copy_rows(member_id, lat, lon, speed, ts):
    """Text-format COPY lines of one member's positions (received = device time)."""
    stamps = np.datetime_as_string(ts.astype("datetime64[ms]"), unit="ms") + "+00"
    speed_text = np.where(np.isnan(speed), "\\N", np.char.mod("%.2f", np.nan_to_num(speed)))
    lines = [f"{member_id}\t{a:.7f}\t{b:.7f}\t5\t{s}\t{t}\t{t}\n"
             for a, b, s, t in zip(lat.tolist(), lon.tolist(), speed_text.tolist(),
                                   stamps.tolist())]
    return "".join(lines)


def load(now_ms):
    """Make the room and COPY a million positions; return (room, day member, key, day)."""
    # after django.setup()
    from django.db import connection

    from maps.models import Member
    from maps.services import member_create, room_create

    rng = np.random.default_rng(13)
    room, _owner = room_create(name="History bench", owner_name="Owner",
                               retention_days=DAYS)
    walker, key = member_create(room=room, name="Day walker")
    others = [member_create(room=room, name=f"Other {i + 1}")[0] for i in range(OTHERS)]
    day_start = now_ms - 2 * 86_400_000
    day_start -= day_start % 86_400_000  # a whole UTC day, the day before yesterday
    started = time.perf_counter()
    per_other = (TOTAL - DAY_POINTS) // OTHERS
    left = TOTAL - DAY_POINTS - per_other * OTHERS
    columns = "(member_id, lat, lon, accuracy, speed, device_time, received)"
    with connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor().copy(f"COPY maps_position {columns} FROM STDIN") as copy:
            copy.write(_copy_rows(walker.pk, *_day(day_start, rng)))
            for index, member in enumerate(others):
                count = per_other + (left if index == 0 else 0)
                copy.write(_copy_rows(member.pk, *_others(
                    count, now_ms - DAYS * 86_400_000 + 60_000, now_ms, rng)))
        cursor.execute("VACUUM ANALYZE maps_position")
    loaded = time.perf_counter() - started
    assert Member.objects.filter(room=room).count() == OTHERS + 2
    return room, walker, key, (day_start, day_start + 86_400_000), loaded


# -- measuring ---------------------------------------------------------------------------


def _timed(function, repeat):
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000)
    return result, times


def _plan(queryset):
    """The query plan's lines (EXPLAIN ANALYZE) and the indexes it names."""
    plan = queryset.explain(analyze=True)
    indexes = set()
    for line in plan.splitlines():
        for marker in (" using ", "Bitmap Index Scan on "):
            if marker in line:
                indexes.add(line.split(marker, 1)[1].split()[0])
    indexes = sorted(indexes)
    return plan, indexes


def _get(client, url, key):
    # secure: bench.run's environment is production's (DEBUG off: HTTPS only).
    response = client.get(url, secure=True, headers={"Authorization": f"Bearer {key}",
                                                     "Host": "127.0.0.1"})
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return response


def _streamed(response):
    """The whole body of a streamed download (the exports hand out an async iterator;
    the test client reads it in an event loop of its own, as Django says)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "StreamingHttpResponse must consume")
        return b"".join(response)


def measure(room, walker, key, day, repeat):
    # after django.setup()
    from django.test import Client

    from maps.storage.selectors import from_ms

    client = Client()
    since, until = day
    rows = []
    plans = {}

    base = f"/api/rooms/{room.public_id}/history?member={walker.pk}&since={since}&until={until}"
    for zoom in (12, 16):
        response, times = _timed(lambda z=zoom: _get(client, f"{base}&zoom={z}", key),
                                 repeat)
        data = response.json()
        track = next(f for f in data["features"] if f["properties"]["kind"] == "track")
        drawn = sum(len(p) for p in track["geometry"]["coordinates"]) if \
            track["geometry"]["type"] == "MultiLineString" else len(
                track["geometry"]["coordinates"])
        stays = sum(1 for f in data["features"] if f["properties"]["kind"] == "stay")
        rows.append((f"day as drawable GeoJSON, zoom {zoom}", times,
                     f"{track['properties']['points']:,} positions -> {drawn:,} drawn "
                     f"(tolerance {data['tolerance_m']:.2f} m), {stays} stays, "
                     f"{len(response.content) / 1024:.0f} KiB"))

    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        _get(client, f"{base}&zoom=16", key)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)

    gpx_url = f"/r/{room.public_id}/export.gpx?member={walker.pk}&since={since}&until={until}"
    document, times = _timed(lambda: _streamed(_get(client, gpx_url, key)),
                             max(1, repeat // 2))
    rows.append(("day as GPX (complete, streamed)", times,
                 f"{document.count(b'<trkpt'):,} points, "
                 f"{len(document) / 2**20:.1f} MiB"))

    page_url = f"/api/rooms/{room.public_id}/track"
    response, times = _timed(lambda: _get(client, page_url, key), repeat)
    rows.append(("API first page, room (13 members)", times,
                 f"{len(response.json()['positions'])} positions, next cursor "
                 f"{'yes' if response.json()['next'] else 'no'}"))
    member_page = f"{page_url}?member={walker.pk}"
    response, times = _timed(lambda: _get(client, member_page, key), repeat)
    rows.append(("API first page, one member", times,
                 f"{len(response.json()['positions'])} positions"))
    cursor = response.json()["next"]
    response, times = _timed(lambda: _get(client, f"{member_page}&cursor={cursor}", key),
                             repeat)
    rows.append(("API second page, one member", times,
                 f"{len(response.json()['positions'])} positions"))

    # after django.setup()
    from django.utils import timezone

    from maps.access.scope import history_scope
    from maps.models import Position

    floor = history_scope(walker).floor
    day_rows = Position.objects.filter(
        member_id__in=[walker.pk], device_time__gte=from_ms(since),
        device_time__lt=from_ms(until), received__gte=floor,
    ).order_by("device_time", "id").values_list("id", "lat", "lon", "device_time")
    plans["day's track (one chunk of 10,000)"] = _plan(day_rows[:10_000])
    page = Position.objects.filter(
        member_id__in=[walker.pk], device_time__gte=floor,
        device_time__lt=timezone.now() + timedelta(minutes=10), received__gte=floor,
    ).order_by("device_time", "id")[:1001]
    plans["API page of one member"] = _plan(page)
    return rows, plans


def prune_while_inserting(room, now_ms):
    """Cut retention to 7 days and prune; meanwhile insert single rows elsewhere.

    Returns ``(deleted, prune seconds, [insert ms], batch plan)``.
    """
    import psycopg

    # after django.setup()
    from django.conf import settings
    from django.db import connection

    from maps import services
    from maps.models import Member, Position, Room
    from maps.services import positions

    member = Member.objects.filter(room=room, name="Other 1").get()
    db = settings.DATABASES["default"]
    dsn = psycopg.conninfo.make_conninfo(
        host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"], user=db["USER"],
        password=db["PASSWORD"] or None)
    insert_ms = []
    stop = threading.Event()

    def insert_loop():
        with psycopg.connect(dsn, autocommit=True) as other:
            while not stop.is_set():
                started = time.perf_counter()
                other.execute(
                    "INSERT INTO maps_position (member_id, lat, lon, device_time, "
                    "received) VALUES (%s, 46.0, 14.5, now(), now())", (member.pk,))
                insert_ms.append((time.perf_counter() - started) * 1000)
                time.sleep(0.002)

    Room.objects.filter(pk=room.pk).update(retention_days=7)
    room.refresh_from_db()
    cutoff = timezone_now() - room.retention()
    batch_plan = _plan(Position.objects.filter(member__room=room, received__lt=cutoff)
                       .values_list("pk", flat=True)[:positions.PRUNE_BATCH])
    thread = threading.Thread(target=insert_loop, daemon=True)
    thread.start()
    time.sleep(1.0)  # inserts alone first: the baseline
    baseline = len(insert_ms)
    started = time.perf_counter()
    deleted = services.positions_prune(rooms=[room])
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    stop.set()
    thread.join()
    connection.close()
    return deleted, seconds, insert_ms[:baseline], insert_ms[baseline:], batch_plan


def timezone_now():
    from django.utils import timezone  # after django.setup()

    return timezone.now()


def report(rows, plans, loaded, prune):
    print(f"\nhistory benchmark: 1,000,000 positions in one room on PostgreSQL "
          f"(COPY in {loaded:.1f} s); times in ms")
    print(f"{'what':40} {'median':>8} {'first':>8} {'max':>8}  notes")
    print("-" * 110)
    for label, times, notes in rows:
        print(f"{label:40} {statistics.median(times):8.0f} {times[0]:8.0f} "
              f"{max(times):8.0f}  {notes}")
    deleted, seconds, before, during, batch_plan = prune
    during_sorted = sorted(during)
    p99 = during_sorted[int(0.99 * (len(during_sorted) - 1))] if during else float("nan")
    print(f"{'prune a week (retention 14 -> 7 days)':40} {seconds * 1000:8.0f} "
          f"{'':8} {'':8}  {deleted:,} positions deleted in batches of 5,000")
    print(f"{'  single inserts meanwhile':40} {statistics.median(during):8.1f} "
          f"{'':8} {max(during):8.1f}  {len(during):,} inserts, p99 {p99:.1f} ms; "
          f"before the prune: median {statistics.median(before):.1f}, "
          f"max {max(before):.1f} ms ({len(before)} inserts)")
    plans = {**plans, "prune batch (ids of 5,000)": batch_plan}
    print("\nquery plans (EXPLAIN ANALYZE):")
    for label, (plan, indexes) in plans.items():
        print(f"\n- {label}: indexes used: {', '.join(indexes) or 'none'}")
        for line in plan.splitlines():
            print(f"    {line}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="geoshare history benchmark (issue 13)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each request")
    args = parser.parse_args(argv)
    with postgres_database() as url:
        _setup(url)
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        room, walker, key, day, loaded = load(now_ms)
        print(f"loaded in {time.perf_counter() - started:.1f} s", flush=True)
        rows, plans = measure(room, walker, key, day, args.repeat)
        prune = prune_while_inserting(room, now_ms)
        report(rows, plans, loaded, prune)
        from django.db import connections  # after django.setup()

        connections.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
