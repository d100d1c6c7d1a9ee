"""Error pages: every one in the site's layout, saying what happened and where to go."""

import pytest
from django.test import Client, RequestFactory

from maps.models import Role
from maps.services import member_create, room_create
from maps.web import error_views

pytestmark = pytest.mark.django_db


def _as(client, member):
    session = client.session
    session["members"] = {member.room.public_id: member.pk}
    session.save()


def _styled(response, status, words):
    body = response.content.decode()
    assert response.status_code == status
    assert 'href="/static/maps/css/site.css"' in body or "maps/css/site.css" in body
    assert 'class="site-header"' in body, "not in the site's layout"
    assert words in body
    assert 'href="/"' in body, "says nothing about where to go"
    return body


def test_a_deleted_rooms_map_is_a_styled_not_found_even_with_debug_on(client, settings):
    settings.DEBUG = True
    room, owner = room_create(name="Weekend", owner_name="Olga")
    _as(client, owner)
    url = f"/r/{room.public_id}/"
    assert client.post(f"/r/{room.public_id}/leave/").status_code == 302
    body = _styled(client.get(url), 404, "This room does not exist")
    assert "Traceback" not in body and "Django" not in body
    _styled(client.get(url + "manage/"), 404, "This room does not exist")
    _styled(client.get(url + "connect/"), 404, "This room does not exist")


def test_an_unknown_url_is_a_styled_not_found_with_debug_off(settings):
    settings.DEBUG = False
    client = Client()
    _styled(client.get("/no/such/page/"), 404, "Page not found")


@pytest.mark.parametrize(("view", "status", "words"), [
    (error_views.bad_request, 400, "Bad request"),
    (error_views.forbidden, 403, "Not allowed"),
    (error_views.page_not_found, 404, "Page not found"),
])
def test_django_error_handlers_render_the_styled_page(view, status, words):
    request = RequestFactory().get("/somewhere/")
    _styled(view(request, Exception("x")), status, words)


def test_a_server_error_is_a_styled_page():
    request = RequestFactory().get("/somewhere/")
    _styled(error_views.server_error(request), 500, "Something went wrong")


def test_the_handlers_are_installed(settings):
    from geoshare import urls

    assert urls.handler404 == "maps.web.error_views.page_not_found"
    assert urls.handler500 == "maps.web.error_views.server_error"
    assert urls.handler403 == "maps.web.error_views.forbidden"
    assert settings.CSRF_FAILURE_VIEW == "maps.web.error_views.csrf_failure"


def test_a_refused_csrf_check_is_a_styled_page():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/", {"name": "x", "your_name": "y"})
    _styled(response, 403, "The form expired")


def test_too_many_rooms_is_a_styled_page(client, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "RATE_LIMITS": {
        **settings.GEOSHARE["RATE_LIMITS"], "room": (0, 60)}}
    response = client.post("/", {"name": "Trip", "your_name": "Olga"})
    _styled(response, 429, "Too many")


def test_deleting_the_room_says_the_room_was_deleted(client):
    room, owner = room_create(name="Weekend", owner_name="Olga")
    _as(client, owner)
    response = client.post(f"/r/{room.public_id}/leave/", follow=True)
    text = response.content.decode()
    assert "The room “Weekend” and all its data were deleted." in text
    assert "You left" not in text


def test_leaving_says_you_left(client):
    room, _ = room_create(name="Weekend", owner_name="Olga")
    ana, _key = member_create(room=room, name="Ana", role=Role.MEMBER)
    _as(client, ana)
    response = client.post(f"/r/{room.public_id}/leave/", follow=True)
    assert "You left “Weekend”; your positions were erased." in response.content.decode()
