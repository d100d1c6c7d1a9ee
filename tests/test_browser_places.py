"""In Chromium: a place made by clicking the map shows on another member's map, and
that member, who asked for alerts, gets a notification and a feed line when the
first member arrives there.

Fixtures as in test_browser_shares.py (a module-shared server, a context per page).
"""

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    create_room,
    join_room,
    screenshot,
    start_sharing,
    wait_for_function,
)

pytestmark = pytest.mark.slow

FAR = {"latitude": 45.7800, "longitude": 14.3700, "accuracy": 10}
SCHOOL = {"latitude": 45.77218, "longitude": 14.35766, "accuracy": 10}

# Records the notifications the page shows (Chromium headless shows none on screen).
RECORD_NOTIFICATIONS = """
window.__notifications = [];
const Real = window.Notification;
class Recorded extends Real {
  constructor(title, options) {
    super(title, options);
    window.__notifications.push((options && options.body) || title);
  }
}
Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
Recorded.requestPermission = (...args) => Real.requestPermission(...args);
window.Notification = Recorded;
"""


def test_place_made_by_clicking_alerts_the_member_who_asked(site, browse,  # noqa: F811
                                                            problems):  # noqa: F811
    ana_page = browse("Ana", geolocation=FAR)
    create_room(ana_page, site, "School run", "Ana")
    invite = ana_page.locator("#invite-url").input_value()
    bo_page = browse("Bo", viewport=DESKTOP)
    bo_page.context.grant_permissions(["notifications"])
    bo_page.add_init_script(RECORD_NOTIFICATIONS)
    join_room(bo_page, invite, "Bo")

    # Ana makes the place by clicking the map where it is.
    ana_page.evaluate("([lat, lon]) => window.geoshare.map.setView([lat, lon], 16)",
                      [SCHOOL["latitude"], SCHOOL["longitude"]])
    ana_page.locator("#places summary").click()
    ana_page.locator("#place-add").click()
    ana_page.locator("#map").click(position=centre(ana_page))
    ana_page.locator("#place-name").fill("School")
    ana_page.select_option("#place-radius", value="250")
    ana_page.locator("#place-save").click()

    # Bo sees it, and asks to be told when Ana arrives there.
    wait_for_function(bo_page, "window.geoshare.places().some(p => p.name === 'School')")
    (place,) = bo_page.evaluate("window.geoshare.places()")
    assert abs(place["lat"] - SCHOOL["latitude"]) < 0.001
    bo_page.locator("#places summary").click()
    bo_page.select_option("#alert-member", label="Ana")
    bo_page.select_option("#alert-place", label="School")
    bo_page.locator("#alert-add").click()
    wait_for_function(bo_page, "window.geoshare.alertRules().length === 1")

    start_sharing(ana_page)
    ana_page.context.set_geolocation(SCHOOL)
    wait_for_function(bo_page, "window.__notifications.length > 0", timeout=15_000)
    (text,) = bo_page.evaluate("window.__notifications")
    assert text.startswith("Ana arrived at School · ")
    expect(bo_page.locator("#feed-list li.alert")).to_contain_text("Ana arrived at School")
    # Ana asked for nothing: a feed line, no alert.
    # (The feed also says who joined: notes, issue 25 item 21.)
    expect(ana_page.locator("#feed-list li:not(.note)")).to_contain_text("Ana arrived at School")
    assert ana_page.locator("#feed-list li.alert").count() == 0
    screenshot(bo_page, "14-place-alert")
    problems.assert_none()


def centre(page):
    box = page.locator("#map").bounding_box()
    return {"x": box["width"] / 2, "y": box["height"] / 2}

