"""How geoshare's uvicorn is run: the one set of server flags.

``make run``, the tests (``tests/servers.py``) and the benchmarks (``bench/run.py``)
all start uvicorn through :func:`uvicorn_command`, so what is measured and tested is
what is served. Run it directly as::

    python -m geoshare.serving --host 127.0.0.1 --port 8000 [uvicorn options...]

which replaces itself with ``uvicorn geoshare.asgi:application`` and these options;
options it does not know are passed on to uvicorn, after :data:`UVICORN_OPTIONS`, so
they win (uvicorn keeps the last value of an option given twice).

This module imports nothing from Django: it only builds a command line.
"""

import argparse
import os
import sys

APP = "geoshare.asgi:application"

#: uvicorn's command-line options for geoshare, whatever starts it. Why each:
#:
#: - ``--ws wsproto``: wsproto holds less memory per socket than uvicorn's default
#:   websockets implementation (in S2 about 35 against 44-47 KiB per socket, about a
#:   quarter less), with lower latency too (docs/benchmarks.md).
#: - ``--ws-per-message-deflate false``: permessage-deflate keeps a compressor and a
#:   decompressor per connection, hundreds of KiB each, for frames of a few hundred
#:   bytes (docs/security.md).
#: - ``--ws-max-size 65536``: no client frame is ever near 64 KiB; a bigger one is an
#:   attack on memory and is refused by uvicorn before geoshare sees it
#:   (docs/security.md).
#: - ``--ws-ping-interval 20 --ws-ping-timeout 20``: a phone that vanished without
#:   closing its socket is noticed, and shown offline, within about 40 s.
#: - ``--no-proxy-headers``: by default uvicorn believes ``X-Forwarded-For`` from
#:   127.0.0.1, so any local client could send a new forged address with each request
#:   and never reach the per-address rate limits. geoshare resolves forwarded headers
#:   itself, from its trusted-proxy setting; uvicorn reports the peer it sees.
UVICORN_OPTIONS = [
    "--ws",
    "wsproto",
    "--ws-per-message-deflate",
    "false",
    "--ws-max-size",
    "65536",
    "--ws-ping-interval",
    "20",
    "--ws-ping-timeout",
    "20",
    "--no-proxy-headers",
]


def uvicorn_command(
    app=APP,
    host="127.0.0.1",
    port=8000,
    *,
    ws=None,
    log_level="info",
    access_log=True,
    extra=(),
):
    """Return the argv that serves ``app`` on ``host``:``port`` with :data:`UVICORN_OPTIONS`.

    ``app`` is an ASGI import path (``bench.asgi:application`` for the benchmarks);
    ``ws`` replaces the WebSocket implementation (``"websockets"`` to compare, as the
    benchmarks do); ``log_level`` is uvicorn's (``"info"``, ``"warning"``...);
    ``access_log=False`` drops the line per request. ``extra`` options come last and
    so override :data:`UVICORN_OPTIONS` (``["--ws-ping-interval", "1"]``).

    The command runs this interpreter's uvicorn (``sys.executable -m uvicorn``), so it
    needs no virtualenv on ``PATH``.
    """
    options = list(UVICORN_OPTIONS)
    if ws is not None:
        options[options.index("--ws") + 1] = ws
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        host,
        "--port",
        str(port),
        *options,
        "--log-level",
        log_level,
    ]
    if not access_log:
        command.append("--no-access-log")
    command.extend(extra)
    return command


def main(argv=None):
    """``python -m geoshare.serving``: exec uvicorn with geoshare's options."""
    parser = argparse.ArgumentParser(
        prog="python -m geoshare.serving",
        description="Serve geoshare with uvicorn and geoshare's uvicorn options; "
        "other options are passed on to uvicorn.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--app", default=APP, help=f"ASGI app (default {APP})")
    parser.add_argument("--log-level", default="info")
    args, extra = parser.parse_known_args(argv)
    command = uvicorn_command(
        args.app, args.host, args.port, log_level=args.log_level, extra=extra
    )
    sys.stdout.flush()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
