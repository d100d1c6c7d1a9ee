"""The Django admin for every model. Device keys show only as hashes.

Deleting a room or a member goes through :mod:`maps.services`, as on the owner's page,
so that open sockets are closed and a removed member's invite links are replaced.
"""

from django.contrib import admin

from . import services
from .models import Invite, Member, Position, Room


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


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["name", "room", "role", "last_seen", "created"]
    list_filter = ["role"]
    raw_id_fields = ["room", "user", "invite"]
    readonly_fields = ["key_hash"]

    def delete_model(self, request, obj):
        services.member_remove(member=obj, replace_invite=True)

    def delete_queryset(self, request, queryset):
        for member in queryset:
            services.member_remove(member=member, replace_invite=True)


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = ["member", "device_time", "received", "lat", "lon", "accuracy"]
    raw_id_fields = ["member"]
    date_hierarchy = "device_time"
