"""What the benchmark tools share: the server, the child processes' set-up, py-spy,
the environment (a fresh database, Django set up), the phone devices.

``bench.run`` (the driver) and the tools it runs or that run alone (``bench.ingest``,
``bench.storm``, ``bench.door``, ``bench.history``, the generators ``bench.loadgen`` and
``bench.viewers``) import from here; this module imports no other ``bench`` module.

- :func:`raise_nofile`: the soft open-files limit up to the hard one (thousands of
  sockets); :func:`child_setup` does it in a child process before it runs;
- :class:`Server`: one uvicorn serving ``bench.asgi:application`` with geoshare's flags
  (``tests.servers.Uvicorn``), its CPU time and RSS read with psutil;
- :func:`py_spy`: ``py-spy record`` of a process (raw stacks, ``bench.stacks``);
- :func:`prepare_env`: a ``tests.servers.Project`` on a fresh SQLite database,
  migrated, in production mode, and Django set up in this process;
- :func:`make_devices`: keyed phone members and viewers (``bench.ingest``,
  ``bench.door``), after :func:`prepare_env`.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import django
import psutil

from tests.servers import Project, Uvicorn

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
#: The phone doors (``bench.ingest``, ``bench.door``).
DOORS = ("osmand-get", "osmand-post", "owntracks")


# -- processes ----------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def child_setup() -> None:
    """``preexec_fn`` of the servers and generators: :func:`raise_nofile`."""
    raise_nofile()


class Server(Uvicorn):
    """One uvicorn serving ``bench.asgi:application``, started at once.

    The harness of the tests (``tests.servers.Uvicorn``): geoshare's uvicorn flags
    (``geoshare.serving``, as ``make run``), only quieter (warnings, no access log).
    Pinned to ``core`` with taskset; its log is ``uvicorn-<port>.log`` in ``log_dir``;
    its CPU time and RSS are read with psutil.
    """

    def __init__(self, env: dict, log_dir: Path, ws: str = "wsproto", core=0) -> None:
        super().__init__(
            env=env,
            app="bench.asgi:application",
            ws=ws,
            core=core,
            log_dir=log_dir,
            log_level="warning",
            access_log=False,
            preexec_fn=child_setup,
        )
        self.start()
        self.ps = psutil.Process(self.process.pid)
        self.rss_base = self.ps.memory_info().rss

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return self.ps.memory_info().rss


def py_spy(pid: int, seconds: float, path: Path):
    """Start ``py-spy record`` of process ``pid`` for ``seconds`` into ``path`` (raw
    collapsed stacks, only the thread holding the GIL); return the Popen, or ``None``
    when py-spy is not installed. Summarise with ``python -m bench.stacks FILE``."""
    exe = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
    if exe is None:
        print("(py-spy not installed: no profile)", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            # Only the thread holding the GIL: where the CPU goes, not where
            # threads wait.
            "--gil",
            "--duration",
            str(max(1, int(seconds))),
            "--pid",
            str(pid),
            "-o",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- the database -------------------------------------------------------------------


def prepare_env(work: Path) -> dict:
    """Environment for this process, the servers and the generator; migrates the DB.

    A ``tests.servers.Project`` in ``work``: a fresh SQLite database, production mode.
    """
    project = Project(
        work,
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(40),
        DEBUG="0",
        LOG_LEVEL="WARNING",
        # Every simulated client connects from 127.0.0.1: the per-address socket limit
        # (1,000 per process by default, docs/security.md) would refuse the load itself.
        # Every other limit and check stays on.
        GEOSHARE_MAX_SOCKETS_PER_ADDRESS="0",
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    ).migrate()
    env = project.env
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    django.setup()
    return env


def make_devices(count: int, viewers: int = 0, room_size: int = 0):
    """Create ``count`` keyed members and ``viewers`` viewers (role ``viewer``).

    With ``room_size`` 0 all are in one room; otherwise the devices are in rooms of
    ``room_size`` and the viewers in the first. Returns ``(device keys, {device member
    id: key}, viewer socket paths)``.
    """
    # after django.setup()
    from django.db import connection, transaction

    from maps.services import member_create, room_create

    keys: list[str] = []
    ids: dict[int, str] = {}
    viewer_paths: list[str] = []
    per_room = room_size or max(count, 1)
    with transaction.atomic():
        first = None
        for start in range(0, count, per_room):
            room, _ = room_create(name=f"ingest {start}", owner_name="bench owner")
            first = first or room
            for m in range(min(per_room, count - start)):
                member, key = member_create(room=room, name=f"phone {m}", role="member")
                keys.append(key)
                ids[member.pk] = key
        if first is None:
            first, _ = room_create(name="ingest", owner_name="bench owner")
        for v in range(viewers):
            _, key = member_create(room=first, name=f"viewer {v}", role="viewer")
            viewer_paths.append(f"/ws/rooms/{first.public_id}/?key={key}")
    connection.close()
    return keys, ids, viewer_paths
