"""A health probe for container engines and service managers, without curl.

::

    python -m geoshare.probe [--port 8000] [--path /healthz] [--timeout 4]

asks ``http://127.0.0.1:<port><path>`` and exits 0 for a 200, 1 for anything else
(another status, a refused connection, a timeout), printing one line on failure. The
request carries ``Host:`` the first name in ``ALLOWED_HOSTS`` (a leading dot, for
subdomains, removed; default ``127.0.0.1``), since geoshare answers 400 to a Host it
does not serve; ``/healthz`` and ``/readyz`` are exempt from the HTTPS redirect.

Used by the Dockerfile's ``HEALTHCHECK``. Imports nothing from Django: a probe must not
cost a settings import every 30 s.
"""

import argparse
import http.client
import os
import sys


def probe_host(environ=os.environ):
    """Return the ``Host`` header a probe sends: the first name of ``ALLOWED_HOSTS``."""
    names = [n.strip() for n in environ.get("ALLOWED_HOSTS", "").split(",") if n.strip()]
    name = names[0].lstrip(".") if names else ""
    return name if name and name != "*" else "127.0.0.1"


def probe(port=8000, path="/healthz", timeout=4.0, host=None):
    """Return ``(ok, detail)``: whether GET ``path`` on 127.0.0.1:``port`` answered 200.

    ``detail`` is the status line or the error, for the one line printed on failure.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host or probe_host()})
        response = connection.getresponse()
        response.read()
        return response.status == 200, f"{response.status} {response.reason}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


def main(argv=None):
    """``python -m geoshare.probe``: exit 0 when the probe answers 200, else 1."""
    parser = argparse.ArgumentParser(prog="python -m geoshare.probe")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    ok, detail = probe(args.port, args.path, args.timeout)
    if not ok:
        print(f"geoshare probe {args.path} on port {args.port}: {detail}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
