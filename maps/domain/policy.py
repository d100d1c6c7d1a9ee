"""Who may do what: the rules, pure (no database, no HTTP).

Every door and every service asks these functions, so a rule is written once: who may
publish a position, what a position does for a member whose share is off or ended,
whose history a caller may see, who may edit a place, and whether a watch-me link
still shows its member. They take plain values (roles, states, times) and return
plain answers; the callers turn a "no" into their own refusal (an HTTP status, a
WebSocket error frame, :class:`maps.services.NotAllowed`).
"""

from datetime import datetime
from typing import Literal, Protocol

from maps.domain import sources
from maps.domain.choices import HistoryVisibility, Role, Share

#: The roles that may share a position.
PUBLISHING_ROLES = frozenset({Role.OWNER, Role.MEMBER})

#: The roles that may see history at all, as the room allows. Anything else that may
#: come to stand for a caller (a watch-me link's) sees none.
HISTORY_ROLES = frozenset({Role.OWNER, Role.MEMBER, Role.VIEWER})

ShareGate = Literal["publish", "start", "claim", "refuse", "other_source"]
HistoryReach = Literal["everyone", "own", "none"]


class HasRole(Protocol):
    """Anything with a ``role`` (a :class:`~maps.models.Member` or a
    :class:`~maps.domain.refs.MemberRef`)."""

    @property
    def role(self) -> str: ...


def may_publish(member: HasRole) -> bool:
    """Return whether ``member`` (anything with a ``role``) may share a position."""
    return member.role in PUBLISHING_ROLES


def share_gate(state: str, source: str = "", current: str = "") -> ShareGate:
    """Return what a position from ``source`` does for a member whose share is ``state``.

    ``state`` is a :class:`~maps.domain.choices.Share` value (``"off"``, ``"on"``,
    ``"ended"``); ``source`` is where the position comes from and ``current`` the
    running share's source (:mod:`maps.domain.sources` strings, ``""`` when not
    recorded). A share has one source at a time (docs/protocol.md, "One source per
    share"). Returns:

    - ``"publish"`` while the share is on and the position comes from its source;
    - ``"claim"`` while it is on with no source recorded (or ``"device:*"``, "my
      phone apps", and the position comes from one): the position's source becomes
      the share's (recorded), then the position is published;
    - ``"other_source"`` while it is on from another source: neither shown nor
      stored (a phone would make the marker jump between two places);
    - ``"start"`` when the member never shared: the position starts an open-ended
      share from its source, then is published;
    - ``"refuse"`` when the member's last share was ended by them or by its end time:
      neither shown nor stored until they turn sharing on again.

    Over the WebSocket a refusal is an ``error`` frame (``not_sharing`` or
    ``not_the_source``); phone apps still get their success answer, so that their
    upload queues do not jam (docs/protocol.md, "Sharing").
    """
    if state == Share.ON:
        if source == current:
            return "publish"
        return "claim" if current in sources.claimable(source) else "other_source"
    if state == Share.OFF:
        return "start"
    return "refuse"


def may_take_share(state: str, source: str, current: str, *, take_over: bool) -> bool:
    """Return whether a ``share`` request from ``source`` may start or change the
    member's share (``state`` a :class:`~maps.domain.choices.Share` value, ``current``
    its source).

    Anyone of the member may start a share that is not running; a running one is
    changed by its source, or taken over by another when asked for explicitly
    (``take_over``: "Share from here instead").
    """
    if state != Share.ON or not current or source == current:
        return True
    return take_over


def history_reach(role: str, visibility: str) -> HistoryReach:
    """Return whose history a caller of ``role`` sees in a room of ``visibility``.

    ``visibility`` is a :class:`~maps.domain.choices.HistoryVisibility` value:
    ``everyone`` lets everyone in the room see everyone's history, viewers too;
    ``members`` (the default) lets owners and members see everyone's, viewers none;
    ``own`` lets each member see only their own (the owner too). Callers of any other
    role (a watch-me link's) see none. Returns ``"everyone"``, ``"own"`` or
    ``"none"``. Place events (arrivals and departures) follow the same rule.
    """
    if role not in HISTORY_ROLES:
        return "none"
    if visibility == HistoryVisibility.OWN:
        return "own"
    if visibility == HistoryVisibility.EVERYONE or role in PUBLISHING_ROLES:
        return "everyone"
    return "none"


def may_edit_place(role: str, member_id: int, created_by_id: int | None) -> bool:
    """Return whether a member (``role``, ``member_id``) may change or delete a place
    made by ``created_by_id``: its creator or the room's owner."""
    return role == Role.OWNER or created_by_id == member_id


def watch_link_shows(*, revoked: bool, expires_at: datetime | None,
                     bound_to_share: bool, share_state: str, now: datetime) -> bool:
    """Return whether a watch-me link shows its member at ``now`` (aware, UTC).

    One rule for every link: never once revoked, never at or after ``expires_at`` (at
    most seven days after it was made; ``None`` only on rows from before the cap, which
    are bound). A link "until my share ends" (``bound_to_share``) shows only while the
    member's share is on (``share_state`` a :class:`~maps.domain.choices.Share` value);
    stopping that share, or its end time, revokes it, so a later share never shows
    through it. A link for a number of minutes shows the member's marker whenever they
    share within its time: there is no marker between shares.
    """
    if revoked:
        return False
    if expires_at is not None and now >= expires_at:
        return False
    if bound_to_share or expires_at is None:
        return share_state == Share.ON
    return True
