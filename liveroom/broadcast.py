"""How a room change becomes one HTML fragment and reaches every open page of the room.

Views render each change once and send it to the room's group; consumers forward it as is.
Every fragment comes from a partial of templates/room.html, the same partials that render the
page, and carries the room version so a consumer can drop repeats and heal gaps.
"""

import asyncio
import logging
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import F
from django.template.loader import render_to_string

from liveroom.models import Member, Room

logger = logging.getLogger(__name__)

ROOM_TEMPLATE = "room.html"
CHANGE_EVENT = "room.change"
ROOMS_GROUP = "rooms"  # the /rooms/ pages
ROOMS_EVENT = "rooms.change"


@dataclass(frozen=True)
class Snapshot:
    version: int
    member_id: int
    html: str


@dataclass(frozen=True)
class MemberList:
    version: int
    count: int
    html: str


# The latest rendered member list of each room in this process: a snapshot costs one render per
# room version, not one per page, however many pages connect.
_member_lists: dict[str, MemberList] = {}


def broadcast_change(
    *, room: Room, version: int, member: Member, change: str, count: int, previous_name: str = ""
) -> None:
    """Render one change ("joined", "renamed" or "left") and send it to the room's pages."""
    context = {"member": member, "count": count, "previous_name": previous_name, "oob": True}
    html = render_to_string(f"{ROOM_TEMPLATE}#member-{change}", context).strip()
    message = {
        "type": CHANGE_EVENT,
        "version": version,
        "member_id": member.pk,
        "left": change == "left",
        "html": html,
    }
    sends = [(room.group_name, message)]
    if change != "renamed":  # a rename changes no count on /rooms/
        rooms = {"type": ROOMS_EVENT, "html": render_room_list()}
        sends.append((ROOMS_GROUP, rooms))
    async_to_sync(_send)(sends, member=member, change=change, version=version)


async def _send(sends: list[tuple[str, dict]], **context) -> None:
    # The database already holds the change; a layer that is down or slow must not fail or
    # hang the request, so all sends share one timeout. Pages catch up from their next snapshot.
    layer = get_channel_layer()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(layer.group_send(group, message) for group, message in sends)),
            timeout=settings.LIVEROOM_BROADCAST_TIMEOUT,
        )
    except Exception as error:
        logger.error(
            "Broadcast skipped: member %s %s, room version %s, groups %s: %s %s",
            context["member"].pk, context["change"], context["version"],
            ", ".join(group for group, _ in sends), type(error).__name__, error,
        )  # fmt: skip


def render_room_list() -> str:
    """The list on /rooms/, as an out-of-band swap."""
    context = {"rooms": Room.objects.with_members(), "oob": True}
    return render_to_string("rooms.html#room-list", context).strip()


def render_snapshot(*, room_slug: str, session_key: str) -> Snapshot | None:
    """The full member list as seen by one member, or None if the session is not a member."""
    me = Member.objects.filter(room__slug=room_slug, session_key=session_key).first()
    if me is None:
        return None
    version = Room.objects.filter(slug=room_slug).values_list("version", flat=True).first()
    member_list = _member_lists.get(room_slug)
    if member_list is None or member_list.version != version:
        member_list = _render_member_list(room_slug)
        _member_lists[room_slug] = member_list
    own_part = render_to_string(
        f"{ROOM_TEMPLATE}#snapshot-you", {"me": me, "count": member_list.count, "oob": True}
    )
    return Snapshot(version=member_list.version, member_id=me.pk, html=member_list.html + own_part)


def _render_member_list(room_slug: str) -> MemberList:
    # One statement reads the members and the room version together, so the list is exactly
    # the state at that version: later changes are newer, earlier ones are included.
    members = list(
        Member.objects.filter(room__slug=room_slug)
        .annotate(room_version=F("room__version"))
        .only("id", "name", "joined_at")
    )
    html = render_to_string(f"{ROOM_TEMPLATE}#members", {"members": members, "oob": True}).strip()
    version = members[0].room_version if members else 0
    return MemberList(version=version, count=len(members), html=html)


def render_heartbeat() -> str:
    """The connection indicator, sent to every page now and then to say the socket is alive."""
    return render_to_string(f"{ROOM_TEMPLATE}#connection", {"oob": True}).strip()


def render_left_notice(room_slug: str) -> str:
    """What a page shows when its member left from another tab."""
    return render_to_string(
        f"{ROOM_TEMPLATE}#left-notice", {"room": Room(slug=room_slug), "oob": True}
    ).strip()
