"""References to rows that the hot path passes around without touching the database."""

from dataclasses import dataclass

from maps.protocol import events


@dataclass(slots=True, frozen=True)
class MemberRef:
    """What the publish path needs to know of a member, without touching the database.

    Built once per connection or request by :func:`member_ref`.
    """

    id: int
    room_pk: int
    room_public_id: str
    role: str

    @property
    def group(self) -> str:
        """The room's channel-layer group."""
        return events.room_group(self.room_pk)
