"""The browser tests' shared fixtures (a pytest plugin, registered in tests/conftest.py).

- ``chromium``: Debian's Chromium through Playwright, one per module (skipped with a
  reason where it is missing, failed under CI);
- ``site``: the module's shared geoshare server on a migrated SQLite copy, for tests that
  neither stop it nor change its settings (a module may define its own);
- ``problems``: JavaScript errors, console errors and failed requests of the pages;
- ``browse``: ``browse(label, viewport=, geolocation=, permissions=, init_script=)`` opens
  a page in a fresh context (tiles blocked: no internet here), in
  ``browser_timezone``'s zone (a module may override that fixture).
"""

import pytest
from playwright.sync_api import sync_playwright

from tests.browser_helpers import (
    CHROMIUM_ARGS,
    DESKTOP,
    TILE_PATTERN,
    PageProblems,
    Site,
    chromium_or_skip,
    migrated_db,
)


@pytest.fixture(scope="module")
def chromium():
    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """One migrated database per module; each server gets a copy."""
    return migrated_db(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def site(tmp_path_factory, template_db):
    # Every test creates rooms and redeems invite, sign-in and setup links from
    # 127.0.0.1 against this one server: the per-address limits on rooms and on
    # redemptions (20 a minute, counted for every join) are raised, or a module of a
    # dozen browser tests that joins in one minute gets 429 (tests/test_privacy.py and
    # tests/test_trust_limits.py test the limits themselves).
    shared = Site(tmp_path_factory.mktemp("site"), template_db,
                  GEOSHARE_ROOMS_PER_HOUR=100, GEOSHARE_REDEEM_PER_MIN=1000).start()
    yield shared
    shared.stop()


@pytest.fixture
def problems():
    return PageProblems()


@pytest.fixture
def browser_timezone():
    return "Europe/Ljubljana"


@pytest.fixture
def browse(chromium, problems, browser_timezone):
    contexts = []

    def block_tiles(route):
        route.abort("internetdisconnected")

    def open_page(label, *, viewport=DESKTOP, geolocation=None, permissions=(),
                  init_script=None):
        permissions = list(permissions)
        if geolocation is not None:
            permissions.append("geolocation")
        context = chromium.new_context(
            viewport=viewport, geolocation=geolocation, permissions=permissions,
            locale="en-GB", timezone_id=browser_timezone,
        )
        context.set_default_timeout(10_000)
        context.route(TILE_PATTERN, block_tiles)
        if init_script:
            context.add_init_script(init_script)
        contexts.append(context)
        return problems.watch(context.new_page(), label)

    yield open_page
    for context in contexts:
        try:
            context.close()
        except Exception:
            pass
