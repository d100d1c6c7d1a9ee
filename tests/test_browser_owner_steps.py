"""In Chromium, at 390x844 and 1280x800, in English and Chinese: the owner's steps that
delete for good ask first (issue 25, items 11 and 17).

- Revoking an invite stops new joins and removes nobody; "Remove these 3 people…"
  answers with a page that names them, and only its button removes them.
- Setting the retention to 0 names how many positions go before it deletes them; the
  live-only room's map then offers no History panel with Play.

Screenshots in tests/artifacts/25-*.png.
"""

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    TILE_PATTERN,
    create_room,
    room_id,
    screenshot,
    wait_connected,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHONE_390 = {"width": 390, "height": 844}
CASES = [
    pytest.param(PHONE_390, "en", id="390-en"),
    pytest.param(PHONE_390, "zh", id="390-zh"),
    pytest.param(DESKTOP, "en", id="1280-en"),
    pytest.param(DESKTOP, "zh", id="1280-zh"),
]
WORDS = {
    "en": {
        "locale": "en-GB",
        "joined": "Joined with this link (3):",
        "names": "Ana, Bo, Cy",
        "revoke": "Revoke",
        "revoked": "Invite revoked: it lets nobody new in. Whoever joined with it stays.",
        "remove_these": "Remove these 3 people…",
        "question": "Remove the 3 people who joined with this link: Ana, Bo, Cy?",
        "remove_button": "Remove 3 people",
        "cancel": "Cancel",
        "removed": "Removed 3 people: Ana, Bo, Cy; the links they knew were replaced by "
                   "new ones.",
        "no_history": "Keep no history from now on?",
        "deletes": "This deletes all 2 positions of the room's history now",
        "delete_button": "Delete 2 positions",
        "saved": "History retention saved.",
        "history": "History",
        "my_data": "Download my data",
    },
    "zh": {
        "locale": "zh-CN",
        "joined": "通过此链接加入（3）：",
        "names": "Ana、Bo、Cy",
        "revoke": "撤销",
        "revoked": "邀请已撤销：不再有人能通过它加入。已加入的人会留下。",
        "remove_these": "移除这 3 个人…",
        "question": "移除通过此链接加入的 3 个人：Ana、Bo、Cy？",
        "remove_button": "移除 3 个人",
        "cancel": "取消",
        "removed": "已移除 3 个人：Ana、Bo、Cy；他们知道的链接已换成新链接。",
        "no_history": "从现在起不保留历史记录？",
        "deletes": "全部 2 个位置",
        "delete_button": "删除 2 个位置",
        "saved": "历史记录保留设置已保存。",
        "history": "历史记录",
        "my_data": "下载我的数据",
    },
}


@pytest.fixture
def owner_page(chromium, problems):
    """``owner_page(viewport, lang)``: a page in a fresh context of that size and language."""
    contexts = []

    def open_page(viewport, lang):
        context = chromium.new_context(viewport=viewport, locale=WORDS[lang]["locale"],
                                       timezone_id="Asia/Shanghai")
        context.set_default_timeout(10_000)
        context.route(TILE_PATTERN, lambda route: route.abort("internetdisconnected"))
        contexts.append(context)
        return problems.watch(context.new_page(), f"owner-{lang}")

    yield open_page
    for context in contexts:
        context.close()


def join(url, name):
    """Someone opens the invite link ``url`` in a browser of their own and joins as ``name``."""
    with httpx.Client(follow_redirects=False) as browser:
        form = browser.get(url)
        assert form.status_code == 200, form.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        joined = browser.post(url, data={"csrfmiddlewaretoken": token, "name": name},
                              headers={"Referer": url})
        assert joined.status_code == 302, joined.text


def fits(page, locator):
    """Assert that the page does not scroll sideways and ``locator`` is on the screen."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_revoking_keeps_people_and_removing_them_asks_naming_them(
    site, owner_page, problems, viewport, lang
):
    words = WORDS[lang]
    page = owner_page(viewport, lang)
    create_room(page, site, f"Family {lang} {viewport['width']}", "Olga")
    room = room_id(page)
    page.goto(f"{site.url}/r/{room}/manage/")
    form = page.locator("#new-invite")
    form.locator('input[name="invite-label"]').fill("Grandparents")
    form.locator('button[type="submit"]').click()
    row = page.locator("#invites li", has_text="Grandparents")
    url = row.locator("input.invite-url").input_value()
    for name in ("Ana", "Bo", "Cy"):
        join(url, name)
    page.reload()

    expect(row.locator(".invite-joined")).to_contain_text(words["joined"])
    expect(row.locator(".invite-joined-names")).to_have_text(words["names"])
    # Revoking: the link goes to the folded list, its three people stay.
    row.get_by_role("button", name=words["revoke"]).click()
    expect(page.locator(".messages")).to_contain_text(words["revoked"])
    for name in ("Ana", "Bo", "Cy"):
        expect(page.locator("#members .person-name", has_text=name)).to_have_count(1)
    page.locator("#spent-invites > summary").click()
    spent = page.locator("#spent-invites li", has_text="Grandparents")
    expect(spent.locator(".invite-joined-names")).to_have_text(words["names"])
    remove = spent.get_by_role("button", name=words["remove_these"])
    fits(page, remove)

    # Removing them is a step of its own that names them; Cancel changes nothing.
    remove.click()
    expect(page.locator("#confirm-question")).to_have_text(words["question"])
    expect(page.locator("#confirm-people li")).to_have_text(["Ana", "Bo", "Cy"])
    confirm = page.get_by_role("button", name=words["remove_button"])
    fits(page, confirm)
    screenshot(page, f"25-remove-joined-{lang}-{viewport['width']}")
    page.get_by_role("link", name=words["cancel"]).click()
    expect(page.locator("#members .person")).to_have_count(4)

    page.locator("#spent-invites > summary").click()
    page.locator("#spent-invites li", has_text="Grandparents").get_by_role(
        "button", name=words["remove_these"]).click()
    page.get_by_role("button", name=words["remove_button"]).click()
    expect(page.locator(".messages")).to_contain_text(words["removed"])
    expect(page.locator("#members .person")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    problems.assert_none()


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_retention_0_asks_first_and_the_live_only_map_has_no_history(
    site, owner_page, problems, viewport, lang
):
    words = WORDS[lang]
    page = owner_page(viewport, lang)
    create_room(page, site, f"Live {lang} {viewport['width']}", "Olga")
    room = room_id(page)
    # A phone reports twice; phone positions are stored before the phone is answered.
    page.goto(f"{site.url}/r/{room}/connect/")
    page.locator('#add-device input[name="name"]').fill("Pixel")
    page.locator('#add-device button[type="submit"]').click()
    key = page.locator("#device-key").input_value()
    page.wait_for_load_state("load")
    now = int(time.time())
    for seconds_ago, lat in ((60, 45.7722), (30, 45.7730)):
        response = httpx.get(f"{site.url}/ingest/osmand/", params={
            "id": key, "lat": str(lat), "lon": "14.3577",
            "timestamp": str(now - seconds_ago)})
        assert response.status_code == 200, response.text
    page.goto(f"{site.url}/r/{room}/")
    wait_connected(page)
    expect(page.locator("#history-open")).to_have_count(1)

    page.goto(f"{site.url}/r/{room}/manage/")
    page.locator('#retention input[name="retention-retention_days"]').fill("0")
    page.locator('#retention button[type="submit"]').click()
    expect(page.locator("#confirm-question")).to_have_text(words["no_history"])
    expect(page.locator("#confirm-detail")).to_contain_text(words["deletes"])
    confirm = page.get_by_role("button", name=words["delete_button"])
    fits(page, confirm)
    screenshot(page, f"25-retention-0-{lang}-{viewport['width']}")
    confirm.click()
    expect(page.locator(".messages")).to_contain_text(words["saved"])
    expect(page.locator('#retention input[name="retention-retention_days"]')).to_have_value("0")

    page.goto(f"{site.url}/r/{room}/")
    wait_connected(page)
    assert page.evaluate("window.geoshare.config.history") is None
    expect(page.locator("#history-open")).to_have_count(0)
    expect(page.locator("#history-panel")).to_have_count(0)
    expect(page.locator("#history-play")).to_have_count(0)
    expect(page.get_by_role("button", name=words["history"], exact=True)).to_have_count(0)
    if viewport is PHONE_390:
        page.locator("#panel-toggle").click()
    expect(page.locator("#my-data")).to_have_text(words["my_data"])
    expect(page.locator("#my-data")).to_be_visible()
    screenshot(page, f"25-live-only-map-{lang}-{viewport['width']}")
    problems.assert_none()
