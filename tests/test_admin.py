"""The Django admin deletes through the services, as the owner's page does."""

from unittest import mock

import pytest

from maps.models import Invite, Member, Room
from maps.services import invite_create, invite_redeem

pytestmark = pytest.mark.django_db


def test_admin_deleting_a_member_kicks_them_and_replaces_their_link(admin_client, room):
    invite = invite_create(room=room)
    ana = invite_redeem(token=invite.token, name="Ana")
    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        response = admin_client.post(f"/admin/maps/member/{ana.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Member.objects.filter(pk=ana.pk).exists()
    event.assert_any_call(room.pk, {"type": "room.kick", "member": ana.pk})
    invite.refresh_from_db()
    assert invite.revoked
    assert room.invites.filter(revoked=False).count() == 1


def test_admin_bulk_delete_of_members_kicks_each(admin_client, room, member, other):
    invite = invite_create(room=room)
    ana = invite_redeem(token=invite.token, name="Cy")
    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        response = admin_client.post("/admin/maps/member/", {
            "action": "delete_selected", "_selected_action": [member.pk, ana.pk],
            "post": "yes"})
    assert response.status_code == 302
    assert not Member.objects.filter(pk__in=[member.pk, ana.pk]).exists()
    assert Member.objects.filter(pk=other.pk).exists()
    kicked = {c.args[1]["member"] for c in event.call_args_list
              if c.args[1]["type"] == "room.kick"}
    assert kicked == {member.pk, ana.pk}
    invite.refresh_from_db()
    assert invite.revoked
    assert room.invites.filter(revoked=False).count() == 1


def test_admin_deleting_a_room_closes_its_sockets(admin_client, room, member):
    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        response = admin_client.post(f"/admin/maps/room/{room.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Room.objects.filter(pk=room.pk).exists()
    assert not Member.objects.filter(pk=member.pk).exists()
    event.assert_called_once_with(room.pk, {"type": "room.deleted"})


def test_admin_bulk_delete_of_rooms_closes_each(admin_client, room, stranger_and_key):
    elsewhere = stranger_and_key[0].room
    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        response = admin_client.post("/admin/maps/room/", {
            "action": "delete_selected", "_selected_action": [room.pk, elsewhere.pk],
            "post": "yes"})
    assert response.status_code == 302
    assert not Room.objects.exists() and not Invite.objects.exists()
    assert sorted(c.args for c in event.call_args_list) == sorted([
        (room.pk, {"type": "room.deleted"}), (elsewhere.pk, {"type": "room.deleted"})])


def test_admin_revoking_or_deleting_an_invite_removes_nobody(admin_client, room):
    invite = invite_create(room=room)
    ana = invite_redeem(token=invite.token, name="Ana")
    response = admin_client.post(f"/admin/maps/invite/{invite.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Invite.objects.filter(pk=invite.pk).exists()
    ana.refresh_from_db()
    assert ana.invite is None


def test_admin_bulk_delete_of_a_links_people_replaces_the_link_once(admin_client, room):
    invite = invite_create(room=room, label="Grandparents")
    ana = invite_redeem(token=invite.token, name="Ana")
    bo = invite_redeem(token=invite.token, name="Bo")
    response = admin_client.post("/admin/maps/member/", {
        "action": "delete_selected", "_selected_action": [ana.pk, bo.pk], "post": "yes"})
    assert response.status_code == 302
    (replacement,) = room.invites.filter(revoked=False)
    assert replacement.label == "Grandparents"
    assert room.invites.count() == 2
