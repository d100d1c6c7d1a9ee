"""History mode on the map in a real Chromium (issue 13).

A phone posts the real walk around Lake Cerknica through the OsmAnd door (its times
moved to end ten minutes ago); the owner opens History, scrubs the slider, sees the
walker's marker at the recorded point for that time, plays, and goes back to live
without a reload; at 390 px wide the panel fits the screen.

Skipped when /usr/bin/chromium is missing; failed instead when CI is set.
"""

import json
import math
import time
import urllib.request
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    create_room,
    room_id,
    screenshot,
    wait_for_function,
)
from tests.servers import wait_for
from tests.test_tracks import cerknica_points

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}
ZONE = ZoneInfo("Europe/Ljubljana")  # the browser contexts' time zone (test_browser)


def metres(a_lat, a_lon, b_lat, b_lon):
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b_lon - a_lon) / 2) ** 2)
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def post_walk(site, room, name="Walker"):  # noqa: F811
    """Add a keyed member ``name`` and post the walk; return (member id, points)."""
    walker = site.project.add_member(room, name)
    points = cerknica_points()
    now_s = int(time.time())
    shift = (now_s - 600) * 1000 - points[-1][3]  # whole seconds: the slider's step
    points = [(lat, lon, ele, ts + shift) for lat, lon, ele, ts in points]
    batch = [{"id": walker["key"], "lat": lat, "lon": lon, "altitude": ele, "timestamp": ts}
             for lat, lon, ele, ts in points]
    request = urllib.request.Request(
        site.url + "/ingest/osmand/", data=json.dumps(batch).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    # The history is written in batches (HISTORY_FLUSH_MS): wait until the last point
    # can be read back through the track API.
    last = (f"{site.url}/api/rooms/{room}/track?since={points[-1][3]}")

    def in_history():
        read = urllib.request.Request(last, headers={
            "Authorization": f"Bearer {walker['key']}"})
        with urllib.request.urlopen(read, timeout=10) as response:
            return json.loads(response.read())["positions"]

    wait_for(in_history, timeout=10)
    return walker["member"], points


def local_input(ms):
    return datetime.fromtimestamp(ms / 1000, tz=ZONE).strftime("%Y-%m-%dT%H:%M")


def open_history(page, points):
    """Open History and choose the span around the walk; wait until it is drawn."""
    if page.locator("#panel").get_attribute("data-open") == "false":
        # A phone's bottom sheet starts as one line: open it first.
        page.locator("#panel-toggle").click()
    page.get_by_role("button", name="History").click()
    expect(page.locator("#history-panel")).to_be_visible()
    page.locator("#history-range").select_option("span")
    since = points[0][3] // 60_000 * 60_000 - 60_000
    page.locator("#history-from").fill(local_input(since))
    page.locator("#history-to").fill(local_input(points[-1][3] + 120_000))
    wait_for_function(page, """(since) => { const h = window.geoshare.history();
                               return h.loaded && h.since === since
                                   && Object.keys(h.markers).length > 0; }""",
                      arg=since, timeout=10_000)


def slide_to(page, ms):
    page.evaluate("""(t) => {
        const slider = document.getElementById('history-slider');
        slider.value = String(t);
        slider.dispatchEvent(new Event('input', {bubbles: true}));
    }""", ms)


def test_history_scrubs_the_walk_plays_and_returns_to_live(site, browse, problems):  # noqa: F811
    page = browse("owner", viewport=DESKTOP)
    create_room(page, site, "Lake walk", "Olga")
    walker, points = post_walk(site, room_id(page))
    # The walker's live marker is on the map before history opens.
    wait_for_function(page, "(id) => id in window.geoshare.markers()", arg=walker)
    page.evaluate("window.__sameDocument = true")

    open_history(page, points)
    state = page.evaluate("window.geoshare.history()")
    assert state["active"] and state["tolerance"] > 0
    expect(page.locator("body")).to_have_class("map-page is-history")
    expect(page.locator("#panel")).to_be_hidden()
    # The live marker steps aside while history is shown.
    expect(page.locator(f'.leaflet-marker-pane [data-member-id="{walker}"]')).to_be_hidden()
    expect(page.locator("#history-stays li").first).to_be_visible()
    page.wait_for_timeout(400)  # let the fit's zoom animation end, for the picture only
    screenshot(page, "13-history-desktop")

    # Scrub: at each recorded point's time the marker is at that point, within the
    # simplification tolerance (a pixel at the drawn zoom).
    for index in (5, 80, 150, len(points) - 20):
        lat, lon, _ele, ts = points[index]
        slide_to(page, ts)
        state = page.evaluate("window.geoshare.history()")
        assert state["time"] == ts
        at = state["markers"][str(walker)]
        assert metres(at["lat"], at["lon"], lat, lon) <= state["tolerance"] + 0.01, index
    expect(page.locator("#history-time")).not_to_be_empty()

    # Before the walk began there is no marker.
    slide_to(page, points[0][3] - 30_000)
    assert str(walker) not in page.evaluate("window.geoshare.history()")["markers"]

    # Play at 1000x: the time runs on, then pause holds it.
    slide_to(page, points[10][3])
    page.locator("#history-speed").select_option("1000")
    page.get_by_role("button", name="Play").click()
    wait_for_function(page, "(t) => window.geoshare.history().time > t + 5000",
                      arg=points[10][3], timeout=5_000)
    page.get_by_role("button", name="Pause").click()
    paused = page.evaluate("window.geoshare.history()")
    assert not paused["playing"]

    # A stay in the list takes the slider to its start.
    page.locator("#history-stays button").first.click()
    first_stay = int(page.locator("#history-stays button").first.get_attribute("data-start"))
    assert page.evaluate("window.geoshare.history().time") == first_stay

    # The files follow the choice.
    assert "since=" in page.locator("#history-gpx").get_attribute("href")

    page.get_by_role("button", name="Back to live").click()
    state = page.evaluate("window.geoshare.history()")
    assert not state["active"] and state["markers"] == {}
    expect(page.locator("#panel")).to_be_visible()
    expect(page.locator("#history-panel")).to_be_hidden()
    expect(page.locator("body")).to_have_class("map-page")
    assert page.evaluate("window.__sameDocument") is True  # no reload
    assert page.evaluate("window.geoshare.connection()") == "connected"
    live = page.evaluate("(id) => window.geoshare.markers()[id]", walker)
    assert (live["lat"], live["lon"]) == (points[-1][0], points[-1][1])
    expect(page.locator(f'.leaflet-marker-pane [data-member-id="{walker}"]')).to_be_visible()
    screenshot(page, "13-history-back-to-live-desktop")
    problems.assert_none()


def test_history_fits_a_390_px_phone(site, browse, problems):  # noqa: F811
    owner = browse("owner", viewport=DESKTOP)
    create_room(owner, site, "Phone walk", "Olga")
    _walker, points = post_walk(site, room_id(owner))
    phone = browse("owner-phone", viewport=PHONE_390)
    # The same browser session on a phone-sized page.
    phone.context.add_cookies(owner.context.cookies())
    phone.goto(owner.url)
    wait_for_function(phone, "window.geoshare && window.geoshare.connection() === 'connected'")
    open_history(phone, points)
    box = phone.locator("#history-panel").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE_390["width"] + 0.5
    assert box["y"] + box["height"] <= PHONE_390["height"] + 0.5
    for control in ("#history-slider", "#history-play", "#history-close", "#history-range"):
        expect(phone.locator(control)).to_be_in_viewport()
    phone.wait_for_timeout(400)  # the fit's zoom animation, for the picture only
    screenshot(phone, "13-history-phone-390")
    phone.get_by_role("button", name="Back to live").click()
    expect(phone.locator("#panel")).to_be_visible()
    problems.assert_none()


# A name as a member may type it: markup, and a script that would run if it were HTML.
MARKUP_NAME = "<b>Bo</b><img src=x onerror=pwned=1>"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE_390], ids=["1280", "390"])
def test_names_holding_markup_show_as_text_in_stay_tooltips(site, browse, problems,
                                                           viewport):
    owner = browse("owner", viewport=viewport)
    create_room(owner, site, "Markup walk", "Olga")
    walker, points = post_walk(site, room_id(owner), name=MARKUP_NAME)
    wait_for_function(owner, "(id) => id in window.geoshare.markers()", arg=walker)
    open_history(owner, points)
    expect(owner.locator("#history-stays li").first).to_be_visible()
    # Hovering opens one stay's tooltip; open them all.
    opened = owner.evaluate("""() => { let n = 0;
        window.geoshare.map.eachLayer((layer) => {
            if (layer.getTooltip && layer.getTooltip()) { layer.openTooltip(); n += 1; }
        });
        return n; }""")
    assert opened > 0
    tooltips = owner.locator(".leaflet-tooltip")
    expect(tooltips).to_have_count(opened)
    for text in tooltips.all_text_contents():
        assert text.startswith(MARKUP_NAME + ": ")
    # The name made no element anywhere on the page, and its script never ran.
    assert owner.locator(".leaflet-tooltip b, .leaflet-tooltip img").count() == 0
    assert owner.locator('img[src="x"]').count() == 0
    assert owner.evaluate("typeof window.pwned") == "undefined"
    expect(owner.locator("#history-stays li").first).to_contain_text(MARKUP_NAME)
    problems.assert_none()
