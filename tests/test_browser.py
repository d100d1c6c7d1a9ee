"""The map page in a real Chromium, driven the way people use it (issue 4).

The tests share one uvicorn (tests.servers) on a free port, each in rooms of its own;
a test that stops the server or needs other settings starts its own (``make_site``) on
a copy of the same migrated SQLite database. Every test opens fresh browser contexts
and fails on any JavaScript error, console error or failed request other than map
tiles (blocked here: there is no network). Screenshots of each state go to
tests/artifacts/.

Skipped when /usr/bin/chromium is missing; failed instead when CI is set.
"""

import re
import subprocess
import sys

import gpxpy
import pytest
from playwright.sync_api import expect

from tests.browser_helpers import (
    PHONE,
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
    wait_no_marker,
)
from tests.servers import ROOT, gpx_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# Around Cerknica lake; B a little over a kilometre from A.
A_START = {"latitude": 45.77218, "longitude": 14.35766, "accuracy": 12}
A_MOVED = {"latitude": 45.77405, "longitude": 14.36192, "accuracy": 8}
B_HOME = {"latitude": 45.76502, "longitude": 14.35001, "accuracy": 20}


@pytest.fixture
def make_site(tmp_path, template_db):
    """Start a server of the test's own: ``make_site(**env)``; stopped after the test."""
    sites = []

    def make(**env):
        directory = tmp_path / f"site{len(sites)}"
        directory.mkdir()
        site = Site(directory, template_db, **env)
        sites.append(site)
        return site.start()

    yield make
    for site in sites:
        site.stop()


def invite_url_of(page):
    return page.locator("#invite-url").input_value()


def two_members(site, browse, *, a_geo=None, b_geo=None, b_viewport=PHONE):
    """Ana creates a room (desktop), Bo joins by its invite (phone); both connected."""
    ana_page = browse("Ana", geolocation=a_geo)
    create_room(ana_page, site, "Lake walk", "Ana")
    bo_page = browse("Bo", viewport=b_viewport, geolocation=b_geo)
    join_room(bo_page, invite_url_of(ana_page), "Bo")
    ana, bo = member_id(ana_page), member_id(bo_page)
    expect(member_row(ana_page, bo)).to_have_attribute("data-online", "true")
    return ana_page, bo_page, ana, bo


def open_sheet(page):
    """Open the panel if it is closed (a phone's bottom sheet starts as one line)."""
    if page.locator("#panel").get_attribute("data-open") == "false":
        page.get_by_role("button", name=re.compile(r"^People")).click()
    expect(page.locator("#panel-body")).to_be_visible()


# -- 1. invite -------------------------------------------------------------------------


def test_invite_link_brings_a_second_member_onto_the_map(site, browse, problems):
    owner = browse("owner", permissions=["clipboard-read", "clipboard-write"])
    create_room(owner, site, "Lake walk", "Ana")
    screenshot(owner, "1-invite-owner-alone-desktop")

    owner.get_by_role("button", name="Copy invite link").click()
    expect(owner.locator("#toast")).to_have_text("Invite link copied")
    copied = owner.evaluate("navigator.clipboard.readText()")
    assert copied == invite_url_of(owner)
    assert re.fullmatch(rf"{re.escape(site.url)}/join/[A-Za-z0-9_-]{{20,}}/", copied)

    guest = browse("guest", viewport=PHONE)
    guest.goto(copied)
    screenshot(guest, "1-invite-join-page-phone")
    join_room(guest, copied, "Bo")

    ana, bo = member_id(owner), member_id(guest)
    assert ana != bo
    for page in (owner, guest):
        expect(member_row(page, ana)).to_contain_text("Ana")
        expect(member_row(page, bo)).to_contain_text("Bo")
        expect(member_row(page, ana)).to_have_attribute("data-online", "true")
        expect(member_row(page, bo)).to_have_attribute("data-online", "true")
        expect(page.locator("#member-count")).to_have_text("2")
    expect(member_row(guest, bo)).to_contain_text("Bo (you)")
    expect(member_row(owner, bo).locator(".member-status")).to_have_text("Online")
    screenshot(owner, "1-invite-both-desktop")
    screenshot(guest, "1-invite-both-phone")
    problems.assert_none()


# -- 2. live -----------------------------------------------------------------------------

DRAWN_SAMPLER_JS = """
(id) => {
    window.__drawn = [];
    const started = performance.now();
    function sample() {
        const m = window.geoshare.markers()[id];
        if (m) window.__drawn.push(m.drawn[0]);
        if (performance.now() - started < 3000) requestAnimationFrame(sample);
    }
    requestAnimationFrame(sample);
}
"""

SEND_FRAME_JS = """
async (frame) => {
    const url = new URL(window.geoshare.config.socketPath, location.href);
    url.protocol = "ws:";
    // As this page's browser: a share takes positions from its source only.
    url.search = `?browser=${window.geoshare.browserSource.slice("browser:".length)}`;
    const ws = new WebSocket(url);
    await new Promise((resolve) => { ws.onmessage = resolve; });
    ws.send(JSON.stringify({...frame, ts: Date.now()}));
    await new Promise((resolve) => setTimeout(resolve, 300));
    ws.close();
}
"""

FRAME_FROM_POSITION_JS = """
async () => {
    const { frameFromPosition } = await import("/static/maps/js/share.js");
    return frameFromPosition({
        coords: {latitude: 45.5, longitude: 14.5, accuracy: 5, altitude: null,
                 speed: NaN, heading: NaN},
        timestamp: 1763700000000,
    });
}
"""


def test_shared_position_moves_live_on_the_other_map(site, browse, problems):
    a, b, ana, bo = two_members(site, browse, a_geo=A_START, b_geo=B_HOME)
    start_sharing(a)
    expect(a.locator("#share-toggle")).to_have_attribute("aria-pressed", "true")
    expect(a.locator("#share-toggle")).to_contain_text("Sharing")

    wait_marker_at(b, ana, A_START["latitude"], A_START["longitude"])
    shown = marker(b, ana)
    assert shown["accuracy"] == A_START["accuracy"]
    assert shown["heading"] is None  # no heading from a still device: no arrow
    expect(member_row(b, ana)).to_have_attribute("data-sharing", "true")
    expect(b.locator(f'.gs-pin[data-member-id="{ana}"] .gs-name')).to_have_text("Ana")
    screenshot(b, "2-live-first-fix-phone")

    # The same marker element must move: tag it, move A, find the tag again.
    b.evaluate(
        """(id) => {
            window.__notReloaded = true;
            document.querySelector(`.gs-pin[data-member-id="${id}"]`).dataset.probe = "1";
        }""",
        ana,
    )
    b.evaluate(DRAWN_SAMPLER_JS, ana)
    a.context.set_geolocation(A_MOVED)
    elapsed = wait_marker_at(b, ana, A_MOVED["latitude"], A_MOVED["longitude"],
                             timeout=2_000)
    assert elapsed < 2.0
    # Smooth: the marker was drawn on the way, not only at the two fixes.
    b.wait_for_timeout(1_000)
    drawn = b.evaluate("window.__drawn")
    start, end = A_START["latitude"], A_MOVED["latitude"]
    assert any(start + 1e-5 < lat < end - 1e-5 for lat in drawn), drawn
    assert b.evaluate(
        """(id) => window.__notReloaded === true &&
            document.querySelector(`.gs-pin[data-member-id="${id}"]`).dataset.probe === "1"
        """,
        ana,
    ), "the marker was re-created or the page reloaded"
    wait_for_function(
        b, "(id) => window.geoshare.markers()[id].trail >= 2", arg=ana, timeout=2_000
    )
    assert marker(b, ana)["accuracy"] == A_MOVED["accuracy"]

    # Once B shares too, B's list says how far away A is (about 1.3 km).
    start_sharing(b)
    expect(member_row(b, ana).locator(".member-status")).to_contain_text(
        # The list names the share's source (a browser, by its kind: issue 25, item 14).
        re.compile(r"sharing from Chrome · Linux, .* · 1\.[0-9] km")
    )
    # Click to follow (on a phone, the sheet opens first: it starts as one line).
    open_sheet(b)
    member_row(b, ana).get_by_role("button").click()
    expect(member_row(b, ana).get_by_role("button")).to_have_attribute("aria-pressed", "true")
    expect(b.locator("#follow-note")).to_contain_text("Following Ana")
    # A heading, when known, turns into an arrow (a browser frame sent by hand:
    # emulated geolocation has no heading).
    a.evaluate(SEND_FRAME_JS, {"type": "position", "lat": A_MOVED["latitude"],
                               "lon": A_MOVED["longitude"], "heading": 45, "speed": 1.5})
    wait_for_function(
        b, "(id) => window.geoshare.markers()[id].heading === 45", arg=ana, timeout=2_000
    )
    arrow = b.locator(f'.gs-pin[data-member-id="{ana}"] .gs-arrow')
    expect(arrow).to_be_visible()
    expect(arrow).to_have_attribute("style", re.compile(r"rotate\(45deg\)"))
    screenshot(b, "2-live-moved-following-phone")
    # What a browser gives for unknown values (null, NaN) never reaches the wire.
    frame = a.evaluate(FRAME_FROM_POSITION_JS)
    assert frame == {"type": "position", "lat": 45.5, "lon": 14.5, "accuracy": 5,
                     "ts": 1763700000000}
    a.get_by_role("button", name="Fit everyone").click()
    wait_for_function(
        a, "(id) => id in window.geoshare.markers()", arg=bo, timeout=2_000
    )
    screenshot(a, "2-live-two-sharing-desktop")
    problems.assert_none()


# -- 3. stop -------------------------------------------------------------------------------


def test_stopping_removes_the_marker_for_others(site, browse, problems):
    a, b, ana, bo = two_members(site, browse, a_geo=A_START)
    start_sharing(a)
    wait_marker_at(b, ana, A_START["latitude"], A_START["longitude"])

    a.get_by_role("button", name=re.compile(r"Stop")).click()
    expect(a.get_by_role("button", name="Share my location")).to_be_visible()
    assert a.evaluate("window.geoshare.sharing()") == "off"
    wait_no_marker(b, ana, timeout=2_000)
    wait_no_marker(a, ana, timeout=2_000)
    expect(member_row(b, ana)).to_have_attribute("data-sharing", "false")
    expect(member_row(b, ana).locator(".member-status")).to_have_text("Online")
    screenshot(b, "3-stop-marker-gone-phone")
    screenshot(a, "3-stop-share-off-desktop")
    problems.assert_none()


# -- 4. stale ------------------------------------------------------------------------------


def test_member_who_drops_turns_stale_with_last_seen(make_site, browse, problems):
    site = make_site(GEOSHARE_STALE_AFTER_MS=2500)
    a, b, ana, bo = two_members(site, browse, a_geo=A_START)
    start_sharing(a)
    wait_marker_at(b, ana, A_START["latitude"], A_START["longitude"])
    expect(member_row(b, ana)).to_have_attribute("data-stale", "false")

    a.context.close()  # the connection drops; the last position stays on the map
    expect(member_row(b, ana)).to_have_attribute("data-online", "false")
    expect(member_row(b, ana)).to_have_attribute("data-stale", "true", timeout=8_000)
    expect(member_row(b, ana).locator(".member-status")).to_contain_text(
        re.compile(r"Offline · stale, last seen \d+ s ago")
    )
    assert marker(b, ana)["stale"] is True
    expect(b.locator(f'.gs-pin[data-member-id="{ana}"]')).to_have_class(
        re.compile("is-stale")
    )
    expect(b.locator(f'.gs-pin[data-member-id="{ana}"] .gs-ago')).to_contain_text("ago")
    screenshot(b, "4-stale-phone")
    problems.assert_none()


# -- 5. reconnect --------------------------------------------------------------------------


def test_page_reconnects_after_a_server_restart(make_site, browse, problems):
    site = make_site()  # stopped and restarted below: not the shared server
    # While the server is down, Chromium logs each refused WebSocket attempt.
    problems.allow.append(r"WebSocket connection to '.*' failed")
    a, b, ana, bo = two_members(site, browse, a_geo=A_START)
    start_sharing(a)
    wait_marker_at(b, ana, A_START["latitude"], A_START["longitude"])

    site.stop()
    wait_for_function(b, "window.geoshare.connection() === 'reconnecting'", timeout=10_000)
    expect(b.locator("#connection")).to_contain_text("Reconnecting")
    expect(b.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    screenshot(b, "5-reconnect-server-down-phone")

    site.start()  # same port, same database
    wait_connected(b, timeout=30_000)
    wait_connected(a, timeout=30_000)
    expect(b.locator("#connection")).to_have_text("Live")
    wait_marker_at(b, ana, A_START["latitude"], A_START["longitude"])
    expect(member_row(b, ana)).to_have_attribute("data-online", "true")

    a.context.set_geolocation(A_MOVED)
    wait_marker_at(b, ana, A_MOVED["latitude"], A_MOVED["longitude"], timeout=3_000)
    screenshot(b, "5-reconnect-back-phone")
    problems.assert_none()


# -- 6. viewer -----------------------------------------------------------------------------

SEND_POSITION_JS = """
async () => {
    const url = new URL(window.geoshare.config.socketPath, location.href);
    url.protocol = "ws:";
    const ws = new WebSocket(url);
    const reply = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no error frame")), 5000);
        ws.onmessage = (event) => {
            const frame = JSON.parse(event.data);
            if (frame.type === "snapshot") {
                ws.send(JSON.stringify({type: "position", lat: 45.77, lon: 14.36}));
            } else if (frame.type === "error") {
                clearTimeout(timer);
                resolve(frame);
            }
        };
    });
    ws.close();
    return reply;
}
"""


def test_viewer_has_no_share_control_and_cannot_publish(site, browse, problems):
    owner = browse("owner")
    create_room(owner, site, "Lake walk", "Ana")
    owner.get_by_role("link", name="Manage room").click()
    form = owner.locator("#new-invite")
    form.get_by_role("combobox").select_option("viewer")
    form.get_by_role("button", name="Create invite").click()
    viewer_invite = (
        owner.locator("#invites li", has_text="Viewer").first
        .locator("input.invite-url").input_value()
    )
    owner.get_by_role("link", name=re.compile("Back to the map")).click()
    wait_connected(owner)

    viewer = browse("viewer", viewport=PHONE, geolocation=B_HOME)
    join_room(viewer, viewer_invite, "Vera")
    vera = member_id(viewer)
    assert viewer.evaluate("window.geoshare.config.canShare") is False
    expect(viewer.locator("#share-toggle")).to_have_count(0)
    expect(viewer.get_by_role("button", name=re.compile("Share"))).to_have_count(0)
    expect(viewer.locator("#viewer-note")).to_have_text("Viewing only")
    expect(viewer.get_by_role("link", name="Connect a phone")).to_have_count(0)
    expect(viewer.locator("#invite-url")).to_have_count(0)
    assert viewer.evaluate("window.geoshare.sharing()") == "unavailable"

    reply = viewer.evaluate(SEND_POSITION_JS)
    assert reply["code"] == "forbidden"
    viewer.wait_for_timeout(500)  # a tick or more: nothing may have been published
    assert marker(owner, vera) is None
    assert marker(viewer, vera) is None
    expect(member_row(owner, vera).locator(".member-status")).to_contain_text("viewer")
    screenshot(viewer, "6-viewer-phone")
    problems.assert_none()


# -- 7. replay -------------------------------------------------------------------------------

SAMPLER_JS = """
(owner) => {
    window.__samples = [];
    setInterval(() => {
        for (const [id, m] of Object.entries(window.geoshare.markers())) {
            if (Number(id) !== owner) window.__samples.push([m.lat, m.lon]);
        }
    }, 40);
}
"""


def test_replayed_track_travels_with_its_trail(site, browse, problems):
    track = gpx_file("cerknicko-jezero.gpx")
    with open(track, encoding="utf-8") as handle:
        points = [
            (p.latitude, p.longitude)
            for t in gpxpy.parse(handle).tracks for s in t.segments for p in s.points
        ]
    page = browse("watcher")
    create_room(page, site, "Lake walk", "Ana")
    page.evaluate(SAMPLER_JS, member_id(page))

    replay = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "replay_gpx", room_id(page), str(track),
         "--member", "Walker", "--speed", "1000"],
        cwd=ROOT, env=site.project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        row = page.locator("#member-list li", has_text="Walker")
        expect(row).to_have_attribute("data-sharing", "true", timeout=15_000)
        walker = int(row.get_attribute("data-member-id"))
        wait_for_function(
            page, "(id) => (window.geoshare.markers()[id] || {trail: 0}).trail >= 15",
            arg=walker, timeout=15_000,
        )
        page.get_by_role("button", name="Fit everyone").click()
        screenshot(page, "7-replay-underway-desktop")
        out, err = replay.communicate(timeout=60)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
    assert replay.returncode == 0, err
    last = points[-1]
    wait_marker_at(page, walker, last[0], last[1])

    # The marker went along the track, in order.
    samples = page.evaluate("window.__samples")
    index_of = {point: i for i, point in enumerate(points)}
    visited = []
    for lat, lon in samples:
        i = index_of.get((lat, lon))
        assert i is not None, f"the marker left the track: {lat}, {lon}"
        if not visited or visited[-1] != i:
            visited.append(i)
    assert len(visited) >= 20, visited
    assert visited == sorted(visited), "the marker went backwards along the track"
    assert marker(page, walker)["trail"] >= 20
    page.get_by_role("button", name="Fit everyone").click()
    for _ in range(3):  # out far enough to see the whole trail
        page.get_by_role("button", name="Zoom out").click()
        page.wait_for_timeout(300)
    screenshot(page, "7-replay-done-desktop")
    problems.assert_none()


# -- 8. no errors, anywhere ------------------------------------------------------------------


def test_pages_have_no_errors_or_failed_requests(site, browse, problems):
    owner = browse("owner", geolocation=A_START)
    owner.goto(site.url + "/")
    screenshot(owner, "8-home-desktop")
    create_room(owner, site, "Lake walk", "Ana")
    start_sharing(owner)
    owner.get_by_role("button", name="Fit everyone").click()
    owner.get_by_role("button", name=re.compile(r"^People")).click()
    expect(owner.locator("#panel-body")).to_be_hidden()
    owner.get_by_role("button", name=re.compile(r"^People")).click()
    expect(owner.locator("#panel-body")).to_be_visible()
    invite = invite_url_of(owner)

    guest = browse("guest", viewport=PHONE)
    join_room(guest, invite, "Bo")
    ana = member_id(owner)
    wait_marker_at(guest, ana, A_START["latitude"], A_START["longitude"])
    # Usable at 360 px: nothing sticks out sideways; the controls are in view.
    assert guest.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    open_sheet(guest)
    for name in ("Share my location", "Fit everyone", "Copy invite link",
                 "Leave room and erase my data"):
        button = guest.get_by_role("button", name=name)
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], name
    member_row(guest, ana).get_by_role("button").click()
    expect(guest.locator("#follow-note")).to_be_visible()
    guest.get_by_role("button", name="Stop following").click()
    expect(guest.locator("#follow-note")).to_be_hidden()
    screenshot(guest, "8-map-phone")

    third = browse("Cy", viewport=PHONE)
    join_room(third, invite, "Cy")
    cy = member_id(third)

    # The owner's page, then removing Cy: Cy's map says so and stops reconnecting.
    owner.get_by_role("link", name="Manage room").click()
    screenshot(owner, "8-manage-desktop")
    owner.locator("#members li", has_text="Cy").get_by_role(
        "button", name="Remove"
    ).click()
    expect(third.locator("#connection")).to_have_attribute("data-state", "closed")
    expect(third.locator("#notice")).to_contain_text("no longer a member")
    screenshot(third, "8-removed-phone")
    third.wait_for_timeout(1500)
    assert third.evaluate("window.geoshare.connection()") == "closed"
    expect(owner.locator(".messages")).to_contain_text(
        "Cy was removed; the invite link they used was replaced by a new one.")
    # Deleting the room asks first: a listener in manage.js, since the page's
    # Content-Security-Policy runs no inline onsubmit handler. Dismissed, nothing goes.
    questions = []

    def dismiss(dialog):
        questions.append(dialog.message)
        dialog.dismiss()

    owner.once("dialog", dismiss)
    owner.get_by_role("button", name="Delete room").click()
    expect(owner.locator("h1")).to_contain_text("Manage")
    assert questions == ["Delete this room and all its data?"]

    owner.get_by_role("link", name=re.compile("Back to the map")).click()
    wait_connected(owner)
    expect(member_row(owner, cy)).to_have_count(0)

    # Bo leaves and erases their data.
    bo = member_id(guest)
    guest.once("dialog", lambda dialog: dialog.accept())
    guest.get_by_role("button", name="Leave room and erase my data").click()
    guest.wait_for_url(site.url + "/")
    expect(guest.locator(".messages")).to_contain_text("You left “")
    expect(member_row(owner, bo)).to_have_count(0)
    screenshot(owner, "8-after-leave-desktop")
    problems.assert_none()
