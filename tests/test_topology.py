"""The deployment of docs/deploy.md, for real: nginx in front of two uvicorn workers on
Redis and PostgreSQL, all on loopback.

nginx runs the repository's own site file (docker/nginx.conf) and the workers are
started from the repository's systemd unit (docker/systemd/geoshare@.service), each
with only its ports and paths changed. Settings are production's: DEBUG off, HTTPS
redirect on (nginx terminates TLS with a certificate made for the test), forwarded
headers believed from 127.0.0.1 only.
"""

import asyncio
import contextlib
import shlex
import shutil
import ssl
import subprocess
import time

import httpx
import orjson
import psycopg
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import (
    ROOT,
    Nginx,
    Project,
    RedisServer,
    Uvicorn,
    free_port,
    ipv6_loopback,
    nginx_binary,
    postgres_database,
    skip_or_fail,
)

pytestmark = pytest.mark.slow

HOST = "maps.example.org"
SITE = ROOT / "docker" / "nginx.conf"
UNIT = ROOT / "docker" / "systemd" / "geoshare@.service"
T0 = int(time.time()) - 600  # device time of the phone's first position, epoch s


# -- the repository's configuration, templated for ports and paths ------------------------


def unit_service(path=UNIT):
    """Return ``(argv, environment)`` of a systemd unit's ``[Service]`` section."""
    argv, environment, section = None, {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
        elif section == "[Service]" and line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            environment[name] = value
    return argv, environment


def worker(project, instance):
    """A :class:`Uvicorn` started as the unit starts instance ``instance``, on free
    ports: the unit's serving options and environment, its ports replaced."""
    argv, environment = unit_service()
    assert argv[1:3] == ["-m", "geoshare.serving"], argv
    options = argv[3:]
    assert options[options.index("--host") + 1] == "127.0.0.1"
    assert options[options.index("--port") + 1] == "800%i"
    extra = [o for i, o in enumerate(options)
             if o not in ("--host", "--port") and options[i - 1] not in ("--host", "--port")]
    assert environment["GEOSHARE_METRICS_PORT"] == "910%i"
    env = {**environment, "GEOSHARE_METRICS_PORT": str(free_port())}
    assert not any("%" in value for value in env.values()), env
    server = Uvicorn(project, extra_env=env, extra_args=extra)
    server.instance = instance
    server.metrics_port = int(env["GEOSHARE_METRICS_PORT"])
    return server


def nginx_for(directory, workers, cert, key, static_root):
    """The repository's nginx site on free loopback ports, in front of ``workers``."""
    http, https = free_port(), free_port()
    v6 = ipv6_loopback()
    replace = {
        "listen 80;": f"listen 127.0.0.1:{http};",
        "listen [::]:80;": f"listen [::1]:{http};" if v6 else "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
        "listen [::]:443 ssl http2;": f"listen [::1]:{https} ssl http2;" if v6 else "",
        "server 127.0.0.1:8001 ": f"server 127.0.0.1:{workers[0].port} ",
        "server 127.0.0.1:8002 ": f"server 127.0.0.1:{workers[1].port} ",
        f"/etc/letsencrypt/live/{HOST}/fullchain.pem": str(cert),
        f"/etc/letsencrypt/live/{HOST}/privkey.pem": str(key),
        "/var/log/nginx/": f"{directory}/logs/",
        "/var/www/letsencrypt": f"{directory}/acme",
        "/srv/geoshare/staticfiles/": f"{static_root}/",
    }
    proxy = Nginx(SITE, directory, replace=replace, ports=[http, https])
    proxy.http, proxy.https = http, https
    return proxy


def certificate(directory):
    """A self-signed certificate for HOST and 127.0.0.1: ``(cert path, key path)``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST},IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return cert, key


# -- clients ---------------------------------------------------------------------------------


def open_sockets(server):
    """The ``geoshare_open_sockets`` gauge of one worker, from its metrics port."""
    text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "geoshare_open_sockets":
            return int(family.samples[0].value)
    raise AssertionError("no geoshare_open_sockets")


class Screen:
    """A map through the proxy: a WebSocket that reconnects as the page does.

    Every frame lands in ``frames``; every (re)connection's snapshot in ``snapshots``;
    close codes of the server's closes in ``closes``.
    """

    def __init__(self, url, port, tls):
        self.url, self.port, self.tls = url, port, tls
        self.frames = asyncio.Queue()
        self.snapshots, self.closes = [], []
        self.socket = None
        self._task = None
        self._stopping = False

    async def _connect(self):
        # To nginx on loopback, with the site's name in the Host header and for TLS.
        self.socket = await websockets.connect(
            self.url, ssl=self.tls, host="127.0.0.1", port=self.port, proxy=None,
            open_timeout=5)
        snapshot = orjson.loads(await asyncio.wait_for(self.socket.recv(), 5))
        assert snapshot["type"] == "snapshot"
        self.snapshots.append(snapshot)
        self.frames.put_nowait(snapshot)

    async def open(self):
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self):
        while True:
            try:
                async for text in self.socket:
                    self.frames.put_nowait(orjson.loads(text))
            except websockets.ConnectionClosed:
                pass
            self.closes.append(self.socket.close_code)
            if self._stopping:
                return
            for _ in range(60):  # the page backs off; a quarter second is enough here
                await asyncio.sleep(0.25)
                with contextlib.suppress(OSError, websockets.InvalidStatus,
                                         websockets.ConnectionClosed, TimeoutError):
                    await self._connect()
                    break
            else:
                return

    async def position_of(self, member_id, lat, timeout=10):
        """Wait for a frame that shows ``member_id`` at latitude ``lat``."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                for position in frame.get("positions", ()):
                    if position["member"] == member_id and position["lat"] == lat:
                        return frame

    async def send_position(self, lat, lon):
        await self.socket.send(orjson.dumps({"type": "position", "lat": lat,
                                             "lon": lon}).decode())

    async def close(self):
        self._stopping = True
        if self.socket is not None:
            await self.socket.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)


class Phone:
    """OsmAnd through the proxy: one position every ``every`` s, each sent until it is
    accepted, as the app does with its buffer. ``accepted`` holds the device times
    (epoch s) the server answered 200 to."""

    def __init__(self, client, key, every=0.15):
        self.client, self.key, self.every = client, key, every
        self.accepted, self.statuses = [], []
        self._stop = asyncio.Event()

    @staticmethod
    def lat(ts):
        """The latitude the phone reports at device time ``ts``."""
        return round(46.0 + (ts - T0) / 10_000, 6)

    async def post(self, ts):
        lat = self.lat(ts)
        for _ in range(40):
            try:
                response = await self.client.post(
                    "/ingest/osmand/", data={"id": self.key, "lat": str(lat),
                                             "lon": "14.5", "timestamp": str(ts)})
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.accepted.append(ts)
                    return True
            except httpx.TransportError:
                self.statuses.append("transport error")
            await asyncio.sleep(0.2)
        return False

    async def run(self, start):
        ts = start
        while not self._stop.is_set():
            assert await self.post(ts)
            ts += 1
            await asyncio.sleep(self.every)

    def stop(self):
        self._stop.set()


# -- the test -----------------------------------------------------------------------------------


@pytest.fixture
def tools():
    if nginx_binary() is None:
        skip_or_fail("nginx is not installed (apt-get install nginx): cannot run the "
                     "topology test")
    if shutil.which("openssl") is None:
        skip_or_fail("openssl is not installed: cannot make the proxy's certificate")
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed: the workers need Redis")


async def test_two_workers_behind_nginx_survive_a_rolling_restart(tools, tmp_path):
    with postgres_database() as database_url, RedisServer() as redis:
        await _topology(tmp_path, database_url, redis)


async def _topology(tmp, database_url, redis):
    static_root = tmp / "static"
    project = Project(
        tmp, database_url=database_url, DEBUG="0", SECRET_KEY="topology-" + "k" * 50,
        ALLOWED_HOSTS=HOST, CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        GEOSHARE_TRUSTED_PROXIES="127.0.0.1", REDIS_URL=redis.url,
        REDIS_PREFIX="topology", STATIC_ROOT=str(static_root),
        GEOSHARE_HISTORY_FLUSH_MS="200",
    ).migrate()
    project.manage("collectstatic", "--noinput", "-v", "0")
    room, people = project.make_room(members=("Ana", "Bo", "Cy", "Dee"))
    ids = {name: person["member"] for name, person in people.items()}
    cert, key = certificate(tmp)
    tls = ssl.create_default_context(cafile=str(cert))

    one, two = worker(project, 1), worker(project, 2)
    proxy = nginx_for(tmp / "nginx", [one, two], cert, key, static_root)
    screens = []
    try:
        one.start()
        two.start()
        proxy.start()
        site = f"https://127.0.0.1:{proxy.https}"
        async with httpx.AsyncClient(base_url=site, verify=tls, trust_env=False,
                                     headers={"Host": HOST}, timeout=10) as client:

            def socket_url(name):
                return (f"wss://{HOST}:{proxy.https}/ws/rooms/{room}/"
                        f"?key={people[name]['key']}")

            # -- pages, static files, probes, and plain HTTP sent to HTTPS ---------------
            home = await client.get("/")
            assert home.status_code == 200
            assert "text/html" in home.headers["Content-Type"]
            script = await client.get("/static/maps/js/main.js")
            assert script.status_code == 200
            assert script.content == (ROOT / "static/maps/js/main.js").read_bytes()
            assert script.headers["Cache-Control"] == "max-age=3600"  # nginx served it
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).json()["status"] == "ok"
            assert (await client.get("/metrics")).status_code == 404
            plain = httpx.get(f"http://127.0.0.1:{proxy.http}/r/{room}/",
                              headers={"Host": HOST}, trust_env=False)
            assert plain.status_code == 301
            assert plain.headers["Location"] == f"https://{HOST}/r/{room}/"

            # -- members on different workers see each other --------------------------
            ana = await Screen(socket_url("Ana"), proxy.https, tls).open()
            screens.append(ana)
            bo = await Screen(socket_url("Bo"), proxy.https, tls).open()
            screens.append(bo)
            assert (open_sockets(one), open_sockets(two)) == (1, 1)
            await ana.send_position(46.01, 14.5)
            await bo.position_of(ids["Ana"], 46.01)
            await bo.send_position(46.02, 14.5)
            await ana.position_of(ids["Bo"], 46.02)

            # A browser's socket is accepted from the site's own origin
            # (CSRF_TRUSTED_ORIGINS) and refused from another.
            for origin, accepted in ((f"https://{HOST}", True),
                                     ("https://elsewhere.example", False)):
                try:
                    browser = await websockets.connect(
                        f"wss://{HOST}:{proxy.https}/ws/rooms/{room}/", ssl=tls,
                        host="127.0.0.1", port=proxy.https, proxy=None, origin=origin)
                except websockets.InvalidStatus as exc:
                    assert not accepted and exc.response.status_code == 403
                else:
                    assert accepted
                    await browser.close()

            # -- a phone door ------------------------------------------------------------
            phone = Phone(client, people["Cy"]["key"])
            assert await phone.post(T0)
            await ana.position_of(ids["Cy"], phone.lat(T0))
            await bo.position_of(ids["Cy"], phone.lat(T0))

            # -- the rate limiter sees the real address, whatever the client forges --------
            statuses = []
            for attempt in range(24):
                response = await client.get(
                    f"/ingest/gpslogger/wrong-key-{attempt}/",
                    params={"lat": "1", "lon": "1"},
                    headers={"X-Forwarded-For": f"198.51.100.{attempt + 1}"})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert "wrong device keys" in response.json()["error"]
            assert statuses == [401] * 20 + [429] * 4

            # -- rolling restart: stop worker one gracefully ----------------------------
            running = asyncio.get_running_loop().create_task(phone.run(T0 + 1))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(one.stop)
            # Graceful: the application's shutdown ran (sockets closed, history
            # written); uvicorn then exits by the signal it was sent.
            assert "Application shutdown complete." in one.output(), one.log_tail()
            # Whoever was on worker one was closed and reconnected to worker two, with
            # a fresh snapshot that has everyone's latest position.
            async with asyncio.timeout(10):
                while not (ana.closes or bo.closes):
                    await asyncio.sleep(0.05)
            moved = [s for s in (ana, bo) if s.closes]
            assert len(moved) == 1, [(s.closes, len(s.snapshots)) for s in (ana, bo)]
            moved = moved[0]
            async with asyncio.timeout(15):
                while len(moved.snapshots) < 2:
                    await asyncio.sleep(0.1)
            assert moved.closes == [1012]  # uvicorn's "service restart"
            fresh = moved.snapshots[-1]
            assert {p["member"] for p in fresh["positions"]} == {
                ids["Ana"], ids["Bo"], ids["Cy"]}
            assert (open_sockets(two)) == 2
            # Positions keep flowing to both while worker one is down.
            await moved.send_position(46.03, 14.5)
            for screen in (ana, bo):
                await screen.position_of(ids["Ana"] if moved is ana else ids["Bo"], 46.03)
            await asyncio.sleep(1.0)

            # -- worker one comes back and takes clients again --------------------------
            await asyncio.to_thread(one.start)
            await asyncio.sleep(0.5)
            phone.stop()
            await running
            dee = None
            async with asyncio.timeout(20):
                # nginx retries a worker that refused connections after fail_timeout
                # (5 s); least_conn then sends the new socket to it.
                while True:
                    dee = await Screen(socket_url("Dee"), proxy.https, tls).open()
                    if open_sockets(one) == 1:
                        break
                    await dee.close()
                    await asyncio.sleep(0.5)
            screens.append(dee)
            # The restarted worker shows the phone's last position (from the database
            # or from worker two's hub, whichever comes first).
            last = phone.accepted[-1]
            await dee.position_of(ids["Cy"], phone.lat(last))
            await dee.send_position(46.04, 14.5)
            await ana.position_of(ids["Dee"], 46.04)
            await bo.position_of(ids["Dee"], 46.04)

        # -- every position the phone sent during the restart is in the history ----------
        sent = [T0, *range(T0 + 1, last + 1)]
        assert sorted(phone.accepted) == sent
        assert len(sent) > 10
        for screen in screens:
            await screen.close()
        await asyncio.to_thread(one.stop)
        await asyncio.to_thread(two.stop)
        with psycopg.connect(database_url) as db:
            stored = {int(row[0].timestamp()) for row in db.execute(
                "SELECT device_time FROM maps_position WHERE member_id = %s",
                [ids["Cy"]])}
        assert stored == set(sent)
    except BaseException:
        for server in (one, two):
            print(f"--- worker {server.instance} ---\n{server.log_tail(40)}")
        print(f"--- nginx ---\n{proxy.output()[-4000:]}")
        raise
    finally:
        for screen in screens:
            with contextlib.suppress(Exception):
                await screen.close()
        proxy.stop()
        one.stop()
        two.stop()

