"""The HTML a page is sent: every fragment comes from a partial of templates/liveroom/room.html
(or rooms.html), the same partials that render the pages, so a pushed change and a page load cannot
drift apart. Rendering only (and the reads a fragment needs): the cached member lists are in
member_lists.py, snapshots in snapshots.py, and sending is the live transport's business
(liveroom/live/).
"""

from django.conf import settings
from django.template.loader import render_to_string

from liveroom.presence import PresenceChange, RoomPresence, room_presence
from liveroom.rooms.listing import rooms_page
from liveroom.rooms.models import Member, Room

ROOM_TEMPLATE = "liveroom/room.html"


def presence_context(presence: RoomPresence | None) -> dict:
    """What the room templates need to show who is online."""
    return {
        "presence": settings.LIVEROOM_PRESENCE,
        "online": presence.online if presence else frozenset(),
        "online_count": len(presence.online) if presence else 0,
    }


# Each membership change, and the partial of room.html that shows it.
CHANGE_PARTIALS = {
    "joined": "member-joined",  # the entry added, the count, the announcement
    "updated": "member-updated",  # the entry swapped (what it shows changed), the announcement
    "left": "member-left",  # the entry deleted, the count, the announcement
    "removed": "member-left",
}


def render_change(*, room: Room, member: Member, change: str, count: int, announcement: str) -> str:
    """One membership change (CHANGE_PARTIALS) as out-of-band swaps."""
    context = {"member": member, "count": count, "announcement": announcement, "oob": True}
    # A new member has no page open yet; an updated one keeps their state.
    context |= presence_context(room_presence(room.slug) if change == "updated" else None)
    return render_to_string(f"{ROOM_TEMPLATE}#{CHANGE_PARTIALS[change]}", context).strip()


def render_presence_change(change: PresenceChange) -> tuple[str, list[int]]:
    """Who came online or went away in one room, and the ids of the members it shows."""
    members = list(
        Member.objects.filter(
            room__slug=change.room_slug, pk__in=change.came_online + change.went_away
        ).only("id", "name")
    )
    context = {
        "members": members,
        "online": frozenset(change.came_online),
        "online_count": change.online_count,
        "away_names": [m.name for m in members if m.pk in change.went_away],
        "oob": True,
    }
    html = render_to_string(f"{ROOM_TEMPLATE}#presence-changed", context).strip()
    return html, [member.pk for member in members]


def render_presence_now(*, room_slug: str, member_ids: list[int]) -> str:
    """These members' presence as the store has it now: newer than any message in flight."""
    presence = room_presence(room_slug)
    context = {
        "members": Member.objects.filter(room__slug=room_slug, pk__in=member_ids).only("id"),
        "online": presence.online,
        "online_count": len(presence.online),
        "oob": True,
    }
    return render_to_string(f"{ROOM_TEMPLATE}#presence-changed", context).strip()


def render_presence_all(room_slug: str) -> tuple[str, int]:
    """Every member's presence as the store has it now, and the presence sequence it is at:
    for pages that missed a presence message."""
    presence = room_presence(room_slug)
    context = {
        "members": Member.objects.filter(room__slug=room_slug).only("id"),
        "online": presence.online,
        "online_count": len(presence.online),
        "oob": True,
    }
    html = render_to_string(f"{ROOM_TEMPLATE}#presence-changed", context).strip()
    return html, presence.sequence


def render_room_list() -> str:
    """The first page of /rooms/ (the live one), as an out-of-band swap."""
    context = {"rooms": rooms_page(1), "oob": True}
    return render_to_string("liveroom/rooms.html#room-list", context).strip()


def render_own_entry(me: Member, presence: RoomPresence) -> str:
    """A member's own entry, marked "you"."""
    context = {"member": me, "me": me} | presence_context(presence)
    return render_to_string(f"{ROOM_TEMPLATE}#member", context)


def render_entries(member: Member) -> tuple[str, str]:
    """A member's entry as others see it: online, and away."""
    online, away = (
        render_to_string(f"{ROOM_TEMPLATE}#member", {"member": member} | presence_context(presence))
        for presence in (RoomPresence(0, frozenset({member.pk})), None)
    )
    return online, away


def render_heartbeat() -> str:
    """The connection indicator, sent to every page now and then to say the socket is alive."""
    return render_to_string(f"{ROOM_TEMPLATE}#connection", {"oob": True}).strip()


NOTICES = ("left", "removed", "gone", "closed")


def render_notice(room_slug: str, notice: str) -> str:
    """What a page shows as it closes, no longer in the room: its member `"left"` from another
    tab, was `"removed"` by a moderator, is `"gone"` (removed outside the app), or the room was
    `"closed"`."""
    assert notice in NOTICES, notice
    context = {"room": Room(slug=room_slug), "notice": notice, "oob": True,
               "name_max_length": Member.NAME_MAX_LENGTH}  # fmt: skip
    return render_to_string(f"{ROOM_TEMPLATE}#notice", context).strip()
