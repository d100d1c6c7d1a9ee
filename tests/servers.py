"""The one process harness of the tests and the benchmarks (bench/run.py).

- :class:`Project`: an isolated geoshare installation (its own SQLite file, or a
  private PostgreSQL database, and environment) with ``manage()``;
- :class:`Uvicorn`: geoshare's uvicorn as a subprocess on a free port, started with
  :func:`geoshare.serving.uvicorn_command`, the flags ``make run`` serves with;
- :class:`RedisServer` / :func:`redis_url`: a private ``redis-server``;
- :func:`postgres_database`: a private database on a PostgreSQL server;
- :class:`Nginx`: Debian's nginx as a child process, serving one of the repository's
  site files (docker/nginx.conf) with only its ports and paths changed;
- :func:`until` / :func:`wait_for`: poll a condition with a deadline (instead of a fixed
  sleep), on the event loop or off it; :class:`FakeClock`: a clock a test moves.

Each server starts on a free port and is stopped by whoever started it. Where one cannot
be had (no redis-server binary and no ``REDIS_URL``, no PostgreSQL answering, no nginx), the caller
is skipped with a reason, or failed when ``CI`` is set (:func:`skip_or_fail`). pytest is
imported only to skip: the benchmarks use this module without it.
"""

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

from prometheus_client.parser import text_string_to_metric_families

from geoshare.serving import APP, uvicorn_command

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GPX_DIR = SHARED / "data" / "gpx"

#: The test personas' display names, one cast for the in-process fixtures of
#: tests/conftest.py and for :meth:`Project.personas` (a real process's database).
#: ``room`` is owned by ``owner``; ``member`` and ``other`` are members, ``viewer`` a
#: viewer; ``stranger`` is a member of ``elsewhere``, owned by ``elsewhere_owner``.
PERSONAS = {
    "room": "Ski trip",
    "owner": "Olga",
    "member": "Ana",
    "other": "Bo",
    "viewer": "Vera",
    "elsewhere": "Elsewhere",
    "elsewhere_owner": "Eve",
    "stranger": "Sam",
}

#: Used when neither ``GEOSHARE_TEST_POSTGRES`` nor a PostgreSQL ``DATABASE_URL`` is set:
#: a local server with trust authentication and a database named ``test``.
POSTGRES_DEFAULT = "postgres://postgres@127.0.0.1:5432/test"
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")


def skip_or_fail(reason):
    """Skip the test with ``reason``; under CI (env ``CI`` set) fail instead."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def gpx_file(name):
    """Return the path of a shared GPX recording, skipping (failing under CI) if absent."""
    path = GPX_DIR / name
    if not path.exists():
        skip_or_fail(f"shared GPX recording {path} not found")
    return path


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=60.0, process=None):
    """Wait until something accepts connections on 127.0.0.1:``port``.

    Raises ``RuntimeError`` when ``process`` exits first, ``TimeoutError`` after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f} s")


async def until(predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 5.0,
                interval: float = 0.01) -> Any:
    """Poll ``predicate`` (a function, or a coroutine function) until it returns a true
    value, and return that value.

    Raises ``TimeoutError`` after ``timeout`` seconds. For what has no event to await:
    a fixed sleep waits too long on a fast machine and not long enough on a slow one.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise TimeoutError(f"{getattr(predicate, '__name__', predicate)} still false "
                               f"after {timeout} s")
        await asyncio.sleep(interval)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0,
             interval: float = 0.02) -> Any:
    """Call ``predicate`` until it returns a true value, and return that value (off the
    event loop: a test that drives a real server). ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{getattr(predicate, '__name__', predicate)} still false "
                               f"after {timeout} s")
        time.sleep(interval)


class FakeClock:
    """A clock that stands still until the test moves it: ``clock()`` returns seconds,
    from ``start`` (default: the real ``time.monotonic()``, so readings the code took
    before the fake was put in stay comparable)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.monotonic() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


def pinned(command, core):
    """Prefix ``command`` with ``taskset -c core``.

    Unchanged when ``core`` is ``None``, taskset is missing or the machine has no such
    core. taskset execs the command, so the process id stays the command's.
    """
    if core is None or shutil.which("taskset") is None:
        return command
    if core >= (os.cpu_count() or 1):
        return command
    return ["taskset", "-c", str(core), *command]


def _stop(process, timeout=10):
    """SIGTERM ``process`` and wait; SIGKILL it if it has not exited after ``timeout`` s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _kill(process):
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(5)


# -- a geoshare installation ------------------------------------------------------------


class Project:
    """An isolated geoshare installation: its own database and environment.

    ``directory`` holds the SQLite file (``geoshare.sqlite3``) and the servers' logs;
    ``database_url`` replaces SQLite (a private PostgreSQL database from
    :func:`postgres_database`). ``env`` are extra environment variables for every
    process of the project (``GEOSHARE_STALE_AFTER_MS=2500``). The channel layer is
    the in-memory one unless ``REDIS_URL`` is among them, whatever this shell has set.
    """

    def __init__(self, directory, *, database_url=None, **env):
        self.dir = Path(directory)
        self.db = None if database_url else self.dir / "geoshare.sqlite3"
        self.database_url = database_url or f"sqlite:///{self.db}"
        self.env = {
            **os.environ,
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "geoshare.settings",
            "DATABASE_URL": self.database_url,
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in env.items()},
        }
        if "REDIS_URL" not in env:
            self.env.pop("REDIS_URL", None)

    def manage(self, *args, check=True):
        """Run ``manage.py`` with this project's environment; return its stdout.

        Raises ``RuntimeError`` (with stderr) when it fails and ``check`` is true.
        """
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def migrate(self):
        """Create the tables; return the project."""
        self.manage("migrate", "--noinput", "-v", "0")
        return self

    def create_room(self, name, owner):
        """Create a room through ``createroom``; return its public id."""
        return _json(self.manage("createroom", name, "--owner", owner, "--json"))["room"]

    def add_member(self, room, name, role="member"):
        """Add a keyed member through ``addmember``; return ``{"member": id, "key": key}``."""
        return _json(self.manage("addmember", room, name, "--role", role, "--json"))

    def make_room(self, members=("Ana", "Bo", "Cy"), name="Replay room"):
        """Create a room of keyed members; return ``(room id, {name: {"member", "key"}})``."""
        room = self.create_room(name, PERSONAS["owner"])
        return room, {member: self.add_member(room, member) for member in members}

    def personas(self):
        """Create the cast of tests/conftest.py (:data:`PERSONAS`) in this database.

        Returns a namespace: ``room`` and ``elsewhere`` (public ids), and ``member``,
        ``other``, ``viewer`` and ``stranger``, each ``{"member": id, "key": key}``.
        The owner has no device key.
        """
        room = self.create_room(PERSONAS["room"], PERSONAS["owner"])
        elsewhere = self.create_room(PERSONAS["elsewhere"], PERSONAS["elsewhere_owner"])
        return SimpleNamespace(
            room=room,
            elsewhere=elsewhere,
            member=self.add_member(room, PERSONAS["member"]),
            other=self.add_member(room, PERSONAS["other"]),
            viewer=self.add_member(room, PERSONAS["viewer"], role="viewer"),
            stranger=self.add_member(elsewhere, PERSONAS["stranger"]),
        )


def _json(output):
    """The JSON object a command printed on its last line."""
    return json.loads(output.strip().splitlines()[-1])


# -- uvicorn ---------------------------------------------------------------------------


#: For ``Uvicorn(extra_env=...)``: serve ``/metrics`` to :meth:`Uvicorn.metric`.
METRICS_ENV = {"GEOSHARE_METRICS_TOKEN": "scrape-" + "t" * 40}


class Uvicorn:
    """geoshare's uvicorn as a subprocess on 127.0.0.1, with ``make run``'s flags.

    Its environment is ``project.env`` (or ``env``, else this process's) plus
    ``extra_env``. ``app`` is the ASGI app (``bench.asgi:application`` for the
    benchmarks); ``ws``, ``log_level``, ``access_log`` and ``extra_args`` go to
    :func:`geoshare.serving.uvicorn_command` (``extra_args`` override its flags).
    ``core`` pins the server to that CPU core with taskset; ``preexec_fn`` runs in the
    child before uvicorn (raising its file limit). The log, stdout and stderr together,
    is ``uvicorn-<port>.log`` in ``log_dir`` (default: the project's directory), appended
    to when a server restarts on the same port.

    ``start()`` waits until the port accepts connections; ``stop()`` is uvicorn's
    graceful shutdown (SIGTERM: sockets closed, buffered history written), ``kill()``
    a crash (SIGKILL). Usable as a context manager.
    """

    def __init__(self, project=None, *, env=None, port=None, app=APP, ws=None,
                 extra_env=None, extra_args=(), core=None, log_dir=None,
                 log_level="info", access_log=True, preexec_fn=None, timeout=60.0):
        self.project = project
        base = project.env if project is not None else (env or os.environ)
        self.env = {**base, **(extra_env or {})}
        self.port = port or free_port()
        self.app = app
        self.ws = ws
        self.extra_args = list(extra_args)
        self.core = core
        if log_dir is None:
            log_dir = project.dir if project is not None else tempfile.mkdtemp(
                prefix="uvicorn-")
        self.log_path = Path(log_dir) / f"uvicorn-{self.port}.log"
        self.log_level = log_level
        self.access_log = access_log
        self.preexec_fn = preexec_fn
        self.timeout = timeout
        self.process = None
        self._log = None

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}"

    @property
    def command(self):
        """The argv of the server, before pinning."""
        return uvicorn_command(
            self.app, "127.0.0.1", self.port, ws=self.ws, log_level=self.log_level,
            access_log=self.access_log, extra=self.extra_args,
        )

    def start(self):
        """Start the server and wait until it listens; raise ``RuntimeError`` (with
        the log) if it does not."""
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            pinned(self.command, self.core), cwd=ROOT, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn,
        )
        try:
            wait_for_port(self.port, self.timeout, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            self.kill()
            raise RuntimeError(f"uvicorn did not start ({exc}):\n{self.output()}") from None
        except BaseException:  # interrupted: leave no server behind
            self.kill()
            raise
        return self

    def stop(self):
        """Graceful shutdown (SIGTERM); SIGKILL after 10 s."""
        _stop(self.process)
        self._close_log()
        return self

    def kill(self):
        """SIGKILL: no shutdown, as in a crash."""
        _kill(self.process)
        self._close_log()
        return self

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self):
        """Everything the server has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=15):
        return "".join(self.output().splitlines(True)[-lines:])

    def metric(self, name, **labels):
        """Return the value of the sample ``name`` with ``labels`` (0.0 when absent) that
        the server's ``/metrics`` shows now. The server needs
        ``GEOSHARE_METRICS_TOKEN`` in its environment (:data:`METRICS_ENV`)."""
        token = self.env["GEOSHARE_METRICS_TOKEN"]
        request = Request(f"{self.http}/metrics",
                          headers={"Authorization": f"Bearer {token}"})
        with urlopen(request, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return 0.0

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- Redis -----------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 and a free port, keeping nothing on disk.

    ``stop()`` is a clean shutdown, ``kill()`` a crash (SIGKILL, no goodbye to clients).
    ``start()`` raises ``RuntimeError`` when redis-server is not installed.
    """

    def __init__(self, port=None, directory=None):
        self.port = port or free_port()
        self.process = None
        self._own_dir = directory is None
        self.dir = str(directory) if directory is not None else tempfile.mkdtemp(
            prefix="redis-")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, 20, process=self.process)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self):
        _stop(self.process)
        self._clean()

    def kill(self):
        _kill(self.process)
        self._clean()

    def _clean(self):
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def redis_url():
    """Yield ``(url, server)``: a private server's URL, else ``REDIS_URL`` and ``None``.

    Skips (fails under CI) when neither can be had.
    """
    if shutil.which("redis-server"):
        with RedisServer() as server:
            yield server.url, server
        return
    url = os.environ.get("REDIS_URL")
    if not url:
        skip_or_fail("no redis-server binary and no REDIS_URL: cannot test with Redis")
    yield url, None


# -- PostgreSQL ------------------------------------------------------------------------


def postgres_admin_url():
    """Return the URL of the PostgreSQL server that tests may create databases on.

    ``GEOSHARE_TEST_POSTGRES`` if set, else ``DATABASE_URL`` when it names PostgreSQL,
    else :data:`POSTGRES_DEFAULT`.
    """
    explicit = os.environ.get("GEOSHARE_TEST_POSTGRES")
    if explicit:
        return explicit
    database_url = os.environ.get("DATABASE_URL", "")
    if urlsplit(database_url).scheme in POSTGRES_SCHEMES:
        return database_url
    return POSTGRES_DEFAULT


def _database_url(url, name):
    """``url`` with its database replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _without_password(url):
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def postgres_database():
    """Yield the URL of a new, empty database on :func:`postgres_admin_url`'s server.

    The database is dropped afterwards, even with sessions still open. Skips (fails
    under CI) when no server answers within 3 s.
    """
    import psycopg
    from psycopg import sql

    admin_url = postgres_admin_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        skip_or_fail(f"no PostgreSQL at {_without_password(admin_url)}: {exc}")
    name = f"geoshare_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield _database_url(admin_url, name)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name))
            )


# -- nginx -----------------------------------------------------------------------------

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def nginx_binary():
    """Return the path of an nginx binary, or ``None``."""
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def ipv6_loopback():
    """Return whether [::1] can be bound on this machine."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


class Nginx:
    """Debian's nginx as a child process (not a daemon), serving a site file of the repo.

    ``site`` is an nginx site file, written for nginx's ``http`` block
    (docker/nginx.conf). ``replace`` maps text of it to the test's values: ports and
    paths only. Each key must occur in the file, so a changed file fails loudly instead
    of quietly keeping a production value. Around it, in ``directory``, goes what
    Debian's /etc/nginx/nginx.conf provides (events, MIME types, temporary paths), with
    the pid file and logs there too (``nginx.log``: nginx's own output). ``ports`` are
    waited for at start.

    ``start()`` raises ``RuntimeError`` with the log when nginx refuses the
    configuration or does not listen; ``stop()`` is a graceful quit, ``kill()`` a crash.
    """

    def __init__(self, site, directory, *, replace, ports):
        self.site = Path(site)
        self.dir = Path(directory)
        self.replace = dict(replace)
        self.ports = list(ports)
        self.process = None
        self._log = None
        self.log_path = self.dir / "nginx.log"

    def render(self):
        """Return the site file's text with the replacements made."""
        text = self.site.read_text()
        for old, new in self.replace.items():
            if old not in text:
                raise ValueError(f"{old!r} is not in {self.site}: update the test's "
                                 "replacements")
            text = text.replace(old, new)
        return text

    def write(self):
        """Write the main configuration and the rendered site; return the main one."""
        for sub in ("logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        site = self.dir / "site.conf"
        site.write_text(self.render())
        mime = Path("/etc/nginx/mime.types")
        types = f"include {mime};" if mime.exists() else (
            "types { text/html html; text/css css; application/javascript js; }")
        temp = "\n".join(
            f"    {name}_temp_path {self.dir / 'tmp' / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # Running as root, nginx would hand its workers to "nobody", who may not read
        # the test's temporary directories.
        user = "user root;\n" if os.geteuid() == 0 else ""
        main = self.dir / "nginx.conf"
        main.write_text(
            f"daemon off;\n{user}worker_processes 1;\npid {self.dir / 'nginx.pid'};\n"
            f"error_log {self.dir / 'logs' / 'error.log'} info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    {types}\n    default_type application/octet-stream;\n"
            f"{temp}\n    include {site};\n}}\n"
        )
        return main

    @property
    def command(self):
        return [nginx_binary() or "nginx", "-p", str(self.dir), "-c",
                str(self.dir / "nginx.conf"), "-e", str(self.dir / "logs" / "error.log")]

    def start(self):
        """Check the configuration (``nginx -t``), start nginx, wait for its ports."""
        if nginx_binary() is None:
            raise RuntimeError("nginx is not installed")
        self.write()
        check = subprocess.run([*self.command, "-t"], capture_output=True, text=True,
                               timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the configuration:\n{check.stderr}")
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        try:
            for port in self.ports:
                wait_for_port(port, 20, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            self.kill()
            raise RuntimeError(f"nginx did not start ({exc}):\n{self.output()}") from None
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self):
        """SIGTERM (nginx's fast shutdown); SIGKILL after 10 s."""
        _stop(self.process)
        self._close_log()

    def kill(self):
        """SIGKILL."""
        _kill(self.process)
        self._close_log()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self):
        """nginx's own output and its error log."""
        parts = []
        for path in (self.log_path, self.dir / "logs" / "error.log"):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
