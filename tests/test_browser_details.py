"""In Chromium, at 390x844 and 1280x800, in English and Chinese: the details a new
family trusts or not (issue 25, items 15, 16, 19, 21 and 22).

- A removed member's open page shows nothing of the room any more (item 19).
- The map page's controls neither cover one another nor break words; a long room name
  stays one line (item 16).
- Leaflet's own texts are translated; no stray spaces in Chinese; /favicon.ico (item 22).
- The room opens framed on its places; place circles carry their names; "at School";
  the feed shows joins, leaves and share starts (item 21).
- Adding a place on a phone: the sheet gets out of the way while placing (item 15).

Screenshots in tests/artifacts/25-details-*.png.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    TILE_PATTERN,
    screenshot,
    wait_connected,
    wait_for_function,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}
VIEWPORTS = [pytest.param(PHONE_390, id="390"), pytest.param(DESKTOP, id="1280")]
CASES = [
    pytest.param(PHONE_390, "en", id="390-en"),
    pytest.param(PHONE_390, "zh", id="390-zh"),
    pytest.param(DESKTOP, "en", id="1280-en"),
    pytest.param(DESKTOP, "zh", id="1280-zh"),
]
LOCALES = {"en": "en-GB", "zh": "zh-CN"}
SCHOOL = {"latitude": 45.77218, "longitude": 14.35766, "accuracy": 10}


@pytest.fixture
def open_page(chromium, problems):
    """``open_page(label, viewport, lang, geolocation=None)``: a page in a fresh context."""
    contexts = []

    def make(label, viewport=DESKTOP, lang="en", geolocation=None, has_touch=False):
        context = chromium.new_context(
            viewport=viewport, locale=LOCALES[lang], timezone_id="Europe/Ljubljana",
            geolocation=geolocation, permissions=["geolocation"] if geolocation else [],
            has_touch=has_touch,
        )
        context.set_default_timeout(10_000)
        context.route(TILE_PATTERN, lambda route: route.abort("internetdisconnected"))
        contexts.append(context)
        return problems.watch(context.new_page(), label)

    yield make
    for context in contexts:
        context.close()


def create_room(page, site, room_name, owner_name):
    """Create a room on the home page, in whatever language it is; return its id."""
    page.goto(site.url + "/")
    form = page.locator("#create-room")
    form.locator('input[name="name"]').fill(room_name)
    form.locator('input[name="your_name"]').fill(owner_name)
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9_-]+/$"))
    wait_connected(page)
    return page.evaluate("window.geoshare.config.roomId")


def join(page, invite_url, name):
    """Open the invite link in ``page`` (any language) and join as ``name``."""
    page.goto(invite_url)
    form = page.locator("#join-room")
    form.locator('input[name="name"]').fill(name)
    form.locator('button[type="submit"]').click()
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9_-]+/$"))
    wait_connected(page)
    return page.evaluate("window.geoshare.config.memberId")


def add_place(page, name, lat, lon, radius=100):
    """Make a place through the page's own API session; return its id."""
    return page.evaluate("""async ([name, lat, lon, radius]) => {
        const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
        const room = window.geoshare.config.roomId;
        const response = await fetch(`/api/rooms/${room}/places`, {
            method: "POST", credentials: "same-origin",
            headers: {"Content-Type": "application/json", "X-CSRFToken": token},
            body: JSON.stringify({name, lat, lon, radius}),
        });
        return (await response.json()).id;
    }""", [name, lat, lon, radius])


def share(page):
    """Start sharing with the page's share button (whatever its language)."""
    page.locator("#share-toggle").click()
    wait_for_function(page, "window.geoshare.sharing() === 'on'", timeout=5_000)


# -- item 19 -----------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_removed_members_page_shows_nothing_of_the_room(site, open_page, problems,
                                                          viewport):
    ana = open_page("Ana", geolocation=SCHOOL)
    create_room(ana, site, "Family", "Ana")
    invite = ana.locator("#invite-url").input_value()
    add_place(ana, "School", SCHOOL["latitude"], SCHOOL["longitude"])
    share(ana)
    ana_id = ana.evaluate("window.geoshare.config.memberId")
    bo = open_page("Bo", viewport=viewport)
    bo_id = join(bo, invite, "Bo")
    wait_for_function(bo, "(id) => id in window.geoshare.markers()", arg=ana_id)
    wait_for_function(bo, "window.geoshare.places().length === 1")
    expect(bo.locator("#member-list li")).to_have_count(2)

    # Ana removes Bo on the owner's page; Bo's open page is told at once.
    problems.allow.append("WebSocket")
    ana.goto(site.url + f"/r/{ana.evaluate('window.geoshare.config.roomId')}/manage/")
    ana.locator(f'li.person[data-member-id="{bo_id}"] button.danger').click()

    wait_for_function(bo, "window.geoshare.connection() === 'closed'")
    expect(bo.locator("#notice")).to_contain_text("no longer a member")
    wait_for_function(bo, "Object.keys(window.geoshare.markers()).length === 0")
    assert bo.evaluate("window.geoshare.places()") == []
    expect(bo.locator("#member-list li")).to_have_count(0)
    assert bo.locator(".gs-pin").count() == 0
    assert bo.locator(".place-circle").count() == 0
    screenshot(bo, f"25-details-removed-{viewport['width']}")
    problems.assert_none()
