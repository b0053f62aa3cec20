"""Joining, changing what a member shows, leaving, removing and closing: the domain's writes of
memberships.

Each change finds the room's row and locks it in one statement, so changes in one room happen one
at a time (no race on the one-membership-per-session rule), and is announced after commit with
the `room_changed` (or `room_closed`) signal. The database bumps the room's version for every
write of a member, these and any other (migration 0004's triggers); a change here reads the
version back for its announcement rather than computing it again.

Views call `member_join`, `member_show` and `member_leave` for a browser's own session;
moderators (the admin) call `member_rename`, `member_remove` and `room_close`.
"""

from functools import partial

from django.db import transaction

from liveroom.rooms.crowds import window_move
from liveroom.rooms.models import Member, Room
from liveroom.rooms.signals import room_changed, room_closed


def member_join(
    *, room_slug: str, session_key: str, name: str, new_session: bool = False
) -> Member:
    """Add the session to the room under `name` (the first member starts the room), or rename
    its existing membership. A `new_session` (its key drawn in this request) has none to look
    up."""
    with transaction.atomic():
        room, _ = Room.objects.select_for_update().get_or_create(slug=room_slug)
        member = None if new_session else room.members.filter(session_key=session_key).first()
        if member is None:
            member = Member.objects.create(room=room, session_key=session_key, name=name)
            _announce(room, member, "joined")
        else:
            _update(room, member, name=name)
    return member


def member_show(*, room_slug: str, session_key: str, **shown: object) -> Member | None:
    """Change what the session's member shows (fields of Member.SHOWN_FIELDS, e.g.
    `hand_raised=True`); every page of the room is told, with the change's announcement
    (liveroom/rooms/shown.py). None if the session is no member of the room."""
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(slug=room_slug).first()
        member = room.members.filter(session_key=session_key).first() if room else None
        if room is None or member is None:
            return None
        _update(room, member, **shown)
    return member


def member_leave(*, room_slug: str, session_key: str) -> bool:
    """Remove the session's own membership; returns whether there was one."""
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(slug=room_slug).first()
        member = room.members.filter(session_key=session_key).first() if room else None
        if room is None or member is None:
            return False
        _delete(room, member, "left")
    return True


def member_rename(*, member_id: int, name: str) -> Member | None:
    """Give member `member_id` the name `name` (a moderator's rename); None if it is gone."""
    with transaction.atomic():
        locked = _lock_room_of(member_id)
        if locked is None:
            return None
        _update(*locked, name=name)
    return locked[1]


def member_remove(*, member_id: int) -> bool:
    """Remove member `member_id` (a moderator's removal: its own pages are told so); returns
    whether it was there."""
    with transaction.atomic():
        locked = _lock_room_of(member_id)
        if locked is None:
            return False
        _delete(*locked, "removed")
    return True


def room_close(*, room_slug: str) -> int | None:
    """Close the room: every member out, the room gone, every page of it told. Returns how
    many members it had (None if there was no such room)."""
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(slug=room_slug).first()
        if room is None:
            return None
        count, _ = room.members.all().delete()
        room.delete()
        transaction.on_commit(
            partial(room_closed.send_robust, sender=Room, room_slug=room_slug), robust=True
        )
    return count


def _lock_room_of(member_id: int) -> tuple[Room, Member] | None:
    room_id = Member.objects.filter(pk=member_id).values_list("room_id", flat=True).first()
    if room_id is None:
        return None
    room = Room.objects.select_for_update().get(pk=room_id)
    member = room.members.filter(pk=member_id).first()  # moved or gone before the lock?
    return (room, member) if member is not None else None


def _update(room: Room, member: Member, **shown: object) -> None:
    """Save the shown fields that differ; announce them as one "updated" change."""
    unknown = set(shown) - set(Member.SHOWN_FIELDS)
    if unknown:
        raise TypeError(f"not fields a member shows: {', '.join(sorted(unknown))}")
    before = {field: getattr(member, field) for field, value in shown.items()
              if getattr(member, field) != value}  # fmt: skip
    if not before:
        return
    for field in before:
        setattr(member, field, shown[field])
    member.save(update_fields=list(before))
    _announce(room, member, "updated", before)


def _delete(room: Room, member: Member, change: str) -> None:
    member_id = member.pk
    member.delete()
    member.pk = member_id  # the fragment still needs the id of the element to remove
    _announce(room, member, change)


def _announce(room: Room, member: Member, change: str, before: dict | None = None) -> None:
    """Announce `change` after commit, at the version the database gave the room for it (with
    what the changed shown fields were `before` an update, and what it does to the list pages
    show: crowds.window_move)."""
    room.version, count, window = window_move(room.pk, change, member)  # the room locked: exact
    transaction.on_commit(
        partial(
            room_changed.send_robust,
            sender=Member,
            room=room,
            version=room.version,
            member=member,
            change=change,
            count=count,
            before=before or {},
            window=window,
        ),
        robust=True,
    )
