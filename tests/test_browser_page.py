"""In Chromium, the pages a new user trusts (issue 12), at 390x844 and 1280x800.

The owner's page and the connect page never scroll sideways; labels are never cut;
times agree and are in the browser's zone; a phone-app sharer is not "Offline"; a
refused-permission toast goes once sharing works; a deleted room's URL is a styled
page. Screenshots in tests/artifacts/12-*.png.
"""

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    TILE_PATTERN,
    create_room,
    member_row,
    room_id,
    screenshot,
    wait_connected,
    wait_for_function,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}
VIEWPORTS = [(PHONE_390, "phone"), (DESKTOP, "desktop")]
HOME = {"latitude": 45.77218, "longitude": 14.35766, "accuracy": 12}

# Every element matching one of the selectors whose text does not fit its box: wider
# than its box (scrollWidth), an ellipsis, or (inline) sticking out of its parent.
CUT_LABELS_JS = """(selectors) => {
    const cut = [];
    for (const selector of selectors) {
        for (const el of document.querySelectorAll(selector)) {
            if (el.offsetParent === null) continue;
            const style = getComputedStyle(el);
            const box = el.getBoundingClientRect();
            const parent = el.parentElement.getBoundingClientRect();
            if (el.scrollWidth > el.clientWidth + 1 && style.display !== "inline"
                || style.textOverflow === "ellipsis" && el.scrollWidth > el.clientWidth
                || box.right > parent.right + 1 || box.left < parent.left - 1
                || box.right > window.innerWidth) {
                cut.push(`${selector}: ${el.textContent.trim()}`);
            }
        }
    }
    return cut;
}"""


@pytest.fixture
def browser_timezone():
    # The viewer's zone, far from UTC: times must be shown in it.
    return "Asia/Shanghai"


def no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def inside_viewport(page, locator):
    for index in range(locator.count()):
        item = locator.nth(index)
        item.scroll_into_view_if_needed()
        box = item.bounding_box()
        width = page.viewport_size["width"]
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, item


def phone_report(site, key, lat=45.7722, lon=14.3577):
    """A phone app (OsmAnd's protocol) reports now through the device key ``key``."""
    import time

    response = httpx.get(f"{site.url}/ingest/osmand/", params={
        "id": key, "lat": str(lat), "lon": str(lon), "timestamp": str(int(time.time()))})
    assert response.status_code == 200, response.text


def add_device(page, name):
    page.get_by_label("Name of the new device").fill(name)
    page.get_by_role("button", name="Add a device").click()
    key = page.locator("#device-key").input_value()
    page.wait_for_load_state("load")  # its modules loaded: leaving aborts nothing
    return key


@pytest.mark.parametrize(("viewport", "label"), VIEWPORTS)
def test_manage_page_fits_and_last_seen_agrees_with_the_map(site, browse, problems,
                                                           viewport, label):
    owner = browse(f"owner-{label}", viewport=viewport)
    create_room(owner, site, f"Weekend at the lake house {label}", "Olga")
    room = room_id(owner)
    # A phone reports for Olga: the map and the owner's page say the same thing.
    owner.goto(f"{site.url}/r/{room}/connect/")
    key = add_device(owner, "Pixel")
    phone_report(site, key)
    owner.goto(f"{site.url}/r/{room}/manage/")
    for hours, label in (("", "Grandparents watching"), ("24", "")):
        form = owner.locator("#new-invite")
        form.get_by_label("Label (only you see it)").fill(label)
        form.get_by_role("combobox").select_option("viewer")
        form.get_by_label("Expires after (hours)").fill(hours)
        form.get_by_role("button", name="Create invite").click()
    owner.locator("#invites li").last.get_by_role("button", name="Revoke").click()
    expect(owner.locator("#spent-invites > summary")).to_contain_text("(1)")

    assert no_sideways_scroll(owner), "the owner's page scrolls sideways"
    inside_viewport(owner, owner.locator("#invites").get_by_role("button", name="Revoke"))
    inside_viewport(owner, owner.locator("#invites").get_by_role("button", name="Copy link"))
    labelled = owner.locator("#invites li", has_text="Grandparents watching")
    expect(labelled).to_contain_text("Viewer")
    # The link in full, on demand; a label given later.
    link = labelled.locator("input.invite-url")
    expect(link).to_be_hidden()
    labelled.get_by_text("Show the link").click()
    expect(link).to_be_visible()
    assert "/join/" in link.input_value()
    first = owner.locator("#invites li").first
    first.get_by_text("Add a label").click()
    first.get_by_label("Label").fill("School run")
    first.get_by_role("button", name="Save").click()
    expect(owner.locator("#invites li", has_text="School run")).to_have_count(1)
    assert no_sideways_scroll(owner)
    expect(owner.locator("#invites")).to_contain_text("never expires")
    expect(owner.locator("#invites")).to_contain_text("unlimited uses")
    olga = owner.locator("#members li", has_text="Olga (you)")
    seen = olga.locator("time.last-seen")
    expect(seen).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
    # Local time of the browser (Asia/Shanghai, UTC+8), not UTC.
    iso = seen.get_attribute("datetime")
    assert iso.endswith("+00:00")
    local_hour = owner.evaluate(
        "(iso) => new Date(iso).toLocaleString('en-GB', {timeZone: 'Asia/Shanghai', "
        "hour: '2-digit', hour12: false})", iso)
    assert local_hour in seen.get_attribute("title")
    assert "minutes" not in owner.locator("#members").inner_text()
    screenshot(owner, f"12-manage-{label}")

    owner.get_by_role("link", name=re.compile("Back to the map")).click()
    wait_connected(owner)
    me = owner.evaluate("window.geoshare.config.memberId")
    status = member_row(owner, me).locator(".member-status")
    expect(status).to_contain_text(re.compile(r"just now|\d+ s ago"))
    problems.assert_none()


@pytest.mark.parametrize(("viewport", "label"), VIEWPORTS)
def test_connect_page_fits_with_a_long_unbroken_device_name(site, browse, problems,
                                                           viewport, label):
    page = browse(f"connect-{label}", viewport=viewport)
    create_room(page, site, f"Connect {label}", "Ana")
    room = room_id(page)
    page.goto(f"{site.url}/r/{room}/connect/")
    add_device(page, "x" * 40)
    assert no_sideways_scroll(page), page.evaluate(WIDEST_JS)
    page.goto(f"{site.url}/r/{room}/connect/")
    assert no_sideways_scroll(page), page.evaluate(WIDEST_JS)
    # The notices name the device (and its key) too.
    device = page.locator(".device").first
    device.locator("summary").click()
    device.locator('input[name="secret"]').fill("k" * 60)
    device.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("is set")
    assert no_sideways_scroll(page), page.evaluate(WIDEST_JS)
    page.locator(".device").first.get_by_role("button", name="Remove").click()
    expect(page.locator(".messages")).to_contain_text("is removed")
    assert no_sideways_scroll(page), page.evaluate(WIDEST_JS)
    screenshot(page, f"12-connect-long-name-{label}")
    problems.assert_none()


WIDEST_JS = """() => [...document.querySelectorAll('body *')]
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 || el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && el.tagName !== 'INPUT')
    .slice(0, 8).map((el) => el.tagName + '.' + el.className + ' ' +
        Math.round(el.getBoundingClientRect().right))"""


@pytest.mark.parametrize(("viewport", "label"), VIEWPORTS)
def test_map_labels_are_never_cut(site, browse, problems, viewport, label):
    page = browse(f"labels-{label}", viewport=viewport, geolocation=HOME)
    create_room(page, site, "Weekend at the lake house with the whole family", "Alexandra")
    page.select_option("#share-duration", label="8 hours")
    page.get_by_role("button", name="Share my location").click()
    wait_for_function(page, "window.geoshare.sharing() === 'on'", timeout=5_000)
    expect(page.locator("#share-toggle")).to_contain_text("left")
    checked = [".share-label", "#share-toggle", ".member-name",
               ".member-status", "#panel-toggle", ".connection"]
    assert page.evaluate(CUT_LABELS_JS, checked) == []
    # The room's name is one line (the bar must not grow over the map): a long one ends
    # in an ellipsis, whole in its title (issue 25 item 16).
    expect(page.locator(".room-name")).to_have_attribute(
        "title", "Weekend at the lake house with the whole family")
    assert no_sideways_scroll(page)
    screenshot(page, f"12-map-labels-{label}")
    problems.assert_none()


def test_a_member_sharing_from_a_phone_is_not_offline(site, browse, problems):
    owner = browse("owner", viewport=PHONE_390)
    create_room(owner, site, "Phone walk", "Olga")
    room = room_id(owner)
    invite = owner.locator("#invite-url").input_value()
    bo = browse("bo")
    bo.goto(invite)
    bo.locator("#join-room").get_by_label("Your display name").fill("Bo")
    bo.locator("#join-room").get_by_role("button").click()
    wait_connected(bo)
    bo_id = bo.evaluate("window.geoshare.config.memberId")
    bo.goto(f"{site.url}/r/{room}/connect/")
    key = add_device(bo, "Pixel 8")
    bo.context.close()  # Bo's browser is gone; the phone app reports
    phone_report(site, key)
    status = member_row(owner, bo_id).locator(".member-status")
    # Named by the share's source, the phone app's device (issue 25, item 14).
    expect(status).to_contain_text("Sharing from Pixel 8")
    expect(status).not_to_contain_text("Offline")
    screenshot(owner, "12-phone-sharer-phone")
    problems.assert_none()


def test_the_permission_toast_goes_when_sharing_starts(site, browse, problems):
    page = browse("ana", viewport=PHONE_390)  # no geolocation permission yet
    create_room(page, site, "Permission walk", "Ana")
    page.get_by_role("button", name="Share my location").click()
    toast = page.locator("#toast")
    expect(toast).to_contain_text("permission was refused")
    page.context.grant_permissions(["geolocation"])
    page.context.set_geolocation(HOME)
    page.get_by_role("button", name=re.compile("Share")).click()
    wait_for_function(page, "window.geoshare.sharing() === 'on'", timeout=5_000)
    assert page.evaluate("document.getElementById('toast').hidden") is True
    screenshot(page, "12-permission-then-sharing-phone")
    problems.assert_none()


@pytest.mark.parametrize(("viewport", "label"), VIEWPORTS)
def test_a_deleted_room_is_a_styled_page(site, browse, problems, viewport, label):
    page = browse(f"deleted-{label}", viewport=viewport)
    create_room(page, site, f"Short-lived {label}", "Olga")
    url = page.url
    if page.locator("#panel").get_attribute("data-open") == "false":
        page.locator("#panel-toggle").click()  # a phone's sheet starts as one line
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete room and erase all data").click()
    page.wait_for_url(site.url + "/")
    expect(page.locator(".messages")).to_contain_text("were deleted")
    problems.allow.append("404")
    response = page.goto(url)
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("This room does not exist")
    expect(page.locator(".site-header")).to_be_visible()
    assert no_sideways_scroll(page)
    screenshot(page, f"12-room-gone-{label}")
    problems.problems = [p for p in problems.problems if "HTTP 404" not in p]
    problems.assert_none()


def test_another_device_link_signs_a_second_browser_in_as_the_same_member(
        site, browse, problems):
    laptop = browse("laptop", geolocation=HOME)
    create_room(laptop, site, "Two devices", "Ana")
    ana = laptop.evaluate("window.geoshare.config.memberId")
    laptop.get_by_role("link", name="Open on another device").click()
    laptop.get_by_role("button", name="Make a sign-in link").click()
    url = laptop.locator("#signin-url").input_value()
    expect(laptop.locator("#signin-new svg")).to_have_count(1)
    assert no_sideways_scroll(laptop)
    screenshot(laptop, "12-other-device-desktop")

    phone = browse("phone", viewport=PHONE_390)
    phone.goto(url)
    assert no_sideways_scroll(phone)
    screenshot(phone, "12-other-device-signin-phone")
    phone.get_by_role("button", name="Sign in as Ana").click()
    wait_connected(phone)
    assert phone.evaluate("window.geoshare.config.memberId") == ana
    expect(member_row(phone, ana).locator(".member-name")).to_have_text("Ana (you)")

    # Single use: a third browser gets the styled "no longer works" page.
    third = browse("third")
    problems.allow.append("404")
    assert third.goto(url).status == 404
    expect(third.locator("h1")).to_have_text("This sign-in link no longer works")
    problems.problems = [p for p in problems.problems if "HTTP 404" not in p]
    problems.assert_none()


def test_the_translated_pages_in_simplified_chinese(site, chromium, problems):
    english = chromium.new_context(viewport=DESKTOP, locale="en-GB")
    chinese = chromium.new_context(viewport=PHONE_390, locale="zh-CN",
                                   timezone_id="Asia/Shanghai")
    try:
        for context in (english, chinese):
            context.route(TILE_PATTERN, lambda route: route.abort("internetdisconnected"))
        page = problems.watch(english.new_page(), "en")
        create_room(page, site, "双语", "Ana")
        page.goto(f"{site.url}/r/{room_id(page)}/other-device/")
        page.get_by_role("button", name="Make a sign-in link").click()
        url = page.locator("#signin-url").input_value()
        page.wait_for_load_state("load")

        zh = problems.watch(chinese.new_page(), "zh")
        zh.goto(url)
        expect(zh.locator("html")).to_have_attribute("lang", "zh-hans")
        zh.get_by_role("button", name="以 Ana 的身份登录").click()
        wait_connected(zh)
        room = zh.evaluate("window.geoshare.config.roomId")
        # The map page: its template and its scripts (main.js, members.js) in Chinese.
        expect(zh.locator("#connection")).to_have_text("实时")
        expect(zh.locator("#member-list")).to_contain_text("Ana（你）")
        expect(zh.locator("#member-list")).to_contain_text("在线")
        expect(zh.locator("#share-toggle .share-label")).to_have_text("共享我的位置")
        expect(zh.locator("#map-fit")).to_have_text("显示所有人")
        screenshot(zh, "12-zh-map-phone")
        zh.goto(f"{site.url}/r/{room}/other-device/")
        expect(zh.locator("h1")).to_contain_text("在另一台设备上打开")
        # The script's words come from Django's JavaScript catalog.
        expect(zh.locator("#signin-links time").first).to_have_text(re.compile("刚刚|秒前"))
        zh.get_by_role("button", name="生成登录链接").click()
        # "已复制" shows for 2 s only: record every label the button takes, so that a
        # slow machine cannot miss it between two polls.
        copy = zh.get_by_role("button", name="复制")
        expect(copy).to_be_visible()
        copy.evaluate("""button => {
            window.copyLabels = [];
            new MutationObserver(() => window.copyLabels.push(button.textContent))
                .observe(button, {childList: true, characterData: true, subtree: true});
        }""")
        copy.click()
        zh.wait_for_function("() => window.copyLabels.includes('已复制')", timeout=10_000)
        assert no_sideways_scroll(zh)
        screenshot(zh, "12-zh-other-device-phone")
        zh.goto(f"{site.url}/")
        expect(zh.get_by_role("heading", name="你的房间")).to_be_visible()
        screenshot(zh, "12-zh-home-phone")
    finally:
        english.close()
        chinese.close()
    problems.assert_none()
