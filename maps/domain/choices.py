"""The room's vocabulary: roles, whose history is shown, and share states.

Django ``TextChoices`` (plain strings on the wire and in the database), defined here so
that the rules (:mod:`maps.domain.policy`) can use them without the models.
"""

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class HistoryVisibility(models.TextChoices):
    """Whose history a room's people may see (:func:`maps.domain.policy.history_reach`)."""

    EVERYONE = "everyone", "Everyone in the room, viewers too"
    MEMBERS = "members", "Members, not viewers"
    OWN = "own", "Each member only their own"


class Share(models.TextChoices):
    """Whether a member shares their position (docs/protocol.md, "Sharing")."""

    # Never turned on: the first position starts an open-ended share.
    OFF = "off", "Not sharing"
    ON = "on", "Sharing"
    # Ended by the member or by its end time: positions are refused until turned on.
    ENDED = "ended", "Stopped"
