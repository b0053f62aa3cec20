"""Moderation: staff rename and remove members and close rooms from the Django admin.

Every write goes through the domain's functions (liveroom/rooms/membership.py), so open pages
are told at once, as they are of a browser's own changes; the admin logs each action with who
did it (LogEntry). A member is a browser session: nobody adds one by hand, and its room and
session are not editable. The admin's sign-in refuses password guessing (`admin_login`).
"""

import hashlib
import logging

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from liveroom import metrics
from liveroom.rooms import ratelimit
from liveroom.rooms.forms import JoinForm
from liveroom.rooms.membership import member_remove, member_rename, room_close
from liveroom.rooms.models import Member, Room

logger = logging.getLogger(__name__)


class MemberForm(forms.ModelForm):
    """A moderator's rename follows the rules of the join form."""

    class Meta:
        model = Member
        fields = ["name"]

    def clean_name(self) -> str:
        form = JoinForm({"name": self.cleaned_data["name"]})
        if not form.is_valid():
            raise forms.ValidationError(list(form.errors["name"]))
        return form.cleaned_data["name"]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    form = MemberForm
    list_display = ["name", "room", "joined_at", "last_seen_at"]
    list_filter = ["room"]
    list_select_related = ["room"]
    search_fields = ["name", "room__slug"]
    fields = ["name", "room", "joined_at", "last_seen_at"]
    readonly_fields = ["room", "joined_at", "last_seen_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a member is a browser session: it joins through the room's form

    def save_model(self, request: HttpRequest, obj: Member, form, change: bool) -> None:
        if "name" in form.changed_data:
            member_rename(member_id=obj.pk, name=obj.name)

    def delete_model(self, request: HttpRequest, obj: Member) -> None:
        member_remove(member_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        """ "Delete selected members": each is removed as one moderator's removal, live."""
        for member_id in queryset.values_list("pk", flat=True):
            member_remove(member_id=member_id)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Deleting a room closes it: every member out, every page of it told."""

    list_display = ["slug", "member_count", "version", "changed_at"]
    search_fields = ["slug"]
    readonly_fields = ["slug", "member_count", "version", "changed_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a room starts with its first join

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        room_close(room_slug=obj.slug)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        for slug in queryset.values_list("slug", flat=True):
            room_close(room_slug=slug)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's sign-in, refusing password guessing: after ADMIN_LOGIN_LIMIT_PER_ACCOUNT
    failures for one account, or ADMIN_LOGIN_LIMIT_PER_ADDRESS from one address, within a window
    and the one before it, it answers 429 with Retry-After, even to the right password. (Requests
    at the same moment are checked before any of them is counted: a burst of parallel guesses
    may get a few more tries than the limit.)"""
    if request.method != "POST":
        return admin.site.login(request)
    username = request.POST.get("username", "")
    address = request.META.get("REMOTE_ADDR", "")
    rates = {
        # Hashed: any text can be typed as a username, and a cache key must stay short and plain.
        f"account:{hashlib.sha256(username.casefold().encode()).hexdigest()[:32]}": (
            settings.ADMIN_LOGIN_LIMIT_PER_ACCOUNT
        ),
        f"address:{address}": settings.ADMIN_LOGIN_LIMIT_PER_ADDRESS,
    }
    if wait := ratelimit.recently_used_up("admin-login", rates):
        metrics.admin_logins_refused.inc()
        logger.warning(
            "Admin sign-in refused for %d s (too many failures): account %r, address %s",
            wait, username[:150], address, extra={"event": "admin_login_refused"},
        )  # fmt: skip
        return ratelimit.too_many(request, wait, limit="admin-login")
    response = admin.site.login(request)
    if not request.user.is_authenticated:
        ratelimit.count("admin-login", rates, keep_windows=2)
        metrics.admin_login_failures.inc()
    return response
