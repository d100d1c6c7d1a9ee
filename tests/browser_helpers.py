"""Helpers of the browser tests (tests/test_browser.py): Chromium, servers, pages.

Playwright drives Debian's Chromium (``/usr/bin/chromium``): Playwright's own browser
download cannot work without internet. Every page is watched for JavaScript errors,
console errors and failed requests; map tiles are the only requests allowed to fail
(this machine has no network, and the tests block the tile server outright).
"""

import os
import re
import shutil
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.servers import ROOT, Project, Uvicorn, free_port, skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    # No network here: Chromium stalls on its own background requests otherwise.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
TILE_PREFIX = "https://tile.openstreetmap.org/"
TILE_PATTERN = re.compile(r"^https://tile\.openstreetmap\.org/")
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


def chromium_or_skip():
    """Return the Chromium path; skip (fail under CI) when it is not installed."""
    if not CHROMIUM.exists():
        skip_or_fail(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) "
            "to run the browser tests"
        )
    return str(CHROMIUM)


def screenshot(page, name):
    """Save a full-page screenshot as tests/artifacts/<name>.png for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


class PageProblems:
    """Collect what went wrong on the pages of a test: errors and failed requests.

    ``allow`` are regular expressions of console messages that a test expects (a
    WebSocket that cannot connect while the server restarts).
    """

    def __init__(self):
        self.problems = []
        self.allow = []

    def watch(self, page, label):
        def handle_page_error(error):
            self.problems.append(f"{label}: JavaScript error: {error}")

        def handle_console(message):
            if message.type != "error":
                return
            url = (message.location or {}).get("url", "")
            if url.startswith(TILE_PREFIX):
                return
            if any(re.search(pattern, message.text) for pattern in self.allow):
                return
            self.problems.append(f"{label}: console error: {message.text} ({url})")

        def handle_request_failed(request):
            if request.url.startswith(TILE_PREFIX):
                return
            # The browser cancelled it itself (the page navigated away or closed while
            # the request was in flight): not the server's failure. A server that
            # fails answers an error status (handle_response) or drops the connection.
            if request.failure == "net::ERR_ABORTED":
                return
            self.problems.append(
                f"{label}: request failed: {request.method} {request.url}: {request.failure}"
            )

        def handle_response(response):
            if response.status >= 400 and not response.url.startswith(TILE_PREFIX):
                self.problems.append(f"{label}: HTTP {response.status} for {response.url}")

        page.on("pageerror", handle_page_error)
        page.on("console", handle_console)
        page.on("requestfailed", handle_request_failed)
        page.on("response", handle_response)
        return page

    def assert_none(self):
        assert not self.problems, "problems on the pages:\n" + "\n".join(self.problems)


class Site:
    """A geoshare server for browser tests: a copy of a migrated SQLite database in
    ``directory`` and uvicorn (tests.servers) on a port of its own, kept on restarts.

    ``env`` are settings for the server and the commands (``GEOSHARE_STALE_AFTER_MS``).
    """

    def __init__(self, directory, template_db, **env):
        self.port = free_port()
        # Commands (replay_gpx) reach this server through GEOSHARE_PUBLIC_URL.
        self.project = Project(directory, GEOSHARE_PUBLIC_URL=self.url, **env)
        shutil.copy(template_db, self.project.db)
        self.server = Uvicorn(self.project, port=self.port)

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop()

    def restart(self):
        """Stop the server and start a new one on the same port and database."""
        self.stop()
        return self.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def output(self):
        return self.server.output()


def migrated_db(directory):
    """Migrate a fresh SQLite database in ``directory``; return its path."""
    project = Project(directory).migrate()
    return project.db


# -- pages ----------------------------------------------------------------------------


def wait_for_function(page, expression, *, arg=None, timeout=30_000, interval=0.02):
    """Wait until ``expression`` (as ``page.evaluate`` takes it) is truthy; return it.

    ``page.wait_for_function`` compiles its predicate with ``eval`` inside the page,
    which the pages' Content-Security-Policy refuses (no ``'unsafe-eval'``); the tests
    keep that policy on, so they poll with ``page.evaluate`` instead, which the policy
    does not govern. ``timeout`` in milliseconds, as Playwright's; on expiry raises
    Playwright's ``TimeoutError``.
    """
    deadline = time.monotonic() + timeout / 1000
    while True:
        try:
            value = page.evaluate(expression, arg)
        except PlaywrightError as exc:
            # A navigation replaced the page under the evaluation: try again.
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise PlaywrightTimeoutError(f"waiting for {expression!r} timed out")
        time.sleep(interval)


def wait_connected(page, timeout=10_000):
    """Wait until the map page's socket has its snapshot."""
    wait_for_function(
        page, "window.geoshare && window.geoshare.connection() === 'connected'", timeout=timeout
    )


def create_room(page, site, room_name, owner_name):
    """Create a room on the home page, in whatever language it is; return the map
    page's URL (connected; :func:`room_id` gives the room's id)."""
    page.goto(site.url + "/")
    form = page.locator("#create-room")
    form.locator('input[name="name"]').fill(room_name)
    form.locator('input[name="your_name"]').fill(owner_name)
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9_-]+/$"))
    wait_connected(page)
    return page.url


def join_room(page, invite_url, name):
    """Open an invite link, pick ``name`` and land on the (connected) map."""
    page.goto(invite_url)
    form = page.locator("#join-room")
    form.get_by_label("Your display name").fill(name)
    form.get_by_role("button").click()
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9_-]+/$"))
    wait_connected(page)


def member_id(page):
    """Return the id of the member the page belongs to."""
    return page.evaluate("window.geoshare.config.memberId")


def room_id(page):
    return page.evaluate("window.geoshare.config.roomId")


def member_row(page, member):
    """Return the member-list row of member id ``member``."""
    return page.locator(f'#member-list li[data-member-id="{member}"]')


def marker(page, member):
    """Return what the page's map shows for member ``member`` (or ``None``)."""
    return page.evaluate("(id) => window.geoshare.markers()[id] || null", member)


def wait_marker_at(page, member, lat, lon, timeout=5_000, tolerance=1e-6):
    """Wait until member ``member``'s marker is at ``lat``, ``lon``; return seconds."""
    started = time.monotonic()
    wait_for_function(
        page, """([id, lat, lon, tol]) => {
            const m = window.geoshare.markers()[id];
            return m && Math.abs(m.lat - lat) < tol && Math.abs(m.lon - lon) < tol;
        }""",
        arg=[member, lat, lon, tolerance],
        timeout=timeout,
    )
    return time.monotonic() - started


def wait_no_marker(page, member, timeout=5_000):
    wait_for_function(
        page, "(id) => !(id in window.geoshare.markers())", arg=member, timeout=timeout
    )


def start_sharing(page):
    """Click "Share my location" and wait until positions are being sent."""
    page.get_by_role("button", name="Share my location").click()
    wait_for_function(page, "window.geoshare.sharing() === 'on'", timeout=5_000)


def env_flag(name):
    return bool(os.environ.get(name))
