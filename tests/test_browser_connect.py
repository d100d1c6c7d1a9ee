"""The "Connect a phone" page in a real Chromium: a 390 px phone and a desktop (issue 11).

A member adds a device, copies its key with the copy button, an app reports through
the key, and the page shows the device's last report. The page must fit a 390 px
screen without sideways scrolling, under the site's strict Content-Security-Policy
(no inline script or style: the copy buttons are a static module).
"""

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    TILE_PATTERN,
    PageProblems,
    create_room,
    screenshot,
)
from tests.phone_payloads import T

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}


def no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def open_page(chromium, problems, label, viewport):
    context = chromium.new_context(viewport=viewport, locale="en-GB",
                                   timezone_id="Europe/Ljubljana",
                                   permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(10_000)
    context.route(TILE_PATTERN, lambda route: route.abort("internetdisconnected"))
    return context, problems.watch(context.new_page(), label)


@pytest.mark.parametrize("viewport, label", [(PHONE_390, "phone-390"),
                                             (DESKTOP, "desktop")])
def test_connect_page_fits_copies_and_shows_the_last_report(site, chromium, viewport,
                                                            label):
    problems = PageProblems()
    context, page = open_page(chromium, problems, label, viewport)
    try:
        create_room(page, site, f"Connect {label}", "Ana")
        if page.locator("#panel").get_attribute("data-open") == "false":
            page.locator("#panel-toggle").click()  # a phone's sheet starts as one line
        page.get_by_role("link", name="Connect a phone").click()
        page.wait_for_url(re.compile(r"/connect/$"))
        expect(page.locator("#devices")).to_contain_text("No device yet")
        assert no_sideways_scroll(page)

        page.get_by_label("Name of the new device").fill("Car tracker")
        page.get_by_role("button", name="Add a device").click()
        key_field = page.locator("#device-key")
        key = key_field.input_value()
        assert re.fullmatch(r"[2-9a-km-np-z]{26}", key)
        expect(page.locator(".phone-app h2")).to_have_count(6)
        expect(page.locator(".phone-app svg")).to_have_count(3)
        assert no_sideways_scroll(page), "the setup page scrolls sideways"
        screenshot(page, f"11-connect-{label}")

        copy = page.locator('button.copy[data-copy="device-key"]')
        copy.click()
        expect(copy).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == key

        # An app reports through the new key; the device list shows when.
        response = httpx.get(f"{site.url}/ingest/osmand/", params={
            "id": key, "lat": "45.77", "lon": "14.36", "timestamp": str(T)})
        assert response.status_code == 200
        page.goto(f"{site.url}/r/{room_id_of(page)}/connect/")
        car = page.locator(".device", has_text="Car tracker")
        expect(car.locator("time.local-time")).to_have_count(1)
        expect(car.locator(".device-seen")).to_contain_text(re.compile(r"\d{2}:\d{2}:\d{2}"))
        assert no_sideways_scroll(page)
        screenshot(page, f"11-connect-devices-{label}")
        problems.assert_none()
    finally:
        context.close()


def room_id_of(page):
    return re.search(r"/r/([^/]+)/connect/", page.url).group(1)

