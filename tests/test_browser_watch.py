"""In Chromium: a watch-me link's panel text, revocation and countdown agree (issue 25,
item 18), at 390 px in Chinese and at 1280 px in English.

"Link until 10:06 PM" was listed for a link that ended with the share at 9:18; after a
revocation the stranger still read "12 min left"; and the watch page rounded the time
left down while the member list rounds it up (format.js formatLeft), a minute behind.
"""

import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    TILE_PATTERN,
    create_room,
    member_row,
    room_id,
    wait_connected,
    wait_for_function,
)

pytestmark = pytest.mark.slow

HOME = {"latitude": 45.77218, "longitude": 14.35766, "accuracy": 12}
PHONE_390 = {"width": 390, "height": 844}

TEXT = {
    "en": {"bound": "Link until your share ends", "none": "No links yet.",
           "ended": "This link has ended.", "revoked": "revoked", "left": "15 min left"},
    "zh": {"bound": "链接有效至你的共享结束", "none": "还没有链接。",
           "ended": "此链接已结束。", "revoked": "分享此链接的人已将其撤销。",
           "left": "还剩 15 分钟"},
}

# A share of the member's own from a second socket of the page's session, ending in
# 14.25 minutes: the time left then has a fraction under a half, where rounding down
# and rounding up differ by a minute.
SHARE_ENDING_SOON = """(room) => new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // As this page's own browser (one source per share): its id, as the page sends it.
    const browser = window.geoshare.browserSource.slice("browser:".length);
    const ws = new WebSocket(
        `${scheme}://${location.host}/ws/rooms/${room}/?browser=${browser}`);
    ws.onmessage = (event) => {
        if (JSON.parse(event.data).type !== "snapshot") return;
        const until = Math.round(Date.now() + 14.25 * 60000);
        ws.send(JSON.stringify({type: "share", until}));
        ws.send(JSON.stringify({type: "ping"}));
        ws.onmessage = (e) => { if (JSON.parse(e.data).type === "pong") resolve(until); };
    };
    ws.onerror = reject;
})"""


@pytest.mark.parametrize("language,viewport,locale", [
    ("en", DESKTOP, "en-GB"),
    ("zh", PHONE_390, "zh-CN"),
])
def test_watch_links_panel_revocation_and_countdown_agree(
    site, chromium, problems, language, viewport, locale
):
    text = TEXT[language]
    owner = chromium.new_context(viewport=viewport, locale="en-GB", geolocation=HOME,
                                 permissions=["geolocation"])
    stranger = chromium.new_context(viewport=viewport, locale=locale)
    try:
        for context in (owner, stranger):
            context.set_default_timeout(10_000)
            context.route(TILE_PATTERN, lambda route: route.abort("internetdisconnected"))
        ana = problems.watch(owner.new_page(), "ana")
        create_room(ana, site, "Watch walk", "Ana")
        if language == "zh":
            owner.add_cookies([{"name": "django_language", "value": "zh-hans",
                                "url": site.url}])
            ana.reload()
            wait_connected(ana)
            expect(ana.locator("html")).to_have_attribute("lang", "zh-hans")
        if viewport is PHONE_390:
            ana.locator("#panel-toggle").click()  # a phone's sheet starts as one line
        me = ana.evaluate("window.geoshare.config.memberId")
        ana.select_option("#share-duration", value="15")
        ana.locator("#share-toggle").click()
        wait_for_function(ana, "window.geoshare.sharing() === 'on'", timeout=5_000)
        until = ana.evaluate(SHARE_ENDING_SOON, room_id(ana))
        wait_for_function(ana, "(u) => window.geoshare.share().until === u", arg=until)

        # A link for the share says so, not "Link until <the share's end>".
        links = ana.locator("#watch-list .watch-link > span")
        ana.locator("#watch-links summary").click()
        ana.select_option("#watch-minutes", value="share")
        ana.locator("#watch-create").click()
        expect(links).to_have_text([text["bound"]])
        ana.select_option("#watch-minutes", value="60")
        ana.locator("#watch-create").click()
        expect(links).to_have_count(2)
        url = ana.locator("#watch-url").input_value()

        # The stranger's countdown reads as the member list's, to the minute.
        watcher = problems.watch(stranger.new_page(), "watcher")
        watcher.goto(url)
        status = watcher.locator("#watch-status")
        expect(status).to_contain_text(text["left"])
        expect(member_row(ana, me).locator(".member-status")).to_contain_text(text["left"])

        # Revoked: the stranger's page says the link ended at once, with no time left.
        ana.locator("#watch-list button[data-link]").first.click()
        expect(watcher.locator("#notice")).to_contain_text(text["revoked"])
        expect(status).to_have_text(text["ended"])
        expect(links).to_have_text([text["bound"]])

        # Stopping the share ends its link: the open list says so.
        ana.locator("#share-toggle").click()
        expect(ana.locator("#watch-list li")).to_have_text([text["none"]])
        problems.assert_none()
    finally:
        owner.close()
        stranger.close()
