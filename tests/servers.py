"""Real servers for tests: uvicorn running geoshare, and a private redis-server.

Each starts on a free port and stops when the test is done. Where a server cannot be
had (no redis-server binary and no REDIS_URL), the caller skips with a reason, or fails
when CI is set (see :func:`skip_or_fail`).
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GPX_DIR = SHARED / "data" / "gpx"


def skip_or_fail(reason):
    """Skip the test with ``reason``; under CI (env ``CI`` set) fail instead."""
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


def wait_for_port(port, timeout=20.0, process=None):
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


class Project:
    """An isolated geoshare installation: its own SQLite file and environment."""

    def __init__(self, tmp_path, **env):
        self.dir = Path(tmp_path)
        self.db = self.dir / "geoshare.sqlite3"
        self.env = {
            **os.environ,
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "geoshare.settings",
            "DATABASE_URL": f"sqlite:///{self.db}",
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in env.items()},
        }
        if "REDIS_URL" not in env:
            # The embedded default: the in-memory layer, whatever this shell has set.
            self.env.pop("REDIS_URL", None)

    def manage(self, *args, check=True):
        """Run ``manage.py`` with this project's environment; return stdout."""
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def migrate(self):
        self.manage("migrate", "--noinput", "-v", "0")
        return self


class Uvicorn:
    """``uvicorn geoshare.asgi:application`` as a subprocess on a free port."""

    def __init__(self, project, port=None, ws="wsproto", extra_env=None, extra_args=()):
        self.project = project
        self.port = port or free_port()
        self.ws = ws
        self.extra_env = extra_env or {}
        self.extra_args = list(extra_args)
        self.process = None
        self.log = None

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}"

    def start(self):
        self.log = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "geoshare.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--ws", self.ws,
             "--ws-per-message-deflate", "false", "--ws-max-size", "65536",
             "--log-level", "info", *self.extra_args],
            cwd=ROOT, env={**self.project.env, **self.extra_env},
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, process=self.process)
        except Exception:
            self.stop()
            raise RuntimeError(f"uvicorn did not start:\n{self.output()}") from None
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def output(self):
        if self.log is None:
            return ""
        return Path(self.log.name).read_text(errors="replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RedisServer:
    """A private ``redis-server`` on a free port, keeping nothing on disk."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.process = None
        self.dir = tempfile.mkdtemp(prefix="redis-")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@contextlib.contextmanager
def redis_url():
    """Yield the URL of a Redis for a test: a private server, else ``REDIS_URL``.

    Skips (fails under CI) when neither can be had.
    """
    if shutil.which("redis-server"):
        server = RedisServer().start()
        try:
            yield server.url, server
        finally:
            server.stop()
        return
    url = os.environ.get("REDIS_URL")
    if not url:
        skip_or_fail("no redis-server binary and no REDIS_URL: cannot test with Redis")
    yield url, None
