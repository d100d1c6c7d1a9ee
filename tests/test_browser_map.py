"""In Chromium, the map's behaviour (issue 12): the view fits everyone until the user
moves it, "Fit everyone" and "Centre on me", my own marker, the marker card, battery
in the list, the bottom sheet on a phone, destructive actions apart from the invite,
"Retry now" and the backoff's ceiling, and the invite through the Web Share API.
Screenshots in tests/artifacts/12-map-*.png.
"""

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    Site,
    create_room,
    join_room,
    marker,
    member_id,
    member_row,
    room_id,
    screenshot,
    start_sharing,
    wait_connected,
    wait_for_function,
    wait_marker_at,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}
HOME = {"latitude": 45.77218, "longitude": 14.35766, "accuracy": 12}
NEAR = {"latitude": 45.78000, "longitude": 14.37000, "accuracy": 10}
FAR = {"latitude": 45.90000, "longitude": 14.60000, "accuracy": 10}


def in_view(page, point):
    (south, west), (north, east) = page.evaluate("window.geoshare.bounds()")
    return south <= point["latitude"] <= north and west <= point["longitude"] <= east


def test_the_view_fits_everyone_until_the_user_moves_it(site, browse, problems):
    ana_page = browse("Ana", geolocation=HOME)
    create_room(ana_page, site, "Fit walk", "Ana")
    invite = ana_page.locator("#invite-url").input_value()
    start_sharing(ana_page)
    ana = member_id(ana_page)
    # My own marker is distinct: "(you)", its own look.
    wait_for_function(ana_page, "(id) => id in window.geoshare.markers()", arg=ana)
    assert marker(ana_page, ana)["you"] is True
    expect(ana_page.locator(".gs-pin.is-you .gs-name")).to_have_text("Ana (you)")

    bo_page = browse("Bo", viewport=PHONE_390, geolocation=NEAR)
    join_room(bo_page, invite, "Bo")
    start_sharing(bo_page)
    bo = member_id(bo_page)
    wait_marker_at(ana_page, bo, NEAR["latitude"], NEAR["longitude"])
    # Bo joined: Ana's view widened by itself to show both.
    wait_for_function(ana_page, "() => true")
    ana_page.wait_for_timeout(600)
    assert in_view(ana_page, HOME) and in_view(ana_page, NEAR)
    assert ana_page.evaluate("window.geoshare.userMoved()") is False

    # Ana zooms in herself: a newcomer no longer moves her view.
    box = ana_page.locator("#map").bounding_box()
    ana_page.mouse.move(box["width"] * 0.3, box["height"] * 0.6)
    for _ in range(4):
        ana_page.mouse.wheel(0, -400)
        ana_page.wait_for_timeout(150)
    assert ana_page.evaluate("window.geoshare.userMoved()") is True
    cy_page = browse("Cy", geolocation=FAR)
    join_room(cy_page, invite, "Cy")
    start_sharing(cy_page)
    cy = member_id(cy_page)
    wait_marker_at(ana_page, cy, FAR["latitude"], FAR["longitude"])
    ana_page.wait_for_timeout(600)
    assert not in_view(ana_page, FAR)

    # "Fit everyone", over the map, brings everyone back.
    ana_page.get_by_role("button", name="Fit everyone").click()
    ana_page.wait_for_timeout(600)
    assert all(in_view(ana_page, p) for p in (HOME, NEAR, FAR))
    screenshot(ana_page, "12-map-fit-everyone-desktop")
    # "Centre on me" puts my own position in the middle.
    ana_page.get_by_role("button", name="Centre on me").click()
    ana_page.wait_for_timeout(600)
    assert in_view(ana_page, HOME) and not in_view(ana_page, FAR)
    problems.assert_none()


def test_a_marker_card_says_what_is_known_and_the_list_shows_battery_and_device(
        site, browse, problems):
    page = browse("Olga", viewport=PHONE_390, geolocation=HOME)
    create_room(page, site, "Card walk", "Olga")
    olga = member_id(page)
    room = room_id(page)
    page.goto(f"{site.url}/r/{room}/connect/")
    page.get_by_label("Name of the new device").fill("Pixel")
    page.get_by_role("button", name="Add a device").click()
    key = page.locator("#device-key").input_value()
    page.wait_for_load_state("load")  # its modules loaded: leaving aborts nothing
    page.goto(f"{site.url}/r/{room}/")
    wait_connected(page)
    response = httpx.get(f"{site.url}/ingest/osmand/", params={
        "id": key, "lat": "45.7722", "lon": "14.3577", "timestamp": str(int(time.time())),
        "speed": "10", "bearing": "90", "accuracy": "8", "batt": "12", "charge": "true"})
    assert response.status_code == 200
    wait_marker_at(page, olga, 45.7722, 14.3577)
    # The list shows the battery, low in red, with the sheet collapsed or open.
    status = member_row(page, olga).locator(".member-status")
    expect(status).to_contain_text("battery 12% · ⚡ charging")
    expect(status).to_contain_text("sharing from Pixel")  # the device that sent it
    expect(member_row(page, olga)).to_have_attribute("data-low-battery", "true")
    # The next position's frame leaves the unchanged device out (docs/protocol.md):
    # the map keeps the name it was given.
    response = httpx.get(f"{site.url}/ingest/osmand/", params={
        "id": key, "lat": "45.7725", "lon": "14.3580", "timestamp": str(int(time.time())),
        "speed": "10", "bearing": "90", "accuracy": "8", "batt": "12", "charge": "true"})
    assert response.status_code == 200
    wait_marker_at(page, olga, 45.7725, 14.3580)
    expect(status).to_contain_text("sharing from Pixel")

    page.locator(f'.gs-pin[data-member-id="{olga}"]').click()
    card = page.locator("#marker-card")
    expect(card).to_be_visible()
    expect(card.locator(".marker-card-name")).to_have_text("Olga (you)")
    expect(card.locator(".card-device")).to_contain_text("Pixel")
    expect(card.locator(".card-fix")).to_contain_text(re.compile(r"just now|s ago"))
    expect(card.locator(".card-accuracy")).to_contain_text("± 8 m")
    expect(card.locator(".card-speed")).to_contain_text("19 km/h")
    expect(card.locator(".card-heading")).to_contain_text("90° (E)")
    # The row is called Battery: its value does not say "battery" again (issue 25 item 16).
    expect(card.locator(".card-battery dd")).to_have_text("12% · ⚡ charging")
    expect(card.locator(".card-battery")).to_have_class(re.compile("low-battery"))
    expect(card.locator(".card-battery")).to_have_class(re.compile(r"\bcharging\b"))
    expect(card.locator(".card-left")).to_be_visible()
    screenshot(page, "12-map-marker-card-phone")
    card.get_by_role("button", name="Follow").click()
    wait_for_function(page, "(id) => window.geoshare.following() === id", arg=olga)
    expect(card.get_by_role("button", name="Stop following")).to_be_visible()
    card.get_by_role("button", name="Close").click()
    expect(card).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_390["width"]
    problems.assert_none()


def test_on_a_phone_the_sheet_starts_as_one_line_and_opens(site, browse, problems):
    page = browse("Ana", viewport=PHONE_390)
    create_room(page, site, "Sheet walk", "Ana")
    panel = page.locator("#panel")
    expect(page.locator("#panel-body")).to_be_hidden()
    expect(page.get_by_role("button", name="Share my location")).to_be_visible()
    expect(page.locator("#member-count")).to_have_text("1")
    screenshot(page, "12-map-sheet-collapsed-phone")
    height = panel.bounding_box()["height"]
    assert height < 90, f"the collapsed sheet is {height} px high"
    page.get_by_role("button", name=re.compile(r"^People")).click()
    expect(page.locator("#panel-body")).to_be_visible()
    screenshot(page, "12-map-sheet-open-phone")
    # A drag down on the handle closes it, up opens it.
    handle = page.locator("#sheet-handle").bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + 80, steps=4)
    page.mouse.up()
    expect(page.locator("#panel-body")).to_be_hidden()
    handle = page.locator("#sheet-handle").bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y - 80, steps=4)
    page.mouse.up()
    expect(page.locator("#panel-body")).to_be_visible()
    problems.assert_none()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE_390])
def test_delete_and_leave_are_not_next_to_copy_invite(site, browse, problems, viewport):
    page = browse("Ana", viewport=viewport)
    create_room(page, site, "Apart walk", "Ana")
    if viewport is PHONE_390:
        page.get_by_role("button", name=re.compile(r"^People")).click()
    copy = page.get_by_role("button", name="Copy invite link").bounding_box()
    delete = page.get_by_role("button", name="Delete room and erase all data")
    delete.scroll_into_view_if_needed()
    copy = page.get_by_role("button", name="Copy invite link").bounding_box()
    gap = delete.bounding_box()["y"] - (copy["y"] + copy["height"])
    assert gap >= 60, f"the delete button is {gap} px under Copy invite link"
    problems.assert_none()


SHARE_STUB = """
window.__shared = [];
Object.defineProperty(navigator, "share", {
  value: (data) => { window.__shared.push(data); return Promise.resolve(); },
  configurable: true,
});
"""


def test_the_invite_goes_through_the_web_share_api_where_there_is_one(
        site, browse, problems):
    plain = browse("plain")
    create_room(plain, site, "No share API", "Ana")
    if plain.evaluate("typeof navigator.share") != "function":
        expect(plain.locator("#share-invite")).to_be_hidden()
    page = browse("sharer", init_script=SHARE_STUB)
    create_room(page, site, "Share API", "Bo")
    invite = page.locator("#invite-url").input_value()
    page.get_by_role("button", name="Send the invite…").click()
    shared = wait_for_function(page, "window.__shared.length && window.__shared")
    assert shared[0]["url"] == invite and "Share API" in shared[0]["title"]
    problems.assert_none()


def test_reconnecting_offers_retry_now_and_waits_at_most_10_s(tmp_path, template_db, browse,
                                                             problems):
    site = Site(tmp_path, template_db).start()
    try:
        page = browse("Ana")
        create_room(page, site, "Retry walk", "Ana")
        delays = page.evaluate("""async () => {
            const socket = await import('/static/maps/js/socket.js');
            const visible = [], hidden = [];
            for (let attempt = 0; attempt < 40; attempt += 1) {
                visible.push(socket.backoffDelay(attempt, {random: () => 0.999}));
                hidden.push(socket.backoffDelay(attempt, {hidden: true}));
            }
            return {visible, hidden, max: socket.BACKOFF_MAX_MS};
        }""")
        assert delays["max"] == 10_000
        assert max(delays["visible"]) <= 10_000 and delays["visible"][0] <= 1_000
        problems.allow.append("WebSocket")
        site.stop()
        expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        retry = page.get_by_role("button", name="Retry now")
        expect(retry).to_be_visible()
        screenshot(page, "12-map-retry-now-desktop")
        # "Retry now" tries at once: the next wait starts from the click.
        before = page.evaluate("window.geoshare.retryAt()")
        retry.click()
        wait_for_function(page, "(t) => window.geoshare.retryAt() !== t", arg=before)
        site.start()
        # Back within the ceiling (10 s), by itself.
        wait_connected(page, timeout=12_000)
        expect(retry).to_be_hidden()
    finally:
        site.stop()
    problems.problems = [p for p in problems.problems if "ERR_CONNECTION_REFUSED" not in p]
    problems.assert_none()
