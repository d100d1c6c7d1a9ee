"""The Django admin for every model. Device keys show only as hashes.

Deleting a room or a member goes through :mod:`maps.services`, as on the owner's page,
so that open sockets are closed and a removed member's invite links are replaced.
Revoking an invite (its ``revoked`` box) stops new joins and removes nobody, as on the
owner's page; deleting an invite here keeps its members too (``Member.invite`` is
set to null).
"""

from django.contrib import admin

from maps import services
from maps.models import Device, Invite, Member, Position, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "created", "retention_days"]
    search_fields = ["name", "public_id"]

    def delete_model(self, request, obj):
        services.room_delete(room=obj)

    def delete_queryset(self, request, queryset):
        for room in queryset:
            services.room_delete(room=room)


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["room", "role", "created", "expires_at", "uses", "max_uses", "revoked"]
    list_filter = ["role", "revoked"]
    raw_id_fields = ["room"]


class DeviceInline(admin.TabularInline):
    """A member's devices: names and when they last reported; keys only as hashes."""

    model = Device
    fields = ["name", "key_hash", "created", "last_seen", "has_secret"]
    readonly_fields = ["key_hash", "created", "last_seen", "has_secret"]
    extra = 0
    can_delete = False  # removal goes through services (DeviceAdmin), closing sockets

    @admin.display(boolean=True, description="OwnTracks secret")
    def has_secret(self, obj):
        return bool(obj.secret)


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["name", "room", "role", "last_seen", "created"]
    list_filter = ["role"]
    raw_id_fields = ["room", "user", "invite"]
    inlines = [DeviceInline]

    def delete_model(self, request, obj):
        services.member_remove(member=obj, replace_invite=True)

    def delete_queryset(self, request, queryset):
        # One room at a time, so that each link they knew is replaced once.
        by_room = {}
        for member in queryset:
            by_room.setdefault(member.room_id, []).append(member)
        for members in by_room.values():
            services.members_remove(members=members)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    """Devices, keys only as hashes; the OwnTracks secret is never shown.

    A device is created on the "Connect a phone" page or by ``manage.py addmember``,
    where its key is shown once; the admin cannot make keys. Deleting goes through
    :func:`maps.services.device_revoke`, which closes the device's sockets.
    """

    list_display = ["name", "member", "created", "last_seen"]
    raw_id_fields = ["member"]
    fields = ["member", "name", "key_hash", "created", "last_seen"]
    readonly_fields = ["member", "key_hash", "created", "last_seen"]
    search_fields = ["name", "member__name"]

    def has_add_permission(self, request):
        return False

    def delete_model(self, request, obj):
        services.device_revoke(device=obj)

    def delete_queryset(self, request, queryset):
        for device in queryset.select_related("member"):
            services.device_revoke(device=device)


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = ["member", "device_time", "received", "lat", "lon", "accuracy"]
    raw_id_fields = ["member"]
    date_hierarchy = "device_time"
