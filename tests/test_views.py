"""Pages: create a room, join by invite, the map, the owner's page."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from maps.models import Invite, Member, Position, Role, Room
from maps.services import invite_create

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}


def test_home_creates_room_and_owner_lands_on_map(client):
    response = client.post("/", {"name": "Ski trip", "your_name": "Olga"})
    room = Room.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/r/{room.public_id}/"
    owner = room.members.get()
    assert (owner.name, owner.role) == ("Olga", Role.OWNER)
    page = client.get(f"/r/{room.public_id}/")
    assert page.status_code == 200
    assert page.context["config"]["memberId"] == owner.pk
    assert page.context["config"]["inviteUrl"].endswith(room.invites.get().path())
    assert b"leaflet/leaflet.js" in page.content
    assert client.get("/").context["rooms"] == [(room, owner)]


def test_room_ids_and_tokens_are_unguessable(room):
    invite = invite_create(room=room)
    assert len(room.public_id) >= 16 and len(invite.token) >= 32


def test_invite_link_joins_with_a_name(client, room):
    invite = invite_create(room=room)
    page = client.get(invite.path())
    assert page.status_code == 200 and b"Ski trip" in page.content
    response = client.post(invite.path(), {"name": "  Ana  "})
    assert response.status_code == 302
    member = Member.objects.get(name="Ana")
    assert (member.room, member.role, member.invite) == (room, Role.MEMBER, invite)
    assert client.session["members"] == {room.public_id: member.pk}
    assert client.get(f"/r/{room.public_id}/").status_code == 200
    invite.refresh_from_db()
    assert invite.uses == 1


def test_viewer_invite_gives_no_share_control(client, room):
    invite = invite_create(room=room, role=Role.VIEWER)
    client.post(invite.path(), {"name": "Vera"})
    config = client.get(f"/r/{room.public_id}/").context["config"]
    assert config["role"] == "viewer" and config["canShare"] is False
    # Not even the member invite link: a viewer must not be able to promote itself.
    assert config["inviteUrl"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"revoked": True},
        {"expires_at": timezone.now() - timedelta(seconds=1)},
        {"max_uses": 1, "uses": 1},
    ],
)
def test_unusable_invite_admits_nobody(client, room, change):
    invite = invite_create(room=room)
    Invite.objects.filter(pk=invite.pk).update(**change)
    assert client.get(invite.path()).status_code == 404
    assert client.post(invite.path(), {"name": "Ana"}).status_code == 404
    assert not Member.objects.filter(name="Ana").exists()


def test_stranger_cannot_open_map_or_manage(client, room):
    assert client.get(f"/r/{room.public_id}/").status_code == 403
    assert client.get(f"/r/{room.public_id}/manage/").status_code == 403
    assert client.get("/r/nope/").status_code == 404


def _as_owner(client, room, owner):
    session = client.session
    session["members"] = {room.public_id: owner.pk}
    session.save()


def test_owner_creates_and_revokes_invites_and_removes_members(client, room, owner, member):
    _as_owner(client, room, owner)
    assert client.get(f"/r/{room.public_id}/manage/").status_code == 200
    client.post(f"/r/{room.public_id}/manage/", {
        "action": "invite", "invite-role": "viewer", "invite-expires_in_hours": "2",
        "invite-max_uses": "3"})
    invite = room.invites.get(role=Role.VIEWER)
    assert invite.max_uses == 3 and invite.expires_at > timezone.now()
    joined = invite_create(room=room)
    guest = Member.objects.create(room=room, name="Guest", color="#000000", invite=joined)
    client.post(f"/r/{room.public_id}/manage/", {"action": "revoke", "invite": joined.pk})
    joined.refresh_from_db()
    # Revoking stops new joins and nothing else (issue 25, item 11).
    assert joined.revoked and Member.objects.filter(pk=guest.pk).exists()
    client.post(f"/r/{room.public_id}/manage/", {"action": "remove", "member": member.pk})
    assert not Member.objects.filter(pk=member.pk).exists()
    # The owner cannot be removed this way.
    client.post(f"/r/{room.public_id}/manage/", {"action": "remove", "member": owner.pk})
    assert Member.objects.filter(pk=owner.pk).exists()


def test_member_cannot_manage(client, room, member):
    _as_owner(client, room, member)
    assert client.get(f"/r/{room.public_id}/manage/").status_code == 403


def test_admin_lists_every_model(admin_client):
    for model in ("room", "invite", "member", "position"):
        assert admin_client.get(f"/admin/maps/{model}/").status_code == 200


# -- removal keeps people out (docs/security.md) --------------------------------------


def _join(client, invite, name):
    response = client.post(invite.path(), {"name": name})
    assert response.status_code == 302, response.content
    return Member.objects.get(room=invite.room, name=name)


def test_member_removed_on_manage_page_cannot_rejoin_and_the_others_get_a_new_link(
    client, room, owner
):
    invite = room.invites.create(role=Role.MEMBER)  # the link every member's map shows
    ana_browser, bo_browser = Client(), Client()
    ana = _join(ana_browser, invite, "Ana")
    bo = _join(bo_browser, invite, "Bo")
    assert bo_browser.get(f"/r/{room.public_id}/").context["config"]["inviteUrl"].endswith(
        invite.path())
    _as_owner(client, room, owner)

    response = client.post(f"/r/{room.public_id}/manage/",
                           {"action": "remove", "member": ana.pk}, follow=True)

    assert response.status_code == 200
    assert ("Ana was removed; the invite link they used was replaced by a new one."
            in response.content.decode())
    assert not Member.objects.filter(pk=ana.pk).exists()
    assert ana_browser.get(invite.path()).status_code == 404
    assert ana_browser.post(invite.path(), {"name": "Ana"}).status_code == 404
    assert not Member.objects.filter(name="Ana").exists()
    # Bo stays, and his map now offers a link that works.
    assert Member.objects.filter(pk=bo.pk).exists()
    new_url = bo_browser.get(f"/r/{room.public_id}/").context["config"]["inviteUrl"]
    assert not new_url.endswith(invite.path())
    token = new_url.rstrip("/").rsplit("/", 1)[1]
    assert Invite.objects.get(token=token).is_usable()
    assert Client().get(new_url).status_code == 200


def test_member_who_leaves_does_not_change_the_link(client, room):
    invite = room.invites.create(role=Role.MEMBER)
    _join(client, invite, "Ana")
    client.post(f"/r/{room.public_id}/leave/")
    invite.refresh_from_db()
    assert not invite.revoked and room.invites.count() == 1


# -- revoking a link and removing its people are two steps (issue 25, item 11) ----------


def test_revoking_an_invite_on_the_manage_page_removes_nobody(client, room, owner):
    invite = invite_create(room=room, label="Grandparents")
    ana = _join(Client(), invite, "Ana")
    _as_owner(client, room, owner)

    response = client.post(f"/r/{room.public_id}/manage/",
                           {"action": "revoke", "invite": invite.pk}, follow=True)

    text = response.content.decode()
    assert "Invite revoked: it lets nobody new in. Whoever joined with it stays." in text
    assert Member.objects.filter(pk=ana.pk).exists()
    invite.refresh_from_db()
    assert invite.revoked
    # The revoked link, folded away, still names its people and offers to remove them.
    spent = response.context["spent_invites"]
    assert [row["joined"] for row in spent] == [[ana]]
    assert "Joined with this link (1):" in text and "Remove this person…" in text


def test_removing_the_people_of_a_link_asks_first_and_names_them(client, room, owner):
    invite = invite_create(room=room, label="Grandparents")
    people = [_join(Client(), invite, name) for name in ("Ana", "Bo", "Cy")]
    _as_owner(client, room, owner)
    page = client.get(f"/r/{room.public_id}/manage/").content.decode()
    assert "Joined with this link (3):" in page and "Ana, Bo, Cy" in page
    assert "Remove these 3 people…" in page

    asked = client.post(f"/r/{room.public_id}/manage/",
                        {"action": "remove_joined", "invite": invite.pk})

    assert asked.status_code == 200
    text = asked.content.decode()
    assert "Remove the 3 people who joined with this link: Ana, Bo, Cy?" in text
    assert "Remove 3 people" in text and 'name="confirm" value="yes"' in text
    assert Member.objects.filter(pk__in=[m.pk for m in people]).count() == 3
    invite.refresh_from_db()
    assert not invite.revoked
    # Someone joins between the question and the answer: not named, so not removed.
    late = _join(Client(), invite, "Dee")

    done = client.post(f"/r/{room.public_id}/manage/", {
        "action": "remove_joined", "invite": invite.pk, "confirm": "yes",
        "member": [m.pk for m in people]}, follow=True)

    assert ("Removed 3 people: Ana, Bo, Cy; the links they knew were replaced by new ones."
            in done.content.decode())
    assert not Member.objects.filter(pk__in=[m.pk for m in people]).exists()
    late.refresh_from_db()
    invite.refresh_from_db()
    assert invite.revoked  # they knew it: replaced once, keeping its label
    assert late.invite.label == "Grandparents" and late.invite.is_usable()
    assert Member.objects.filter(pk=owner.pk).exists()


def test_removing_the_people_of_a_link_never_removes_the_owner(client, room, owner):
    invite = invite_create(room=room)
    owner.invite = invite
    owner.save(update_fields=["invite"])
    _as_owner(client, room, owner)
    response = client.post(f"/r/{room.public_id}/manage/",
                           {"action": "remove_joined", "invite": invite.pk}, follow=True)
    assert "Nobody who joined with this link is in the room." in response.content.decode()
    client.post(f"/r/{room.public_id}/manage/", {
        "action": "remove_joined", "invite": invite.pk, "confirm": "yes",
        "member": [owner.pk]})
    assert Member.objects.filter(pk=owner.pk).exists()


@pytest.mark.parametrize("bad", ["abc", "-1", "9" * 30, ""])
def test_removing_the_people_of_a_link_refuses_a_malformed_id(client, room, owner, member,
                                                              bad):
    invite = invite_create(room=room)
    _as_owner(client, room, owner)
    response = client.post(f"/r/{room.public_id}/manage/", {
        "action": "remove_joined", "invite": invite.pk, "confirm": "yes",
        "member": [member.pk, bad]})
    assert response.status_code == 400 and "member" in response.content.decode()
    assert Member.objects.filter(pk=member.pk).exists()


def test_the_confirmation_to_remove_a_links_people_in_chinese(client, room, owner):
    invite = invite_create(room=room)
    for name in ("Ana", "Bo"):
        _join(Client(), invite, name)
    _as_owner(client, room, owner)
    page = client.get(f"/r/{room.public_id}/manage/", **ZH).content.decode()
    assert "通过此链接加入（2）：" in page and "Ana、Bo" in page and "移除这 2 个人…" in page
    asked = client.post(f"/r/{room.public_id}/manage/",
                        {"action": "remove_joined", "invite": invite.pk}, **ZH)
    text = asked.content.decode()
    assert "移除通过此链接加入的 2 个人：Ana、Bo？" in text and "移除 2 个人" in text
    assert "Remove" not in text
    revoked = client.post(f"/r/{room.public_id}/manage/",
                          {"action": "revoke", "invite": invite.pk}, follow=True, **ZH)
    assert "邀请已撤销：不再有人能通过它加入。已加入的人会留下。" in revoked.content.decode()


# -- lowering the retention asks before it deletes history (issue 25, item 17) --------


def _positions(member, *ages_days):
    now = timezone.now()
    for age in ages_days:
        Position.objects.create(member=member, lat=1, lon=2, device_time=now,
                                received=now - timedelta(days=age, minutes=1))


def test_setting_retention_to_0_asks_first_and_deletes_nothing_until_confirmed(
    client, room, owner, member
):
    _positions(member, 0, 1, 3)
    _as_owner(client, room, owner)
    form = {"action": "retention", "retention-retention_days": "0"}

    asked = client.post(f"/r/{room.public_id}/manage/", form)

    assert asked.status_code == 200
    text = asked.content.decode()
    assert "Keep no history from now on?" in text
    assert "This deletes all 3 positions of the room&#x27;s history now" in text
    assert "Delete 3 positions" in text
    room.refresh_from_db()
    assert room.retention_days == 7 and Position.objects.count() == 3

    done = client.post(f"/r/{room.public_id}/manage/", {**form, "confirm": "yes"})

    assert done.status_code == 302
    room.refresh_from_db()
    assert room.retention_days == 0 and Position.objects.count() == 0


def test_lowering_retention_names_how_many_positions_go(client, room, owner, member):
    _positions(member, 0, 1, 3, 5)
    _as_owner(client, room, owner)
    asked = client.post(f"/r/{room.public_id}/manage/",
                        {"action": "retention", "retention-retention_days": "2"})
    text = asked.content.decode()
    assert "Keep 2 days of history?" in text
    assert "This deletes 2 positions older than that now, for good." in text
    assert 'name="retention-retention_days" value="2"' in text
    assert Position.objects.count() == 4


def test_a_retention_change_that_deletes_nothing_needs_no_confirmation(
    client, room, owner, member
):
    _positions(member, 0, 1)
    _as_owner(client, room, owner)
    for days in ("30", "2"):
        response = client.post(f"/r/{room.public_id}/manage/",
                               {"action": "retention", "retention-retention_days": days})
        assert response.status_code == 302
        room.refresh_from_db()
        assert room.retention_days == int(days)
    assert Position.objects.count() == 2


def test_the_retention_question_in_chinese(client, room, owner, member):
    _positions(member, 0, 1)
    _as_owner(client, room, owner)
    asked = client.post(f"/r/{room.public_id}/manage/",
                        {"action": "retention", "retention-retention_days": "0"}, **ZH)
    text = asked.content.decode()
    assert "从现在起不保留历史记录？" in text and "删除 2 个位置" in text
    assert "Keep no history" not in text


def test_a_live_only_room_offers_no_history_panel(client, room, owner):
    _as_owner(client, room, owner)
    page = client.get(f"/r/{room.public_id}/")
    assert page.context["config"]["history"] is not None
    assert 'id="history-open"' in page.content.decode()
    room.retention_days = 0
    room.save(update_fields=["retention_days"])

    page = client.get(f"/r/{room.public_id}/")

    text = page.content.decode()
    assert page.context["config"]["history"] is None
    assert 'id="history-open"' not in text and 'id="history-panel"' not in text
    assert 'id="history-play"' not in text
    assert 'id="my-data"' in text  # the member's own data stays downloadable


# -- the manage page refuses crafted forms --------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"action": "revoke", "invite": "abc"}, "invite"),
        ({"action": "revoke"}, "invite"),
        ({"action": "revoke", "invite": "1e3"}, "invite"),
        ({"action": "revoke", "invite": "99999999999999999999999"}, "invite"),
        ({"action": "revoke", "invite": "9" * 5000}, "invite"),
        ({"action": "revoke", "invite": "\u0661"}, "invite"),  # ARABIC-INDIC DIGIT ONE
        ({"action": "remove", "member": "abc"}, "member"),
        ({"action": "remove", "member": ""}, "member"),
        ({"action": "remove", "member": "-1"}, "member"),
    ],
)
def test_manage_page_answers_400_to_a_malformed_id(client, room, owner, member, data, field):
    _as_owner(client, room, owner)
    response = client.post(f"/r/{room.public_id}/manage/", data)
    assert response.status_code == 400
    assert field in response.content.decode()
    assert Member.objects.filter(pk=member.pk).exists()


def test_map_shows_only_a_usable_member_invite(client, room, owner):
    now = timezone.now()
    room.invites.create(role=Role.MEMBER, expires_at=now - timedelta(minutes=1))
    room.invites.create(role=Role.MEMBER, max_uses=2, uses=2)
    room.invites.create(role=Role.MEMBER, revoked=True)
    room.invites.create(role=Role.VIEWER)
    _as_owner(client, room, owner)
    assert client.get(f"/r/{room.public_id}/").context["config"]["inviteUrl"] is None
    usable = room.invites.create(role=Role.MEMBER, expires_at=now + timedelta(hours=1))
    url = client.get(f"/r/{room.public_id}/").context["config"]["inviteUrl"]
    assert url.endswith(usable.path())


# -- names ------------------------------------------------------------------------------


def test_join_form_refuses_a_name_already_in_the_room(client, room, owner):
    invite = invite_create(room=room)
    response = client.post(invite.path(), {"name": "olga"})
    assert response.status_code == 200
    assert "Someone in this room is already called that" in response.content.decode()
    assert room.members.count() == 1
    assert "members" not in client.session


def test_join_form_refuses_a_name_of_invisible_characters(client, room):
    invite = invite_create(room=room)
    response = client.post(invite.path(), {"name": "\u202e\u200b"})
    assert response.status_code == 200
    assert "A name is required" in response.content.decode()
    assert room.members.count() == 1


def test_bidi_controls_never_reach_a_page(client):
    client.post("/", {"name": "Ski\u202e trip", "your_name": "\u2066Olga\u2069"})
    room = Room.objects.get()
    assert (room.name, room.members.get().name) == ("Ski trip", "Olga")


def test_home_refuses_a_room_name_of_invisible_characters(client):
    response = client.post("/", {"name": "\u200d", "your_name": "Olga"})
    assert response.status_code == 200
    assert "A name is required" in response.content.decode()
    assert not Room.objects.exists()


# -- limits -----------------------------------------------------------------------------


def test_room_creation_is_limited_per_address(client, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "RATE_LIMITS": {
        **settings.GEOSHARE["RATE_LIMITS"], "room": (3, 3600)}}
    for n in range(3):
        assert client.post("/", {"name": f"R{n}", "your_name": "O"}).status_code == 302
    response = client.post("/", {"name": "R3", "your_name": "O"})
    assert response.status_code == 429
    assert "Too many rooms" in response.content.decode()
    assert Room.objects.count() == 3
    # Another address is not affected.
    other = client.post("/", {"name": "R4", "your_name": "O"}, REMOTE_ADDR="192.0.2.7")
    assert other.status_code == 302


def test_manage_page_refuses_an_invite_past_the_room_limit(client, room, owner, settings):
    settings.GEOSHARE = {**settings.GEOSHARE, "MAX_INVITES_PER_ROOM": 2}
    _as_owner(client, room, owner)
    form = {"action": "invite", "invite-role": "member"}
    for _ in range(2):
        assert client.post(f"/r/{room.public_id}/manage/", form).status_code == 302
    response = client.post(f"/r/{room.public_id}/manage/", form)
    assert response.status_code == 200
    assert "2 usable invites" in response.content.decode()
    assert room.invites.count() == 2


def test_owner_labels_invites_and_sees_them_in_words(client, room, owner):
    _as_owner(client, room, owner)
    url = f"/r/{room.public_id}/manage/"
    client.post(url, {"action": "invite", "invite-role": "viewer",
                      "invite-label": "  Grandparents\u200b  "})
    invite = room.invites.get(role=Role.VIEWER)
    assert invite.label == "Grandparents"
    client.post(url, {"action": "label", "invite": invite.pk, "label": "Family"})
    invite.refresh_from_db()
    assert invite.label == "Family"
    page = client.get(url).content.decode()
    assert "Family" in page and "never expires" in page and "unlimited uses" in page
    spent = invite_create(room=room)
    Invite.objects.filter(pk=spent.pk).update(revoked=True)
    page = client.get(url).content.decode()
    assert 'id="spent-invites"' in page


def test_your_rooms_come_before_the_create_form(client, room, owner):
    _as_owner(client, room, owner)
    page = client.get("/").content.decode()
    assert page.index("<h2>Your rooms</h2>") < page.index("<h2>Create a room</h2>")


def test_manage_page_says_last_position_in_the_maps_words(client, room, owner, member):
    from maps.models import LivePosition

    LivePosition.objects.create(member=member, lat=45.0, lon=14.0,
                                device_time=timezone.now(), received=timezone.now())
    _as_owner(client, room, owner)
    page = client.get(f"/r/{room.public_id}/manage/").content.decode()
    assert 'class="last-seen" data-format="ago"' in page
    assert "none yet" in page  # the owner has sent no position
    assert "(you)" in page
