"""The history door: who reads a room's history over HTTP, and what they may see."""

from dataclasses import dataclass
from datetime import datetime

from django.http import HttpRequest
from django.utils import timezone

from maps.access.address import client_address
from maps.access.doors import _BEARER, Refused, bearer_key
from maps.access.identity import BLOCKED, key_member
from maps.access.limits import retry_after
from maps.domain import policy
from maps.models import Member, Room
from maps.storage import selectors


@dataclass(slots=True, frozen=True)
class HistoryScope:
    """What a caller may read of a room's history.

    ``members``: the visible members (models, by id), after the caller's ``member=``
    choice; ``floor``: the oldest time returned (aware, UTC): positions recorded or
    received before it are past the room's retention and never returned.
    """

    room: Room
    members: list[Member]
    floor: datetime

    @property
    def member_ids(self) -> list[int]:
        return [m.pk for m in self.members]


def history_scope(member: Member, *, only: int | None = None,
                  now: datetime | None = None) -> HistoryScope:
    """Return the :class:`HistoryScope` of ``member`` (room loaded) in their room.

    The one history rule, used by every history endpoint (the map's history, the track
    API, the exports, the data download and the place events go through it; the
    hubs apply the same rule to the live ``place_event`` frames):

    - the room's ``history_visibility``: ``everyone`` lets everyone in the room see
      everyone's history, viewers too; ``members`` (the default) lets owners and
      members see everyone's, viewers none; ``own`` lets each member see only their
      own (the owner too);
    - callers of any other role (watch-me links) see none;
    - nothing older than the room's retention (``now - retention_days``; nothing at
      all in a live-only room).

    ``only`` is a member id the caller asks for. Raises :class:`Refused`: 403 when the
    caller may see no history here, or not that member's; 404 (``field`` ``member``)
    when no member of the room has that id.
    """
    room = member.room
    now = now or timezone.now()
    everyone = Member.objects.filter(room=room).order_by("pk")
    reach = policy.history_reach(member.role, room.history_visibility)
    if member.role not in policy.HISTORY_ROLES:
        raise Refused(403, "this link does not show history")
    if reach == "own":
        visible = everyone.filter(pk=member.pk)
    elif reach == "everyone":
        visible = everyone
    else:
        raise Refused(403, "in this room, history is shown to members, not to viewers")
    if only is not None:
        if not everyone.filter(pk=only).exists():
            raise Refused(404, "no member of this room has this id", "member")
        visible = visible.filter(pk=only)
        if not visible.exists():
            raise Refused(403, "in this room, you may see only your own history",
                          "member")
    return HistoryScope(room=room, members=list(visible), floor=now - room.retention())


def api_member(request: HttpRequest, room_id: str) -> Member:
    """Return the member (room loaded) calling a history endpoint of room ``room_id``.

    Synchronous (database). Authenticated by ``Authorization: Bearer <device key>``
    (wins when sent) or by the browser session of a member of the room. Raises
    :class:`Refused`: 401 with nothing to authenticate by, or an unknown key; 429 with
    ``Retry-After`` for an address past its wrong-key limit (a wrong key counts
    against the address, as at the ingest doors); 404 for a key of another room, a
    session that is not in this room, and a room that does not exist, alike.
    """
    sent, key = bearer_key(request)
    if sent:
        if key is None:
            raise Refused(401, "send Authorization: Bearer <device key>",
                          "Authorization", _BEARER)
        found = key_member(key, client_address(request))
        if found is BLOCKED:
            raise Refused(429, "too many wrong device keys from this address; wait a "
                          "minute", headers={"Retry-After": str(retry_after("badkey"))})
        if found is None:
            raise Refused(401, "unknown or revoked device key", "Authorization", _BEARER)
        if found.room.public_id != room_id:
            raise Refused(404, "no such room", "room")
        return found
    if not request.session.get("members"):
        raise Refused(401, "open the room's invite link in this browser, or send "
                      "Authorization: Bearer <device key>", "Authorization", _BEARER)
    room = selectors.room_by_public_id(room_id)
    found = None if room is None else selectors.session_member(request.session, room)
    if found is None:
        raise Refused(404, "no such room", "room")
    return found
