"""Joining and leaving: the only places that write memberships.

Each change finds the room's row and locks it in one statement, so changes in one room happen one
at a time (no race on the one-membership-per-session rule), bumps the room version, and is
announced after commit with the `room_changed` signal.
"""

from functools import partial

from django.db import transaction
from django.utils import timezone

from liveroom.rooms.models import Member, Room
from liveroom.rooms.signals import room_changed


def member_join(*, room_slug: str, session_key: str, name: str) -> Member:
    """Add the session to the room under `name` (the first member starts the room), or rename
    its existing membership."""
    with transaction.atomic():
        room, _ = Room.objects.select_for_update().get_or_create(slug=room_slug)
        member = room.members.filter(session_key=session_key).first()
        if member is None:
            member = Member.objects.create(room=room, session_key=session_key, name=name)
            _record_change(room, member, "joined")
        elif member.name != name:
            previous_name, member.name = member.name, name
            member.save(update_fields=["name"])
            _record_change(room, member, "renamed", previous_name=previous_name)
    return member


def member_leave(*, room_slug: str, session_key: str) -> bool:
    """Remove the session's own membership; returns whether there was one."""
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(slug=room_slug).first()
        member = room.members.filter(session_key=session_key).first() if room else None
        if room is None or member is None:
            return False
        member_id = member.pk
        member.delete()
        member.pk = member_id  # the fragment still needs the id of the element to remove
        _record_change(room, member, "left")
    return True


def _record_change(room: Room, member: Member, change: str, previous_name: str = "") -> None:
    room.version += 1
    room.changed_at = timezone.now()
    room.save(update_fields=["version", "changed_at"])
    count = room.members.count()
    transaction.on_commit(
        partial(
            room_changed.send_robust,
            sender=Member,
            room=room,
            version=room.version,
            member=member,
            change=change,
            count=count,
            previous_name=previous_name,
        ),
        robust=True,
    )
