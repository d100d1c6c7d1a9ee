"""Shared reads (maps.storage.selectors): the batched forms answer as the single ones."""

from datetime import timedelta

import pytest
from django.utils import timezone

from maps.models import LivePosition, Member, Place, Share
from maps.services import member_create, room_create
from maps.storage import selectors

pytestmark = pytest.mark.django_db(transaction=True)


def _live(member, age):
    now = timezone.now()
    LivePosition.objects.create(member=member, lat=46.05, lon=14.5, accuracy=8.0,
                                device_time=now - age, received=now - age)


def test_rooms_live_state_gives_each_room_its_own_members_positions_and_places():
    kept, kept_owner = room_create(name="Kept", owner_name="Ana", retention_days=7)
    live_only, live_owner = room_create(name="Live", owner_name="Bo", retention_days=0)
    sharing, _ = member_create(room=kept, name="Cy")
    stale, _ = member_create(room=kept, name="Di")
    stopped, _ = member_create(room=kept, name="Ed")
    Member.objects.filter(pk__in=[kept_owner.pk, sharing.pk, stale.pk, live_owner.pk]
                          ).update(share=Share.ON)
    Member.objects.filter(pk=stopped.pk).update(share=Share.ENDED)
    _live(kept_owner, timedelta(minutes=1))
    _live(sharing, timedelta(hours=1))
    _live(stale, timedelta(days=8))  # past the room's retention
    _live(stopped, timedelta(minutes=1))  # not sharing
    _live(live_owner, timedelta(days=30))  # a live-only room keeps its one position
    Place.objects.create(room=kept, name="Home", lat=46.0, lon=14.5, radius=100)
    Place.objects.create(room=live_only, name="Work", lat=46.1, lon=14.6, radius=200)
    missing = live_only.pk + 1000

    states = selectors.rooms_live_state([live_only.pk, kept.pk, missing, kept.pk])

    assert len(states) == 4 and states[1] == states[3]
    live_state, kept_state, missing_state = states[:3]
    assert [m["id"] for m in kept_state["members"]] == [
        kept_owner.pk, sharing.pk, stale.pk, stopped.pk]
    assert [m["share"] for m in kept_state["members"]] == ["on", "on", "on", "ended"]
    assert [p["member"] for p in kept_state["positions"]] == [kept_owner.pk, sharing.pk]
    assert [p["name"] for p in kept_state["places"]] == ["Home"]
    assert [m["id"] for m in live_state["members"]] == [live_owner.pk]
    assert [p["member"] for p in live_state["positions"]] == [live_owner.pk]
    assert [p["name"] for p in live_state["places"]] == ["Work"]
    assert missing_state == {"members": [], "positions": [], "places": []}
    # The single form is the batched one of one room.
    assert selectors.room_live_state(kept.pk) == kept_state
