"""Removing members who have been away for longer than LIVEROOM_IDLE_REMOVAL_SECONDS.

A removal is a leave like any other: every page of the room sees the member go. It runs lazily
whenever a room changes (a join or a leave; a page load changes nothing), in each process's
sweeps, and for every room from
`manage.py remove_idle_members`, for cron.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from liveroom.presence import room_presence
from liveroom.rooms.membership import member_leave
from liveroom.rooms.models import Member, Room


def mark_seen(member_ids: set[int]) -> None:
    """These members were seen until now (their last page is closing): whoever reads them as
    away after this also finds them recently seen, not idle since their last absence."""
    Member.objects.filter(pk__in=member_ids).update(last_seen_at=timezone.now())


def remove_idle_members(room: Room | None = None) -> int:
    """Remove the idle members of `room` (of every room if None); return how many went."""
    limit = settings.LIVEROOM_IDLE_REMOVAL_SECONDS
    if not limit:
        return 0
    idle = Member.objects.filter(last_seen_at__lt=timezone.now() - timedelta(seconds=limit))
    if room is not None:  # saved or not: a POST does not look its room up before it locks it
        idle = idle.filter(room__slug=room.slug)
    online_by_room: dict[str, frozenset[int]] = {}
    removed = 0
    for member in idle.select_related("room").only("id", "session_key", "room__slug"):
        slug = member.room.slug
        if slug not in online_by_room:
            online_by_room[slug] = room_presence(slug).online
        if member.pk not in online_by_room[slug]:
            removed += member_leave(room_slug=slug, session_key=member.session_key)
    return removed
