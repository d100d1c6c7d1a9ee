"""Rooms, invites and members in maps.services: removal, names, limits."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from maps import services
from maps.models import Invite, Member, Position, Role
from maps.services import invite_create, invite_redeem, member_remove
from maps.services.names import clean_name

pytestmark = pytest.mark.django_db


# -- removal keeps people out ---------------------------------------------------------


def test_removed_member_cannot_rejoin_with_the_invite_they_came_by(room):
    expires = timezone.now() + timedelta(days=2)
    invite = invite_create(room=room, role=Role.MEMBER, expires_at=expires, max_uses=5,
                           label="Grandparents")
    ana = invite_redeem(token=invite.token, name="Ana")
    bo = invite_redeem(token=invite.token, name="Bo")

    (replacement,) = member_remove(member=ana, replace_invite=True)

    invite.refresh_from_db()
    assert invite.revoked
    with pytest.raises(services.InviteUnusable):
        invite_redeem(token=invite.token, name="Ana again")
    assert (replacement.role, replacement.expires_at, replacement.max_uses) == (
        Role.MEMBER, expires, 5)
    assert replacement.label == "Grandparents"  # a replaced invite keeps its label
    assert replacement.is_usable() and replacement.token != invite.token
    # Bo came by the same link and stays; the replacement now stands for that link.
    bo.refresh_from_db()
    assert bo.invite == replacement
    assert not Member.objects.filter(pk=ana.pk).exists()
    assert invite_redeem(token=replacement.token, name="Cy").room == room


def test_removal_also_replaces_the_link_the_map_showed_them(room):
    shown = invite_create(room=room)  # the room's first member invite: the map's link
    personal = invite_create(room=room, max_uses=2)
    ana = invite_redeem(token=personal.token, name="Ana")

    own, map_link = member_remove(member=ana, replace_invite=True)

    shown.refresh_from_db()
    personal.refresh_from_db()
    assert shown.revoked and personal.revoked
    assert (own.max_uses, map_link.max_uses) == (2, None)
    assert sorted(i.pk for i in room.invites.all() if i.is_usable()) == [own.pk, map_link.pk]


def test_a_used_up_invite_needs_no_replacement(room):
    shown = invite_create(room=room)
    personal = invite_create(room=room, max_uses=1)
    ana = invite_redeem(token=personal.token, name="Ana")

    (map_link,) = member_remove(member=ana, replace_invite=True)

    shown.refresh_from_db()
    assert shown.revoked and map_link.max_uses is None


def test_removed_viewer_rotates_only_their_own_link(room):
    shown = invite_create(room=room)
    viewers = invite_create(room=room, role=Role.VIEWER)
    vera = invite_redeem(token=viewers.token, name="Vera")

    (replacement,) = member_remove(member=vera, replace_invite=True)

    shown.refresh_from_db()
    assert not shown.revoked  # viewers are never shown the member link
    assert replacement.role == Role.VIEWER


def test_member_leaving_by_themselves_rotates_nothing(room):
    invite = invite_create(room=room)
    ana = invite_redeem(token=invite.token, name="Ana")

    assert member_remove(member=ana) == []

    invite.refresh_from_db()
    assert not invite.revoked
    assert room.invites.count() == 1


def test_removing_a_member_without_invite_replaces_only_the_map_link(room, member):
    shown = invite_create(room=room)
    member_remove(member=member, replace_invite=True)
    shown.refresh_from_db()
    assert shown.revoked
    assert room.invites.filter(revoked=False).count() == 1


def test_removal_sends_the_kick_event(room, member):
    member_pk = member.pk
    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        member_remove(member=member, replace_invite=True)
    event.assert_any_call(room.pk, {"type": "room.kick", "member": member_pk})


def test_revoking_an_invite_stops_new_joins_and_removes_nobody(room):
    shown = invite_create(room=room)
    group = invite_create(room=room, label="Grandparents")
    ana = invite_redeem(token=group.token, name="Ana")
    bo = invite_redeem(token=group.token, name="Bo")

    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        services.invite_revoke(invite=group)

    group.refresh_from_db()
    shown.refresh_from_db()
    assert group.revoked and group.label == "Grandparents"
    with pytest.raises(services.InviteUnusable):
        invite_redeem(token=group.token, name="Cy")
    # Everyone stays, on the invite they joined by; no other link changes; nobody hears.
    assert set(Member.objects.filter(invite=group).values_list("pk", flat=True)) == {
        ana.pk, bo.pk}
    assert not shown.revoked
    assert room.invites.count() == 2
    event.assert_not_called()


def test_revoking_the_replacement_of_a_link_removes_nobody_either(room):
    """Removing one member moves the others to a replacement: revoking that keeps them."""
    group = invite_create(room=room, label="Grandparents")
    ana = invite_redeem(token=group.token, name="Ana")
    bo = invite_redeem(token=group.token, name="Bo")
    cy = invite_redeem(token=group.token, name="Cy")

    (replacement,) = member_remove(member=ana, replace_invite=True)
    services.invite_revoke(invite=replacement)

    assert replacement.label == "Grandparents"
    assert set(Member.objects.filter(invite=replacement).values_list("pk", flat=True)) == {
        bo.pk, cy.pk}


def test_removing_everyone_who_joined_with_a_link_replaces_each_link_once(room):
    shown = invite_create(room=room)
    group = invite_create(room=room, label="Grandparents", max_uses=5)
    ana = invite_redeem(token=group.token, name="Ana")
    bo = invite_redeem(token=group.token, name="Bo")
    stays = invite_redeem(token=shown.token, name="Dana")
    gone = {ana.pk, bo.pk}

    with mock.patch("maps.services.publish.room_event_on_commit") as event:
        own, map_link = services.members_remove(members=[ana, bo])

    assert not Member.objects.filter(pk__in=gone).exists()
    kicked = {c.args[1]["member"] for c in event.call_args_list
              if c.args[1]["type"] == "room.kick"}
    assert kicked == gone
    assert (own.label, own.max_uses, map_link.max_uses) == ("Grandparents", 5, None)
    assert sorted(i.pk for i in room.invites.all() if i.is_usable()) == [own.pk, map_link.pk]
    stays.refresh_from_db()
    assert stays.invite == map_link


def test_removing_people_of_a_revoked_link_replaces_only_the_map_link(room):
    shown = invite_create(room=room)
    group = invite_create(room=room)
    ana = invite_redeem(token=group.token, name="Ana")
    services.invite_revoke(invite=group)

    (map_link,) = services.members_remove(members=[ana])

    shown.refresh_from_db()
    assert shown.revoked and map_link.is_usable()
    assert services.members_remove(members=[]) == []


# -- retention -----------------------------------------------------------------------


def test_retention_deletes_counts_what_a_lower_retention_would_delete(room, member):
    now = timezone.now()
    for age_days in (0, 2, 5, 9):
        Position.objects.create(member=member, lat=1, lon=2, device_time=now,
                                received=now - timedelta(days=age_days, minutes=1))
    assert services.room_retention_deletes(room=room, days=7, now=now) == 1
    assert services.room_retention_deletes(room=room, days=3, now=now) == 2
    assert services.room_retention_deletes(room=room, days=0, now=now) == 4
    # What it counts is what setting it deletes.
    assert services.room_set_retention(room=room, days=3) == 2


# -- invite limit -----------------------------------------------------------------------


def test_a_room_holds_a_limited_number_of_usable_invites(room, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "MAX_INVITES_PER_ROOM": 3}
    first = invite_create(room=room)
    invite_create(room=room)
    invite_create(room=room)
    with pytest.raises(services.TooManyInvites, match="3 usable invites"):
        invite_create(room=room)
    # Unusable invites do not count; and a removal's replacement is always made.
    Invite.objects.filter(pk=first.pk).update(revoked=True)
    invite_create(room=room)
    ana = invite_redeem(token=room.invites.filter(revoked=False).first().token, name="Ana")
    assert member_remove(member=ana, replace_invite=True)


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Ana\u202e", "Ana"),  # RIGHT-TO-LEFT OVERRIDE
        ("\u202aAna\u202c", "Ana"),  # LRE ... PDF
        ("\u2066Ana\u2069", "Ana"),  # LRI ... PDI
        ("A\u200dna\u200c", "Ana"),  # zero-width joiner, non-joiner
        ("\u200eAna\u200f", "Ana"),  # LRM, RLM
        ("Ana\u061c", "Ana"),  # ARABIC LETTER MARK
        ("An\u200ba\ufeff", "Ana"),  # zero-width space, BOM
        ("Ana\x00\x07", "Ana"),  # C0 controls
        ("Ana\tvon\n\u2028Berg", "Ana von Berg"),  # whitespace collapsed, not glued
        ("Ana \u200b Berg", "Ana Berg"),
        ("A\u0301na", "\u00c1na"),  # NFC
    ],
)
def test_names_lose_invisible_and_bidi_characters(raw, clean):
    assert clean_name(raw) == clean


def test_a_name_of_only_invisible_characters_is_refused(room):
    with pytest.raises(ValueError, match="name is required"):
        services.member_create(room=room, name="\u202e\u200d\u2066")


def test_room_names_are_cleaned_too(db):
    room, owner = services.room_create(name="Ski\u202e trip\u2069", owner_name="O\u200bla")
    assert (room.name, owner.name) == ("Ski trip", "Ola")


@pytest.mark.parametrize("taken", ["Olga", "olga", "OLGA", " Olga ", "Ol\u200bga", "Olga\u202e"])
def test_a_member_cannot_take_the_owners_name(room, owner, taken):
    invite = invite_create(room=room)
    with pytest.raises(services.NameTaken, match="already"):
        invite_redeem(token=invite.token, name=taken)
    invite.refresh_from_db()
    assert invite.uses == 0  # a refused name does not spend a use


def test_member_names_are_unique_case_insensitively(room, member):
    with pytest.raises(services.NameTaken):
        services.member_create(room=room, name="ANA")
    with pytest.raises(services.NameTaken):
        services.member_create(room=room, name="ana")
    # Unicode case folding, not only ASCII: "STRASSE" and "straße" are one name.
    services.member_create(room=room, name="Straße")
    with pytest.raises(services.NameTaken):
        services.member_create(room=room, name="STRASSE")
    # The same name in another room is fine.
    elsewhere, _ = services.room_create(name="Elsewhere", owner_name="Eve")
    assert services.member_create(room=elsewhere, name="Ana")[0].name == "Ana"


def test_the_database_refuses_a_duplicate_name_that_slipped_past_the_check(room, member):
    """Two redemptions at once both pass the check; the constraint stops the second."""
    invite = invite_create(room=room)
    with mock.patch("maps.services.rooms._name_taken", return_value=False), \
            pytest.raises(services.NameTaken):
        invite_redeem(token=invite.token, name="aNA")
    invite.refresh_from_db()
    assert invite.uses == 0
    assert Member.objects.filter(room=room).count() == 2
