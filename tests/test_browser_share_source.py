"""In Chromium, one source per share (issue 25, items 12 to 14), at 390 and 1280 px, in
English and Chinese.

A laptop shares; the same member signs in on a phone with "Open on another device". The
phone does not start sharing by itself (though it has the location permission), says
where the share runs, offers "Share from here instead" and Stop; taking over moves the
marker once and stops the laptop's watch. A browser without the permission stops the
share. A browser that shared and closed its tab is named by the list and the card alike.
"""

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    TILE_PATTERN,
    create_room,
    join_room,
    member_id,
    member_row,
    screenshot,
    wait_connected,
    wait_for_function,
    wait_marker_at,
    wait_no_marker,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}
LAPTOP_AT = {"latitude": 52.5, "longitude": 13.3, "accuracy": 10}
PHONE_AT = {"latitude": 52.53, "longitude": 13.38, "accuracy": 10}
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/131.0.0.0 Mobile Safari/537.36")
LAPTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/131.0.0.0 Safari/537.36")

TEXT = {
    "en-GB": {"from_laptop": "Sharing from Chrome · Linux", "take_over": "Share from here instead",
              "stop": "Stop sharing", "share": "Share my location",
              "list_laptop": "Sharing from Chrome · Linux"},
    "zh-CN": {"from_laptop": "正在从Chrome · Linux共享", "take_over": "改为从这里共享",
              "stop": "停止共享", "share": "共享我的位置",
              "list_laptop": "正在从Chrome · Linux共享"},
}
CASES = [(PHONE_390, "en-GB"), (DESKTOP, "en-GB"), (PHONE_390, "zh-CN"), (DESKTOP, "zh-CN")]


def context(chromium, *, viewport, locale="en-GB", user_agent=LAPTOP_UA, geolocation=None):
    permissions = ["geolocation"] if geolocation is not None else []
    made = chromium.new_context(viewport=viewport, locale=locale, user_agent=user_agent,
                                geolocation=geolocation, permissions=permissions,
                                timezone_id="Europe/Berlin")
    made.set_default_timeout(10_000)
    made.route(TILE_PATTERN, lambda route: route.abort("internetdisconnected"))
    return made


def sign_in_elsewhere(page, site, name, target):
    """Make an "Open on another device" link on ``page``; open it on ``target``."""
    map_url = page.url
    page.goto(f"{site.url}/r/{page.evaluate('window.geoshare.config.roomId')}/other-device/")
    page.get_by_role("button", name="Make a sign-in link").click()
    url = page.locator("#signin-url").input_value()
    page.goto(map_url)
    wait_connected(page)
    target.goto(url)
    target.locator("#signin-form button").click()
    wait_connected(target)


def no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("viewport,locale", CASES,
                         ids=[f"{v['width']}-{loc}" for v, loc in CASES])
def test_a_second_browser_does_not_share_by_itself_and_can_take_over_or_stop(
        site, chromium, problems, viewport, locale):
    text = TEXT[locale]
    contexts = []
    try:
        laptop_ctx = context(chromium, viewport=DESKTOP, geolocation=LAPTOP_AT)
        phone_ctx = context(chromium, viewport=viewport, locale=locale, user_agent=PHONE_UA,
                            geolocation=PHONE_AT)
        bo_ctx = context(chromium, viewport=DESKTOP)
        bare_ctx = context(chromium, viewport=viewport, locale=locale)  # no permission
        contexts += [laptop_ctx, phone_ctx, bo_ctx, bare_ctx]
        laptop = problems.watch(laptop_ctx.new_page(), "laptop")
        create_room(laptop, site, "One source", "Ana")
        ana = member_id(laptop)
        invite = laptop.locator("#invite-url").input_value()
        bo = problems.watch(bo_ctx.new_page(), "bo")
        join_room(bo, invite, "Bo")
        laptop.select_option("#share-duration", value="0")
        laptop.get_by_role("button", name="Share my location").click()
        wait_for_function(laptop, "window.geoshare.sharing() === 'on'", timeout=5_000)
        wait_marker_at(bo, ana, LAPTOP_AT["latitude"], LAPTOP_AT["longitude"])

        # The phone browser, signed in as Ana, with the permission: it says where the
        # share runs, and does not start sharing.
        phone = problems.watch(phone_ctx.new_page(), "phone")
        sign_in_elsewhere(laptop, site, "Ana", phone)
        status = phone.locator("#share-status")
        expect(status).to_be_visible()
        expect(phone.locator("#share-source")).to_have_text(text["from_laptop"])
        expect(phone.locator("#share-toggle .share-label")).to_have_text(text["take_over"])
        expect(phone.locator("#share-stop")).to_have_text(text["stop"])
        expect(phone.locator("#share-stop")).to_be_visible()
        assert phone.evaluate("window.geoshare.sharing()") == "off"
        assert no_sideways_scroll(phone)
        screenshot(phone, f"25-share-elsewhere-{viewport['width']}-{locale}")
        # The laptop is still the source: its next position moves the marker, never the
        # phone's place in between.
        laptop_ctx.set_geolocation({**LAPTOP_AT, "latitude": 52.501})
        wait_marker_at(bo, ana, 52.501, LAPTOP_AT["longitude"], timeout=10_000)
        assert bo.evaluate(
            "(id) => window.geoshare.markers()[id].lat", ana) == pytest.approx(52.501)

        # "Share from here instead": the marker moves to the phone, the laptop stops.
        phone.locator("#share-toggle").click()
        wait_for_function(phone, "window.geoshare.sharing() === 'on'", timeout=5_000)
        wait_marker_at(bo, ana, PHONE_AT["latitude"], PHONE_AT["longitude"], timeout=10_000)
        wait_for_function(laptop, "window.geoshare.sharing() === 'off'", timeout=10_000)
        expect(laptop.locator("#share-toggle .share-label")).to_have_text(
            "Share from here instead")
        expect(laptop.locator("#share-source")).to_have_text("Sharing from Chrome · Android")
        expect(phone.locator("#share-status")).to_be_hidden()

        # A browser without the location permission stops it (item 13).
        bare = problems.watch(bare_ctx.new_page(), "bare")
        sign_in_elsewhere(laptop, site, "Ana", bare)
        expect(bare.locator("#share-stop")).to_be_visible()
        assert no_sideways_scroll(bare)
        bare.locator("#share-stop").click()
        wait_no_marker(bo, ana, timeout=10_000)
        expect(bare.locator("#share-toggle .share-label")).to_have_text(text["share"])
        expect(bare.locator("#share-status")).to_be_hidden()
        wait_for_function(phone, "window.geoshare.sharing() === 'off'", timeout=10_000)
        problems.assert_none()
    finally:
        for made in contexts:
            made.close()


@pytest.mark.parametrize("viewport,locale", [(PHONE_390, "en-GB"), (DESKTOP, "zh-CN")],
                         ids=["390-en-GB", "1280-zh-CN"])
def test_a_browser_that_shared_and_closed_its_tab_is_named_by_the_list_and_the_card(
        site, chromium, problems, viewport, locale):
    text = TEXT[locale]
    contexts = []
    try:
        laptop_ctx = context(chromium, viewport=DESKTOP, geolocation=LAPTOP_AT)
        bo_ctx = context(chromium, viewport=viewport, locale=locale)
        contexts += [laptop_ctx, bo_ctx]
        laptop = problems.watch(laptop_ctx.new_page(), "laptop")
        create_room(laptop, site, "Closed tab", "Ana")
        ana = member_id(laptop)
        invite = laptop.locator("#invite-url").input_value()
        bo = problems.watch(bo_ctx.new_page(), "bo")
        bo.goto(invite)
        bo.locator("#join-room input[name=name]").fill("Bo")
        bo.locator("#join-room button[type=submit]").click()
        wait_connected(bo)
        laptop.get_by_role("button", name="Share my location").click()
        wait_for_function(laptop, "window.geoshare.sharing() === 'on'", timeout=5_000)
        wait_marker_at(bo, ana, LAPTOP_AT["latitude"], LAPTOP_AT["longitude"])
        laptop.close()
        row = member_row(bo, ana).locator(".member-status")
        expect(row).to_contain_text(text["list_laptop"])
        expect(row).not_to_contain_text(re.compile("phone|手机"))
        bo.locator(f'.gs-pin[data-member-id="{ana}"]').click()
        card = bo.locator("#marker-card")
        expect(card).to_be_visible()
        expect(card.locator(".card-device")).to_contain_text("Chrome · Linux")
        assert no_sideways_scroll(bo)
        screenshot(bo, f"25-closed-tab-source-{viewport['width']}-{locale}")
        problems.assert_none()
    finally:
        for made in contexts:
            made.close()


@pytest.mark.parametrize("viewport,locale", CASES,
                         ids=[f"{v['width']}-{loc}" for v, loc in CASES])
def test_a_new_devices_setup_opens_on_the_phone_with_a_one_time_link(
        site, chromium, problems, viewport, locale):
    # Item 20: the key shows once, in the browser that added the device; a one-time
    # link (and its QR code) opens that device's setup on the phone.
    words = {"en-GB": ("Open this setup on the phone", "Show the setup"),
             "zh-CN": ("在手机上打开此设置", "显示设置")}[locale]
    contexts = []
    try:
        laptop_ctx = context(chromium, viewport=viewport, locale=locale)
        phone_ctx = context(chromium, viewport=PHONE_390, locale=locale, user_agent=PHONE_UA)
        contexts += [laptop_ctx, phone_ctx]
        laptop = problems.watch(laptop_ctx.new_page(), "laptop")
        english = context(chromium, viewport=DESKTOP)
        contexts.append(english)
        owner = problems.watch(english.new_page(), "owner")
        create_room(owner, site, "Setup link", "Olga")
        invite = owner.locator("#invite-url").input_value()
        laptop.goto(invite)
        laptop.locator("#join-room input[name=name]").fill("Ana")
        laptop.locator("#join-room button[type=submit]").click()
        wait_connected(laptop)
        laptop.goto(laptop.url + "connect/")
        laptop.locator("#add-device input[name=name]").fill("Pixel")
        laptop.locator("#add-device button[type=submit]").click()
        box = laptop.locator("#setup-link")
        expect(box.locator("h3")).to_have_text(words[0])
        expect(box.locator("svg")).to_have_count(1)
        key = laptop.locator("#device-key").input_value()
        url = laptop.locator("#setup-url").input_value()
        assert no_sideways_scroll(laptop)
        screenshot(laptop, f"25-setup-link-{viewport['width']}-{locale}")

        phone = problems.watch(phone_ctx.new_page(), "phone")
        phone.goto(url)
        phone.locator("#setup-form button").click()
        expect(phone.locator("#device-key")).to_have_value(key)
        expect(phone.locator("#app-owntracks svg")).to_have_count(1)
        assert no_sideways_scroll(phone)
        screenshot(phone, f"25-setup-on-the-phone-{locale}")
        problems.allow.append("404")
        assert phone.goto(url).status == 404
        problems.problems = [p for p in problems.problems if "HTTP 404" not in p]
        problems.assert_none()
    finally:
        for made in contexts:
            made.close()


@pytest.mark.parametrize("viewport,locale", [(PHONE_390, "zh-CN"), (DESKTOP, "en-GB")],
                         ids=["390-zh-CN", "1280-en-GB"])
def test_share_from_my_phone_apps_restarts_a_phone_without_the_browsers_location(
        site, chromium, problems, viewport, locale):
    # Item 20: after a Stop, a phone app's positions are dropped until the member shares
    # again; "Share from: my phone apps" does it without starting the browser's location.
    waiting = {"en-GB": "Waiting for your phone apps…", "zh-CN": "正在等待你的手机应用…"}
    contexts = []
    try:
        laptop_ctx = context(chromium, viewport=viewport, locale=locale,
                             geolocation=LAPTOP_AT)
        bo_ctx = context(chromium, viewport=DESKTOP)
        contexts += [laptop_ctx, bo_ctx]
        laptop = problems.watch(laptop_ctx.new_page(), "laptop")
        bo = problems.watch(bo_ctx.new_page(), "bo")
        create_room(bo, site, "Phone restart", "Bo")
        invite = bo.locator("#invite-url").input_value()
        laptop.goto(invite)
        laptop.locator("#join-room input[name=name]").fill("Ana")
        laptop.locator("#join-room button[type=submit]").click()
        wait_connected(laptop)
        ana = member_id(laptop)
        map_url = laptop.url
        laptop.goto(map_url + "connect/")
        laptop.locator("#add-device input[name=name]").fill("Pixel")
        laptop.locator("#add-device button[type=submit]").click()
        key = laptop.locator("#device-key").input_value()

        def phone_sends(lat):
            response = httpx.get(f"{site.url}/ingest/osmand/",
                                 params={"id": key, "lat": str(lat), "lon": "13.38"})
            assert response.status_code == 200

        phone_sends(52.53)
        wait_marker_at(bo, ana, 52.53, 13.38)
        laptop.goto(map_url)
        wait_connected(laptop)
        assert laptop.evaluate("window.geoshare.sharing()") == "off"
        laptop.locator("#share-stop").click()
        wait_no_marker(bo, ana)
        phone_sends(52.54)  # dropped: the share is stopped
        expect(laptop.locator("#share-from-row")).to_be_visible()
        laptop.select_option("#share-from", value="phones")
        laptop.locator("#share-toggle").click()
        expect(laptop.locator("#share-source")).to_have_text(re.compile(waiting[locale]))
        assert laptop.evaluate("window.geoshare.sharing()") == "off"
        assert no_sideways_scroll(laptop)
        screenshot(laptop, f"25-share-from-phones-{viewport['width']}-{locale}")
        phone_sends(52.55)
        wait_marker_at(bo, ana, 52.55, 13.38, timeout=10_000)
        assert laptop.evaluate("window.geoshare.sharing()") == "off"
        problems.assert_none()
    finally:
        for made in contexts:
            made.close()
