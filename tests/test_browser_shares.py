"""In Chromium: a share survives a reload, ends by itself, and a watch-me link's page.

Fixtures as in test_browser.py (a module-shared server, a fresh context per page).
"""

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    PHONE,
    create_room,
    join_room,
    marker,
    member_id,
    screenshot,
    wait_for_function,
    wait_marker_at,
    wait_no_marker,
)

pytestmark = pytest.mark.slow

HOME = {"latitude": 45.77218, "longitude": 14.35766, "accuracy": 12}
MOVED = {"latitude": 45.77405, "longitude": 14.36192, "accuracy": 8}


def share_for(page, minutes_label):
    page.select_option("#share-duration", label=minutes_label)
    page.get_by_role("button", name="Share my location").click()
    wait_for_function(page, "window.geoshare.sharing() === 'on'", timeout=5_000)


def test_a_reload_while_sharing_keeps_sharing(site, browse, problems):
    ana_page = browse("Ana", geolocation=HOME)
    create_room(ana_page, site, "Reload walk", "Ana")
    invite = ana_page.locator("#invite-url").input_value()
    bo_page = browse("Bo", viewport=PHONE)
    join_room(bo_page, invite, "Bo")
    ana = member_id(ana_page)
    share_for(ana_page, "1 hour")
    expect(ana_page.locator("#share-toggle")).to_contain_text("left")
    wait_marker_at(bo_page, ana, HOME["latitude"], HOME["longitude"])

    ana_page.reload()
    # The running share resumes by itself, and says so; positions keep flowing.
    wait_for_function(ana_page, "window.geoshare.sharing() === 'on'", timeout=10_000)
    expect(ana_page.locator("#share-toggle")).to_contain_text("Sharing")
    ana_page.context.set_geolocation(MOVED)
    wait_marker_at(bo_page, ana, MOVED["latitude"], MOVED["longitude"], timeout=10_000)
    # Others see how long the share has left.
    expect(bo_page.locator(f'li[data-member-id="{ana}"] .member-status')).to_contain_text(
        "left")
    screenshot(ana_page, "10-share-resumed-after-reload")
    problems.assert_none()


def test_a_watch_link_page_shows_one_marker_and_ends_on_revoke(site, browse, problems):
    ana_page = browse("Ana", geolocation=HOME)
    create_room(ana_page, site, "Watch walk", "Ana")
    share_for(ana_page, "until I stop")
    ana_page.locator("#watch-links summary").click()
    ana_page.select_option("#watch-minutes", value="60")
    ana_page.locator("#watch-create").click()
    expect(ana_page.locator("#watch-new")).to_be_visible()
    url = ana_page.locator("#watch-url").input_value()
    assert "/w/" in url

    watcher = browse("watcher", viewport=PHONE)
    watcher.goto(url)
    # The watcher knows the member only by the constant id 1 (docs/protocol.md).
    wait_for_function(
        watcher, "() => { const s = window.geoshareWatch.state;"
                 " return s.position !== null && s.position.member === 1; }")
    assert watcher.locator(".gs-name").all_inner_texts() == [""]
    assert "Watch walk" not in watcher.content() and "Ana" not in watcher.content()
    expect(watcher.locator("#watch-status")).to_contain_text("Last seen")
    screenshot(watcher, "11-watch-link-phone")

    ana_page.locator("#watch-list button[data-link]").first.click()
    expect(watcher.locator("#notice")).to_contain_text("revoked")
    problems.assert_none()


def test_stopping_ends_the_share_for_everyone(site, browse, problems):
    ana_page = browse("Ana", geolocation=HOME)
    create_room(ana_page, site, "Stop walk", "Ana")
    invite = ana_page.locator("#invite-url").input_value()
    bo_page = browse("Bo")
    join_room(bo_page, invite, "Bo")
    ana = member_id(ana_page)
    share_for(ana_page, "15 minutes")
    wait_marker_at(bo_page, ana, HOME["latitude"], HOME["longitude"])
    assert marker(bo_page, ana) is not None
    ana_page.get_by_role("button", name="Stop").click()
    wait_no_marker(bo_page, ana)
    expect(ana_page.locator("#share-toggle")).to_contain_text("Share my location")
    problems.assert_none()
