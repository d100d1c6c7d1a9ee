"""Pages: home (create a room, your rooms), join, the map, the owner's page."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from maps import services
from maps.access import address, doors, limits
from maps.access.scope import history_scope
from maps.domain import policy
from maps.models import Invite, Member, Role
from maps.storage import selectors
from maps.web import error_views
from maps.web.forms import (
    HistoryVisibilityForm,
    InviteForm,
    JoinForm,
    RetentionForm,
    RoomForm,
)
from maps.web.tiles import tile_attribution


def _remember(request, member):
    """Bind ``member`` to the browser session (the member's credential)."""
    rooms = dict(request.session.get("members", {}))
    rooms[member.room.public_id] = member.pk
    request.session["members"] = rooms
    request.session.cycle_key()


def _forget(request, room):
    rooms = dict(request.session.get("members", {}))
    rooms.pop(room.public_id, None)
    request.session["members"] = rooms


def _sentence(exc):
    """Return a service error's message as a sentence for a form, in the page's language.

    The name errors of the translated pages (home, join) are said here, in words the
    translation catalog knows; any other error keeps the service's English.
    """
    if isinstance(exc, services.NameTaken):
        return _("Someone in this room is already called that: pick another name.")
    if str(exc) == "a name is required":
        return _("A name is required: use letters or digits.")
    text = str(exc)
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _room_and_member(request, room_id):
    """Return ``(room, member)``: ``(None, None)`` when there is no such room."""
    room = selectors.room_by_public_id(room_id)
    if room is None:
        return None, None
    member = selectors.session_member(request.session, room)
    return room, member


def favicon(request: HttpRequest) -> HttpResponse:
    """Redirect ``/favicon.ico`` (asked for by browsers and tools that ignore the pages'
    ``<link rel=icon>``) to the static SVG icon: 302, cached for a day."""
    response = redirect(static("maps/img/icon.svg"))
    patch_cache_control(response, max_age=86400, public=True)
    return response


@never_cache  # the page lists this browser's rooms
@require_http_methods(["GET", "POST"])
def home(request):
    """Create a room (and become its owner); list this browser's rooms."""
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not limits.limit_hit("room", address.client_address(request)):
            allowed, window = settings.GEOSHARE["RATE_LIMITS"]["room"]
            message = _("Too many rooms were created from this address: at most "
                        "%(allowed)s in %(minutes)s minutes. Try again later.") % {
                "allowed": allowed, "minutes": window // 60}
            return render(request, "maps/too_many.html", {"message": message}, status=429)
        try:
            room, owner = services.room_create(
                name=form.cleaned_data["name"], owner_name=form.cleaned_data["your_name"],
                user=request.user if request.user.is_authenticated else None,
            )
        except ValueError as exc:  # a name made only of invisible characters
            form.add_error(None, _sentence(exc))
        else:
            services.invite_create(room=room, role=Role.MEMBER)
            _remember(request, owner)
            return redirect("room_map", room_id=room.public_id)
    return render(
        request,
        "maps/home.html",
        {"form": form, "rooms": selectors.rooms_for_session(request.session)},
    )


@never_cache  # the page's URL is the invite
@require_http_methods(["GET", "POST"])
def join(request, token):
    """Open an invite link: pick a display name, become a member, land on the map."""
    invite = selectors.usable_invite(token)
    if invite is None:
        # Guessing tokens counts against the address like redeeming does.
        if not limits.limit_hit("redeem", address.client_address(request)):
            return render(request, "maps/too_many.html", status=429)
        return render(request, "maps/invite_invalid.html", status=404)
    existing = selectors.session_member(request.session, invite.room)
    if existing is not None:
        return redirect("room_map", room_id=invite.room.public_id)
    form = JoinForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not limits.limit_hit("redeem", address.client_address(request)):
            return render(request, "maps/too_many.html", status=429)
        try:
            member = services.invite_redeem(
                token=token, name=form.cleaned_data["name"],
                user=request.user if request.user.is_authenticated else None,
            )
        except services.InviteUnusable:
            return render(request, "maps/invite_invalid.html", status=404)
        except ValueError as exc:  # NameTaken, or nothing left of the name
            form.add_error("name", _sentence(exc))
        else:
            _remember(request, member)
            return redirect("room_map", room_id=member.room.public_id)
    return render(request, "maps/join.html", {"form": form, "room": invite.room,
                                              "invite": invite})


@never_cache  # the page carries the room's invite link
def room_map(request, room_id):
    """The full-screen live map of a room, for its members."""
    room, member = _room_and_member(request, room_id)
    if room is None:
        # Rendered, not raised: a deleted room's URL gets the styled page under DEBUG too.
        return error_views.not_found(request, "room")
    if member is None:
        return render(request, "maps/not_member.html", {"room": room}, status=403)
    invite = selectors.map_invite(room)
    config = {
        "roomId": room.public_id,
        "roomName": room.name,
        "memberId": member.pk,
        "role": member.role,
        "canShare": policy.may_publish(member),
        "isOwner": member.role == Role.OWNER,
        "socketPath": f"/ws/rooms/{room.public_id}/",
        "tileUrl": settings.GEOSHARE["TILE_URL"],
        "tileAttribution": tile_attribution(),
        # Viewers get no invite link: it would let them join again as members.
        "inviteUrl": (
            request.build_absolute_uri(invite.path())
            if invite and policy.may_publish(member) else None
        ),
        "manageUrl": f"/r/{room.public_id}/manage/",
        "leaveUrl": f"/r/{room.public_id}/leave/",
        "connectUrl": f"/r/{room.public_id}/connect/",
        "watchLinksUrl": f"/r/{room.public_id}/watch-links/",
        # The member's share as stored: a reload resumes a running share by itself.
        "share": {"state": member.share_state(),
                  "until": selectors.to_ms(member.sharing_until),
                  "source": member.share_source,
                  "sourceName": member.share_source_name},
        # "Share from: my phone apps" is offered to members with a phone app that
        # has reported at least once.
        "hasDevices": member.devices.filter(last_seen__isnull=False).exists(),
        "history": _history_config(room, member),
        "myDataUrl": "/me/data.zip",
    }
    return render(request, "maps/map.html", {"room": room, "member": member,
                                             "config": config})


def _history_config(room, member):
    """What the map's history mode needs: its URLs, or ``None`` when it shows none.

    None in a live-only room (retention 0 days): it keeps no history to show or play.
    """
    if room.retention_days == 0:
        return None
    try:
        scope = history_scope(member)
    except doors.Refused:
        return None
    return {
        "url": f"/api/rooms/{room.public_id}/history",
        "gpxUrl": f"/r/{room.public_id}/export.gpx",
        "geojsonUrl": f"/r/{room.public_id}/export.geojson",
        "myDataUrl": "/me/data.zip",
        "members": [{"id": m.pk, "name": m.name, "color": m.color}
                    for m in scope.members],
        "retentionDays": room.retention_days,
    }


# Largest value of the BigAutoField primary keys (a signed 64-bit integer).
_MAX_ID = 2**63 - 1


def _is_id(value):
    """Return whether the string ``value`` is a database id (1 to 2**63 - 1, ASCII digits)."""
    # The length check first: int() refuses strings of thousands of digits.
    if not (len(value) <= 19 and value.isascii() and value.isdigit()):
        return False
    return 0 < int(value) <= _MAX_ID


def _posted_id(request, field):
    """Return the POSTed ``field`` as a database id, or ``None`` if it is not one."""
    value = request.POST.get(field, "")
    return int(value) if _is_id(value) else None


def _bad_field(field):
    return HttpResponseBadRequest(f"{field}: not a valid id", content_type="text/plain")


@never_cache  # the page carries every invite link of the room
@require_http_methods(["GET", "POST"])
def room_manage(request, room_id):
    """The owner's page: invites (create, label, revoke, remove who joined), members, retention."""
    room, member = _room_and_member(request, room_id)
    if room is None:
        return error_views.not_found(request, "room")
    if member is None or member.role != Role.OWNER:
        return render(request, "maps/not_member.html", {"room": room}, status=403)
    invite_form = InviteForm(prefix="invite")
    retention_form = RetentionForm(prefix="retention",
                                   initial={"retention_days": room.retention_days})
    visibility_form = HistoryVisibilityForm(
        prefix="visibility", initial={"history_visibility": room.history_visibility})
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "invite":
            invite_form = InviteForm(request.POST, prefix="invite")
            if invite_form.is_valid():
                hours = invite_form.cleaned_data["expires_in_hours"]
                try:
                    services.invite_create(
                        room=room,
                        role=invite_form.cleaned_data["role"],
                        expires_at=timezone.now() + timedelta(hours=hours) if hours else None,
                        max_uses=invite_form.cleaned_data["max_uses"],
                        label=invite_form.cleaned_data["label"],
                    )
                except services.TooManyInvites as exc:
                    invite_form.add_error(None, str(exc))
                else:
                    messages.success(request, _("Invite created."))
                    return redirect("room_manage", room_id=room_id)
        elif action == "revoke":
            invite_pk = _posted_id(request, "invite")
            if invite_pk is None:
                return _bad_field("invite")
            invite = Invite.objects.filter(room=room, pk=invite_pk).first()
            if invite is not None:
                services.invite_revoke(invite=invite)
                messages.success(request, _(
                    "Invite revoked: it lets nobody new in. Whoever joined with it stays."))
            return redirect("room_manage", room_id=room_id)
        elif action == "remove_joined":
            return _remove_joined(request, room)
        elif action == "label":
            invite_pk = _posted_id(request, "invite")
            if invite_pk is None:
                return _bad_field("invite")
            invite = Invite.objects.filter(room=room, pk=invite_pk).first()
            if invite is not None:
                services.invite_set_label(invite=invite,
                                          label=request.POST.get("label", "")[:200])
                messages.success(request, _("Label saved."))
            return redirect("room_manage", room_id=room_id)
        elif action == "remove":
            member_pk = _posted_id(request, "member")
            if member_pk is None:
                return _bad_field("member")
            target = (
                Member.objects.filter(room=room, pk=member_pk)
                .exclude(role=Role.OWNER).first()
            )
            if target is not None:
                replaced = services.member_remove(member=target, replace_invite=True)
                if replaced:
                    messages.success(request, _(
                        "%(name)s was removed; the invite link they used was replaced by "
                        "a new one.") % {"name": target.name})
                else:
                    messages.success(request, _("%(name)s was removed.") % {"name": target.name})
            return redirect("room_manage", room_id=room_id)
        elif action == "retention":
            retention_form = RetentionForm(request.POST, prefix="retention")
            if retention_form.is_valid():
                days = retention_form.cleaned_data["retention_days"]
                deletes = (services.room_retention_deletes(room=room, days=days)
                           if days < room.retention_days else 0)
                if deletes and request.POST.get("confirm") != "yes":
                    return _ask_retention(request, room, days, deletes)
                services.room_set_retention(room=room, days=days)
                messages.success(request, _("History retention saved."))
                return redirect("room_manage", room_id=room_id)
        elif action == "visibility":
            visibility_form = HistoryVisibilityForm(request.POST, prefix="visibility")
            if visibility_form.is_valid():
                services.room_set_history_visibility(
                    room=room,
                    visibility=visibility_form.cleaned_data["history_visibility"],
                )
                messages.success(request, _("Who may see the history was saved."))
                return redirect("room_manage", room_id=room_id)
        elif action == "delete":
            services.room_delete(room=room)
            _forget(request, room)
            messages.success(request, _("The room “%(name)s” and all its data were deleted.")
                             % {"name": room.name})
            return redirect("home")
    last_seen = selectors.members_last_seen(room)
    members = list(room.members.order_by("created"))
    for m in members:
        m.seen = last_seen.get(m.pk)
    invites = [
        {"invite": i, "url": request.build_absolute_uri(i.path()), "usable": i.is_usable(),
         "joined": [m for m in members if m.invite_id == i.pk and m.role != Role.OWNER]}
        for i in room.invites.order_by("-created")
    ]
    return render(
        request,
        "maps/manage.html",
        {
            "room": room,
            "me": member,
            "invites": [row for row in invites if row["usable"]],
            "spent_invites": [row for row in invites if not row["usable"]],
            "members": members,
            "invite_form": invite_form,
            "retention_form": retention_form,
            "visibility_form": visibility_form,
        },
    )


def _names(members):
    """Return the members' names as one phrase of the page's language ("Ana, Bo, Cy")."""
    return _(", ").join(m.name for m in members)


def _remove_joined(request, room):
    """Remove the people who joined with an invite, after a step that names them.

    Without ``confirm=yes`` the answer is a page asking the owner, naming each person,
    whose form posts their ids back; with it, exactly the named people still in the room
    are removed (:func:`maps.services.members_remove`), never someone who joined since.
    """
    invite_pk = _posted_id(request, "invite")
    if invite_pk is None:
        return _bad_field("invite")
    invite = Invite.objects.filter(room=room, pk=invite_pk).first()
    if invite is None:
        return redirect("room_manage", room_id=room.public_id)
    if request.POST.get("confirm") != "yes":
        joined = list(room.members.filter(invite=invite).exclude(role=Role.OWNER)
                      .order_by("created", "pk"))
        if not joined:
            messages.info(request, _("Nobody who joined with this link is in the room."))
            return redirect("room_manage", room_id=room.public_id)
        question = ngettext(
            "Remove the person who joined with this link: %(names)s?",
            "Remove the %(count)s people who joined with this link: %(names)s?",
            len(joined)) % {"count": len(joined), "names": _names(joined)}
        return render(request, "maps/manage_confirm.html", {
            "room": room, "question": question, "people": joined,
            "detail": _("Their positions are deleted and their open maps close. The "
                        "link stops working if it still did, and the links they could "
                        "see are replaced by new ones with the same labels."),
            "fields": [("action", "remove_joined"), ("invite", invite.pk)]
            + [("member", m.pk) for m in joined],
            "button": ngettext("Remove %(count)s person", "Remove %(count)s people",
                               len(joined)) % {"count": len(joined)},
        })
    ids = request.POST.getlist("member")
    if not all(_is_id(value) for value in ids):
        return _bad_field("member")
    targets = list(room.members.filter(pk__in=[int(v) for v in ids])
                   .exclude(role=Role.OWNER).order_by("created", "pk"))
    if targets:
        services.members_remove(members=targets)
        messages.success(request, ngettext(
            "Removed %(names)s; the links they knew were replaced by new ones.",
            "Removed %(count)s people: %(names)s; the links they knew were replaced by "
            "new ones.", len(targets)) % {"count": len(targets), "names": _names(targets)})
    return redirect("room_manage", room_id=room.public_id)


def _ask_retention(request, room, days, deletes):
    """The page that asks before a retention change deletes ``deletes`` positions now."""
    if days == 0:
        question = _("Keep no history from now on?")
        detail = ngettext(
            "This deletes the room's %(count)s position now, with its arrivals and "
            "departures, for good. The map then shows only where people are.",
            "This deletes all %(count)s positions of the room's history now, with their "
            "arrivals and departures, for good. The map then shows only where people "
            "are.", deletes) % {"count": deletes}
    else:
        question = ngettext("Keep %(days)s day of history?",
                            "Keep %(days)s days of history?", days) % {"days": days}
        detail = ngettext(
            "This deletes %(count)s position older than that now, for good.",
            "This deletes %(count)s positions older than that now, for good.",
            deletes) % {"count": deletes}
    return render(request, "maps/manage_confirm.html", {
        "room": room, "question": question, "detail": detail, "people": [],
        "fields": [("action", "retention"), ("retention-retention_days", days)],
        "button": ngettext("Delete %(count)s position", "Delete %(count)s positions",
                           deletes) % {"count": deletes},
    })


@require_POST
def room_leave(request, room_id):
    """Leave a room and erase this member's data (positions and membership)."""
    room, member = _room_and_member(request, room_id)
    if member is not None:
        if member.role == Role.OWNER:
            services.room_delete(room=room)
            message = _("The room “%(name)s” and all its data were deleted.") % {
                "name": room.name}
        else:
            services.member_remove(member=member)
            message = _("You left “%(name)s”; your positions were erased.") % {
                "name": room.name}
        _forget(request, room)
        messages.success(request, message)
    return redirect("home")
