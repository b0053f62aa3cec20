from django.contrib import admin

from liveroom.rooms.models import Member, Room


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["name", "room", "joined_at"]
    list_filter = ["room"]
    search_fields = ["name"]
    exclude = ["session_key"]
    readonly_fields = ["joined_at"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "version"]
    readonly_fields = ["version"]
