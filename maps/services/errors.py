"""The refusals of the services: each says what was wrong, and changes nothing."""


class InviteUnusable(Exception):
    """The invite is revoked, expired or used up."""


class NotAllowed(Exception):
    """The member may not do this (for example a viewer publishing)."""


class NameTaken(ValueError):
    """Someone in the room already has this display name (compared case-insensitively)."""


class TooManyInvites(ValueError):
    """The room holds as many usable invites as ``GEOSHARE["MAX_INVITES_PER_ROOM"]``."""


class TooManyDevices(ValueError):
    """The member already has :data:`MAX_DEVICES_PER_MEMBER` devices."""


class TooManyPlaces(ValueError):
    """The room already has :data:`MAX_PLACES_PER_ROOM` places."""


class PlaceInvalid(ValueError):
    """A place's field is missing or out of range; ``field`` names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


class SignInUnusable(Exception):
    """The sign-in link is unknown, used, expired or revoked."""


class SetupUnusable(Exception):
    """The phone setup link is unknown, used or expired (or its device got a new key)."""
