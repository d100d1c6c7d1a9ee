"""Services: every write to rooms, members, devices, shares, places and positions.

Keyword-only functions named ``<entity>_<action>`` (HackSoft's Django-Styleguide),
one module per noun:

- :mod:`~maps.services.positions`: the publish path every door calls
  (``positions_publish``), and pruning past a room's retention;
- :mod:`~maps.services.shares`: shares and watch-me links;
- :mod:`~maps.services.rooms`: rooms, invites and members;
- :mod:`~maps.services.devices`: a member's devices and their keys;
- :mod:`~maps.services.places`: places, a phone's region reports, alert rules;
- :mod:`~maps.services.signin`: one-time sign-in links;
- :mod:`~maps.services.publish`: **the one publisher**, the only module of maps/ that
  sends room events on the channel layer;
- :mod:`~maps.services.errors`: the refusals.

The names below are the services' public surface, so that callers write
``services.room_create(...)``; the modules hold the code.
"""

from maps.services.devices import (
    MAX_DEVICES_PER_MEMBER,
    MAX_SETUP_LINKS,
    SETUP_MINUTES,
    device_create,
    device_revoke,
    device_rotate_key,
    device_set_secret,
    member_rotate_key,
    setup_link_create,
    setup_link_redeem,
)
from maps.services.errors import (
    InviteUnusable,
    NameTaken,
    NotAllowed,
    PlaceInvalid,
    SetupUnusable,
    SignInUnusable,
    TooManyDevices,
    TooManyInvites,
    TooManyPlaces,
)
from maps.services.places import (
    MAX_ALERT_RULES,
    MAX_PLACE_NAME,
    MAX_PLACES_PER_ROOM,
    alert_rules_set,
    may_edit_place,
    place_create,
    place_delete,
    place_for_region,
    place_transition_record,
    place_update,
    place_values,
    places_for_device,
    places_import,
)
from maps.services.positions import (
    PRUNE_BATCH,
    PRUNE_ROOMS,
    position_publish,
    positions_prune,
    positions_publish,
)
from maps.services.publish import (
    place_events_announce,
    room_event_send,
)
from maps.services.rooms import (
    invite_create,
    invite_redeem,
    invite_revoke,
    invite_set_label,
    member_create,
    member_remove,
    members_remove,
    room_create,
    room_delete,
    room_retention_deletes,
    room_set_history_visibility,
    room_set_retention,
)
from maps.services.shares import (
    MAX_WATCH_LINKS,
    WATCH_MINUTES_MAX,
    WATCH_MINUTES_MIN,
    amember_stop_sharing,
    ashare_claim,
    ashare_start,
    shares_expire,
    watch_link_create,
    watch_link_revoke,
)
from maps.services.signin import (
    MAX_SIGNIN_LINKS,
    SIGNIN_MINUTES,
    signin_link_create,
    signin_link_redeem,
    signin_link_revoke,
)

__all__ = [
    "InviteUnusable",
    "MAX_ALERT_RULES",
    "MAX_DEVICES_PER_MEMBER",
    "MAX_PLACE_NAME",
    "MAX_SETUP_LINKS",
    "SETUP_MINUTES",
    "SetupUnusable",
    "setup_link_create",
    "setup_link_redeem",
    "MAX_PLACES_PER_ROOM",
    "MAX_SIGNIN_LINKS",
    "MAX_WATCH_LINKS",
    "NameTaken",
    "NotAllowed",
    "PRUNE_BATCH",
    "PRUNE_ROOMS",
    "PlaceInvalid",
    "SIGNIN_MINUTES",
    "SignInUnusable",
    "TooManyDevices",
    "TooManyInvites",
    "TooManyPlaces",
    "WATCH_MINUTES_MAX",
    "WATCH_MINUTES_MIN",
    "alert_rules_set",
    "amember_stop_sharing",
    "ashare_claim",
    "ashare_start",
    "device_create",
    "device_revoke",
    "device_rotate_key",
    "device_set_secret",
    "invite_create",
    "invite_redeem",
    "invite_revoke",
    "invite_set_label",
    "may_edit_place",
    "member_create",
    "member_remove",
    "members_remove",
    "member_rotate_key",
    "place_create",
    "place_delete",
    "place_events_announce",
    "place_for_region",
    "place_transition_record",
    "place_update",
    "place_values",
    "places_for_device",
    "places_import",
    "position_publish",
    "positions_prune",
    "positions_publish",
    "room_create",
    "room_delete",
    "room_event_send",
    "room_set_history_visibility",
    "room_retention_deletes",
    "room_set_retention",
    "shares_expire",
    "signin_link_create",
    "signin_link_redeem",
    "signin_link_revoke",
    "watch_link_create",
    "watch_link_revoke",
]
