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
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.browser_helpers import (
    DESKTOP,
    TILE_PATTERN,
    create_room,
    room_id,
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


# -- item 16 -----------------------------------------------------------------------------

# Pairs of selectors whose visible boxes intersect (each pair is checked both ways once).
OVERLAPS_JS = """(pairs) => {
    const box = (selector) => {
        const el = document.querySelector(selector);
        if (!el || el.offsetParent === null && getComputedStyle(el).position !== "fixed") return null;
        const b = el.getBoundingClientRect();
        return b.width && b.height ? b : null;
    };
    const hit = [];
    for (const [a, b] of pairs) {
        const x = box(a), y = box(b);
        if (x && y && x.left < y.right - 1 && y.left < x.right - 1
            && x.top < y.bottom - 1 && y.top < x.bottom - 1) hit.push(`${a} over ${b}`);
    }
    return hit;
}"""

# Latin words of the elements' text broken over two lines (a line break inside a word).
BROKEN_WORDS_JS = """(selector) => {
    const broken = [];
    for (const el of document.querySelectorAll(selector)) {
        const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (const match of node.textContent.matchAll(/[A-Za-z0-9]{2,}/g)) {
                const range = document.createRange();
                range.setStart(node, match.index);
                range.setEnd(node, match.index + match[0].length);
                const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
                if (tops.size > 1) broken.push(match[0]);
            }
        }
    }
    return broken;
}"""

LINES_JS = """(selector) => {
    const el = document.querySelector(selector);
    const style = getComputedStyle(el);
    const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.25;
    return Math.round(el.getBoundingClientRect().height / line);
}"""

MAP_CONTROLS = ["#share-toggle", "#panel", ".leaflet-control-zoom", ".map-buttons",
                "#marker-card", "#toast", ".marker-card-name", ".marker-card-close"]


def overlaps(page, pairs):
    return page.evaluate(OVERLAPS_JS, pairs)


def settle(page, pairs, timeout=5_000):
    """Wait until none of ``pairs`` overlap; on time-out, fail naming those that do."""
    try:
        wait_for_function(page, f"(pairs) => ({OVERLAPS_JS})(pairs).length === 0",
                          arg=pairs, timeout=timeout)
    except PlaywrightTimeoutError:
        assert overlaps(page, pairs) == []


class SocketGate:
    """Lets the page's WebSockets through to the server until ``drop()``: then every
    socket is closed (1012, not a final code) and new ones are refused, so the page
    stays "reconnecting"."""

    def __init__(self, page):
        self.routes = []
        self.refusing = False
        page.route_web_socket(re.compile(r"/ws/"), self.handle)

    def handle(self, route):
        if self.refusing:
            route.close(code=1012, reason="test")
            return
        route.connect_to_server()
        self.routes.append(route)

    def drop(self):
        self.refusing = True
        for route in self.routes:
            route.close(code=1012, reason="test")


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_map_controls_neither_cover_one_another_nor_break_words(site, open_page, problems,
                                                                viewport, lang):
    phone = viewport["width"] < 700
    page = open_page("Ana", viewport=viewport, lang=lang, geolocation=SCHOOL)
    gate = SocketGate(page)
    create_room(page, site, "Family", "Ana")
    # "Share my location" is one line at 1280 px, and never broken inside a word.
    assert page.evaluate(BROKEN_WORDS_JS, "#share-toggle, #panel-toggle") == []
    if not phone:
        assert page.evaluate(LINES_JS, ".share-label") == 1
    # With the panel at its tallest, it covers none of the zoom buttons.
    if phone:
        page.locator("#panel-toggle").click()
    page.evaluate("document.querySelectorAll('#panel details').forEach(d => d.open = true)")
    # The controls follow the sheet once it has grown (a ResizeObserver): await it.
    settle(page, [["#panel", ".leaflet-control-zoom"], ["#panel", ".map-buttons"]])

    # Sharing, with a marker card open and a toast up: nothing covers anything.
    if phone:
        page.locator("#panel-toggle").click()  # back to one line
    share(page)
    # A reload: "Still sharing your location." comes up while the card is opened.
    page.reload()
    expect(page.locator("#toast")).to_be_visible()
    page.locator(".gs-pin").first.click()
    expect(page.locator("#marker-card")).to_be_visible()
    pairs = [[a, b] for i, a in enumerate(MAP_CONTROLS) for b in MAP_CONTROLS[i + 1:]
             if not (a == "#marker-card" and b.startswith(".marker-card"))
             and {a, b} != {"#panel", "#share-toggle"}]
    assert overlaps(page, pairs) == []
    expect(page.locator("#toast")).to_be_visible()  # it was up while measured
    assert page.evaluate(BROKEN_WORDS_JS, "#share-toggle, .marker-card") == []

    screenshot(page, f"25-details-controls-{viewport['width']}-{lang}")

    # Reconnecting: "Family" stays whole on one line beside the state and Retry now.
    problems.allow.append("WebSocket")
    gate.drop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#retry-now")).to_be_visible()
    name = page.locator(".room-name")
    assert name.evaluate("(el) => el.scrollWidth <= el.clientWidth")
    assert page.evaluate(LINES_JS, ".room-name") == 1
    assert overlaps(page, [[".room-name", "#connection"], ["#connection", "#retry-now"],
                           [".brand", ".room-name"]]) == []
    screenshot(page, f"25-details-reconnecting-{viewport['width']}-{lang}")
    problems.assert_none()


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_a_long_room_name_keeps_the_top_bar_one_line(site, open_page, problems, viewport,
                                                    lang):
    long_name = ("Weekend at the lake house with the whole family, grandma, "
                 "the two dogs and the neighbours")
    page = open_page("Ana", viewport=viewport, lang=lang)
    create_room(page, site, long_name, "Ana")
    name = page.locator(".room-name")
    assert page.evaluate(LINES_JS, ".room-name") == 1
    assert page.locator(".topbar").bounding_box()["height"] <= 56
    # Cut with an ellipsis, and the whole name in its title.
    assert name.evaluate("(el) => getComputedStyle(el).textOverflow") == "ellipsis"
    expect(name).to_have_attribute("title", long_name)
    assert overlaps(page, [[".topbar", ".map-buttons"], [".topbar", "#panel"]]) == []
    problems.assert_none()


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_the_watch_pages_status_covers_no_zoom_button(site, open_page, problems, viewport,
                                                      lang):
    ana = open_page("Ana", geolocation=SCHOOL)
    create_room(ana, site, "Watch walk", "Ana")
    share(ana)
    url = ana.evaluate("""async () => {
        const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
        const response = await fetch(window.geoshare.config.watchLinksUrl, {
            method: "POST", credentials: "same-origin",
            headers: {"Content-Type": "application/json", "X-CSRFToken": token},
            body: JSON.stringify({minutes: 60}),
        });
        return (await response.json()).url;
    }""")
    watcher = open_page("watcher", viewport=viewport, lang=lang)
    watcher.goto(url)
    expect(watcher.locator(".gs-pin")).to_have_count(1)
    assert overlaps(watcher, [[".watch-panel", ".leaflet-control-zoom"],
                              [".watch-panel", ".leaflet-control-zoom-out"],
                              [".watch-panel", ".topbar"]]) == []
    screenshot(watcher, f"25-details-watch-{viewport['width']}-{lang}")
    problems.assert_none()


# -- item 22 -----------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_leaflets_texts_and_the_owners_times_follow_the_pages_language(site, open_page,
                                                                       problems, viewport):
    # A browser set to English, the page switched to Chinese with the switcher's cookie.
    page = open_page("Olga", viewport=viewport, lang="en")
    page.context.add_cookies([{"name": "django_language", "value": "zh-hans",
                               "url": site.url}])
    create_room(page, site, "周末", "Olga")
    room = room_id(page)
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.locator(".leaflet-control-zoom-in")).to_have_attribute("title", "放大")
    expect(page.locator(".leaflet-control-zoom-out")).to_have_attribute("title", "缩小")
    attribution = page.locator(".leaflet-control-attribution")
    expect(attribution.locator('a[href="https://leafletjs.com"]')).to_have_attribute(
        "title", "一个用于交互式地图的 JavaScript 库")
    expect(attribution).to_contain_text("OpenStreetMap 贡献者")
    assert "contributors" not in attribution.inner_text()
    # The owner's page: the times' tooltips in Chinese, as the page is.
    page.goto(f"{site.url}/r/{room}/manage/")
    time = page.locator("time[data-format]").first
    expect(time).to_have_attribute("title", re.compile("年"))
    problems.assert_none()


# -- item 21 -----------------------------------------------------------------------------

ROOM_WORDS = {
    "en": {"joined": "Bo joined", "sharing": "Bo started sharing", "at": "at School",
           "left": "Bo left the room"},
    "zh": {"joined": "Bo 加入了房间", "sharing": "Bo 开始共享位置", "at": "在School",
           "left": "Bo 离开了房间"},
}


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_the_room_opens_on_its_places_and_tells_who_came_and_where(site, open_page,
                                                                   problems, viewport, lang):
    words = ROOM_WORDS[lang]
    ana = open_page("Ana", viewport=viewport, lang=lang)
    create_room(ana, site, "Family", "Ana")
    room = room_id(ana)
    invite = ana.locator("#invite-url").input_value()
    add_place(ana, "School", SCHOOL["latitude"], SCHOOL["longitude"], radius=150)
    # Nobody shares yet: the room opens on its places, not on the world.
    ana.goto(f"{site.url}/r/{room}/")
    wait_connected(ana)
    wait_for_function(ana, """([lat, lon]) => {
        const map = window.geoshare.map;
        return map.getZoom() >= 13 && map.getBounds().contains([lat, lon]);
    }""", arg=[SCHOOL["latitude"], SCHOOL["longitude"]])
    # The circle carries its name.
    expect(ana.locator(".place-label")).to_have_text("School")

    bo = open_page("Bo", viewport=viewport, lang=lang, geolocation=SCHOOL)
    bo_id = join(bo, invite, "Bo")
    feed = ana.locator("#feed-list")
    expect(feed).to_contain_text(words["joined"])
    share(bo)
    expect(feed).to_contain_text(words["sharing"])
    status = ana.locator(f'#member-list li[data-member-id="{bo_id}"] .member-status')
    expect(status).to_contain_text(words["at"])
    screenshot(ana, f"25-details-room-{viewport['width']}-{lang}")
    # Today's times are times: the feed's line ends in one, not a date.
    assert not re.search(r"20\d\d", feed.inner_text())

    bo.on("dialog", lambda dialog: dialog.accept())
    if viewport["width"] < 700:
        bo.locator("#panel-toggle").click()
    bo.locator("#leave-room").click()
    bo.wait_for_url(re.compile(r"/$"))
    expect(feed).to_contain_text(words["left"])
    problems.assert_none()


HOME_AREA = {"latitude": 46.0569, "longitude": 14.5058}


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_a_room_without_places_opens_on_the_browsers_own_area(site, open_page, problems,
                                                               viewport, lang):
    """No places and nobody sharing: where the browser may already read its location
    (the permission granted), the map opens there, not on the world; it never asks."""
    ana = open_page("Ana", viewport=viewport, lang=lang, geolocation=HOME_AREA)
    create_room(ana, site, "Family", "Ana")
    room = room_id(ana)
    ana.goto(f"{site.url}/r/{room}/")
    wait_connected(ana)
    wait_for_function(ana, """([lat, lon]) => {
        const map = window.geoshare.map;
        return map.getZoom() >= 13 && map.getBounds().contains([lat, lon]);
    }""", arg=[HOME_AREA["latitude"], HOME_AREA["longitude"]])
    assert ana.evaluate("window.geoshare.sharing()") != "on"  # framed, not shared
    problems.assert_none()


# -- item 15 -----------------------------------------------------------------------------

PLACE_WORDS = {"en": {"tap": "Tap the map where the place is.",
                      "click": "Click the map where the place is."},
               "zh": {"tap": "在地图上轻点该地点的位置。", "click": "在地图上点击该地点的位置。"}}


@pytest.mark.parametrize(("viewport", "lang"), CASES)
def test_placing_a_place_frees_the_map_and_brings_the_form_back(site, open_page, problems,
                                                                viewport, lang):
    phone = viewport["width"] < 700
    page = open_page("Ana", viewport=viewport, lang=lang, has_touch=phone)
    create_room(page, site, "Family", "Ana")
    page.evaluate("([lat, lon]) => window.geoshare.map.setView([lat, lon], 16)",
                  [SCHOOL["latitude"], SCHOOL["longitude"]])
    if phone:
        page.locator("#panel-toggle").click()
    page.locator("#places summary").click()
    page.locator("#place-add").click()
    hint = page.locator("#place-hint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text(PLACE_WORDS[lang]["tap" if phone else "click"])
    if phone:
        # The sheet stepped aside: one line, the map free to tap.
        expect(page.locator("#panel")).to_have_attribute("data-open", "false")
    settle(page, [["#place-hint", "#share-toggle"], ["#place-hint", "#panel"],
                  ["#place-hint", ".leaflet-control-zoom"], ["#place-hint", ".map-buttons"]])
    box = page.locator("#map").bounding_box()
    spot = {"x": box["width"] / 2, "y": box["height"] * 0.4}
    if phone:
        page.touchscreen.tap(spot["x"], spot["y"])
    else:
        page.mouse.click(spot["x"], spot["y"])
    # The form is back, in view, and the share was left alone.
    form = page.locator("#place-form")
    expect(form).to_be_visible()
    expect(hint).to_be_hidden()
    expect(page.locator("#panel")).to_have_attribute("data-open", "true")
    assert page.locator("#place-name").evaluate("(el) => document.activeElement === el")
    assert page.evaluate("window.geoshare.sharing()") != "on"
    page.locator("#place-name").fill("School")
    page.locator("#place-save").click()
    wait_for_function(page, "window.geoshare.places().some(p => p.name === 'School')")
    screenshot(page, f"25-details-place-{viewport['width']}-{lang}")
    problems.assert_none()
