"""The Django admin for every model. Device keys show only as hashes."""

from django.contrib import admin

from .models import Invite, Member, Position, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "created", "retention_days"]
    search_fields = ["name", "public_id"]


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


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = ["member", "device_time", "received", "lat", "lon", "accuracy"]
    raw_id_fields = ["member"]
    date_hierarchy = "device_time"
