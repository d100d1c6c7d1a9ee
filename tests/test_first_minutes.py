"""The first five minutes: `make run`'s steps on a free port (migrate, the demo
command, the server), then the printed owner link in Chromium, and the demo walker's
marker moving with no other step. And the demo command on its own."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect, sync_playwright

from maps.models import Member, SignInLink
from maps.ops.demo import WALKER_NAME, track_points
from tests.browser_helpers import (
    CHROMIUM_ARGS,
    DESKTOP,
    TILE_PATTERN,
    PageProblems,
    chromium_or_skip,
    screenshot,
    wait_connected,
    wait_for_function,
)
from tests.servers import Project, Uvicorn, free_port

OWNER_LINK = re.compile(r"http://127\.0\.0\.1:\d+/signin/[A-Za-z0-9_-]+/")


@pytest.mark.django_db
def test_demo_command_prints_a_one_time_owner_link_and_a_track_in_the_repository(capsys):
    call_command("demo", "--port", "8123")
    out = capsys.readouterr().out
    assert OWNER_LINK.search(out)
    assert "maps/ops/demo_data/park-loop.gpx" in out and "../shared" not in out
    link = SignInLink.objects.get()
    assert link.member.role == "owner" and link.member.room.name == "Demo room"
    assert Member.objects.filter(name=WALKER_NAME).count() == 1
    call_command("demo", "--port", "8123")  # again: the same room, a new link
    assert Member.objects.filter(name=WALKER_NAME).count() == 1
    assert SignInLink.objects.count() == 2


def test_the_demo_track_ships_with_the_project_as_a_loop():
    points = track_points()
    assert len(points) > 100
    (lat0, lon0), (lat1, lon1) = points[0], points[-1]
    assert abs(lat0 - lat1) < 0.0005 and abs(lon0 - lon1) < 0.0005


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_make_run_steps_print_an_owner_link_and_the_walker_moves(tmp_path):
    executable = chromium_or_skip()
    port = free_port()
    project = Project(tmp_path, GEOSHARE_DEMO_STEP_MS=500).migrate()
    out = project.manage("demo", "--host", "127.0.0.1", "--port", str(port))
    link = OWNER_LINK.search(out).group(0)
    assert f":{port}/" in link
    server = Uvicorn(project, port=port).start()
    problems = PageProblems()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable,
                                                 args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=DESKTOP, locale="en-GB")
            context.route(TILE_PATTERN, lambda route: route.abort("internetdisconnected"))
            page = problems.watch(context.new_page(), "newcomer")
            page.goto(link)
            page.get_by_role("button", name="Sign in as Demo owner").click()
            wait_connected(page)
            assert page.evaluate("window.geoshare.config.isOwner") is True
            first = wait_for_function(page, """() => {
                const m = Object.values(window.geoshare.markers());
                return m.length ? [m[0].lat, m[0].lon] : null; }""", timeout=10_000)
            wait_for_function(page, """([lat, lon]) => {
                const m = Object.values(window.geoshare.markers());
                return m.length && (m[0].lat !== lat || m[0].lon !== lon); }""",
                              arg=first, timeout=10_000)
            expect(page.locator("#member-list")).to_contain_text(WALKER_NAME)
            screenshot(page, "12-first-minutes-demo")
            browser.close()
    finally:
        server.stop()
    problems.assert_none()


#: Run by ``manage.py shell`` in a project: the ASGI lifespan that uvicorn drives, started
#: and stopped; prints whether a demo walker task ran in between, then the positions
#: stored (none, with the walker off).
LIFESPAN = """
import asyncio
from geoshare.asgi import lifespan
from maps.models import LivePosition, Position

async def main():
    inbox, told = asyncio.Queue(), asyncio.Queue()
    running = asyncio.create_task(lifespan({"type": "lifespan"}, inbox.get, told.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await told.get())["type"] == "lifespan.startup.complete"
    tasks = [task.get_coro().__qualname__ for task in asyncio.all_tasks()]
    print("walker task:", "demo_walker" in tasks)
    await inbox.put({"type": "lifespan.shutdown"})
    await running

asyncio.run(main())
print(Position.objects.count() + LivePosition.objects.count())
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_demo_walker_can_be_turned_off(tmp_path):
    port = free_port()
    project = Project(tmp_path, GEOSHARE_DEMO_STEP_MS=200, GEOSHARE_DEMO_WALKER=0).migrate()
    out = project.manage("demo", "--port", str(port))
    assert "GEOSHARE_DEMO_WALKER=0" in out
    # Off is a state, not a quiet spell: once the lifespan has started (uvicorn serves
    # only after), no walker task runs, so nothing is ever stored.
    *_, walker, count = project.manage("shell", "-c", LIFESPAN).strip().splitlines()
    assert walker == "walker task: False"
    assert count == "0"
    # The same look sees the walker when it is on.
    project.env["GEOSHARE_DEMO_WALKER"] = "1"
    assert "walker task: True" in project.manage("shell", "-c", LIFESPAN)
