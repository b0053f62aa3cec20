"""How a room change becomes one HTML fragment and reaches every open page of the room.

Views render each change once and send it to the room's group; consumers forward it as is.
Every fragment comes from a partial of templates/room.html, the same partials that render the
page, and carries the room version so a consumer can drop repeats and heal gaps.
"""

import asyncio
import logging
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from liveroom.after_response import send_after_response
from liveroom.models import Member, Room
from liveroom.presence import PresenceChange, RoomPresence, online_counts, room_presence

logger = logging.getLogger(__name__)

ROOM_TEMPLATE = "room.html"
CHANGE_EVENT = "room.change"
PRESENCE_EVENT = "room.presence"
ROOMS_GROUP = "rooms"  # the /rooms/ pages
ROOMS_EVENT = "rooms.change"


@dataclass(frozen=True)
class Snapshot:
    version: int
    presence_sequence: int
    member_id: int
    members_html: str  # the list: the same string for every page at this version and presence
    own_html: str  # this page's own part

    @property
    def html(self) -> str:
        return self.members_html + self.own_html


@dataclass
class MemberList:
    """A room's members at one version, each entry rendered once online and once away."""

    room_id: int
    version: int
    entries: dict[int, tuple[str, str]]  # member id -> (online, away), in list order
    presence: RoomPresence | None = None  # of the latest `html`
    html: str = ""

    @property
    def count(self) -> int:
        return len(self.entries)

    def render(self, presence: RoomPresence) -> str:
        """The whole list with `presence`; presence changes cost a join, not a render."""
        if presence != self.presence:
            online = presence.online
            entries = [both[member_id not in online] for member_id, both in self.entries.items()]
            html = render_to_string(f"{ROOM_TEMPLATE}#rendered-members", {"entries": entries})
            self.presence, self.html = presence, html.strip()
        return self.html


# The member list of each room in this process: a snapshot costs one render per room version,
# not one per page, however many pages connect.
_member_lists: dict[str, MemberList] = {}


def broadcast_change(
    *, room: Room, version: int, member: Member, change: str, count: int, previous_name: str = ""
) -> None:
    """Render one change ("joined", "renamed" or "left") and send it to the room's pages."""
    context = {"member": member, "count": count, "previous_name": previous_name, "oob": True}
    context |= presence_context(
        # A new member has no page open yet; a renamed one keeps their state.
        room_presence(room.slug) if change == "renamed" else None
    )
    html = render_to_string(f"{ROOM_TEMPLATE}#member-{change}", context).strip()
    message = {
        "type": CHANGE_EVENT,
        "group": room.group_name,
        "version": version,
        "member_id": member.pk,
        "left": change == "left",
        "html": html,
    }
    send_after_response(
        _send, [(room.group_name, message)], member=member.pk, change=change, version=version
    )
    if change != "renamed":  # a rename changes no count on /rooms/
        send_after_response(refresh_room_list)


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
        details = ", ".join(f"{key} {value}" for key, value in context.items())
        groups = ", ".join(group for group, _ in sends)
        logger.error(
            "Broadcast skipped (%s; groups %s): %s %s", details, groups, type(error).__name__, error
        )


# The /rooms/ list is the same for every change: rendered by the view, it would make each join
# wait for a query, a Redis call and a template, and a burst of a thousand joins would render it
# a thousand times. After their responses, changes share one refresh per process instead.
_room_list_refresh: asyncio.Task | None = None
_room_list_stale = False


async def refresh_room_list() -> None:
    """Send the /rooms/ pages the list as it is after this change. One refresh runs at a time
    in a process; a change that lands while it reads the database has it read once more."""
    global _room_list_refresh, _room_list_stale
    _room_list_stale = True
    loop = asyncio.get_running_loop()
    if (
        _room_list_refresh is None
        or _room_list_refresh.done()
        or _room_list_refresh.get_loop() is not loop
    ):
        _room_list_refresh = loop.create_task(_refresh_room_list_while_stale())
    await asyncio.shield(_room_list_refresh)


async def _refresh_room_list_while_stale() -> None:
    global _room_list_stale
    while _room_list_stale:
        _room_list_stale = False
        try:
            html = await database_sync_to_async(render_room_list)()
        except Exception as error:
            logger.error("Room list not sent: %s: %s", type(error).__name__, error)
            continue
        await _send([(ROOMS_GROUP, {"type": ROOMS_EVENT, "html": html})], change="room list")


def presence_context(presence: RoomPresence | None) -> dict:
    """What the room templates need to show who is online."""
    return {
        "presence": settings.LIVEROOM_PRESENCE,
        "online": presence.online if presence else frozenset(),
        "online_count": len(presence.online) if presence else 0,
    }


def broadcast_presence(changes: list[PresenceChange]) -> None:
    """Show each room's pages who came online or went away (refresh_room_list, after it, shows
    /rooms/ the new counts)."""
    sends = []
    for change in changes:
        members = Member.objects.filter(
            room__slug=change.room_slug, pk__in=change.came_online + change.went_away
        ).only("id", "name")
        if change.went_away:
            members.filter(pk__in=change.went_away).update(last_seen_at=timezone.now())
        context = {
            "members": members,
            "online": frozenset(change.came_online),
            "online_count": change.online_count,
            "away_names": [m.name for m in members if m.pk in change.went_away],
            "oob": True,
        }
        html = render_to_string(f"{ROOM_TEMPLATE}#presence-changed", context).strip()
        group = Room(slug=change.room_slug).group_name
        message = {
            "type": PRESENCE_EVENT,
            "group": group,
            "sequence": change.sequence,
            "members": [member.pk for member in members],
            "html": html,
        }
        sends.append((group, message))
    async_to_sync(_send)(sends, change="presence")


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


def render_room_list() -> str:
    """The list on /rooms/, as an out-of-band swap."""
    context = {"rooms": rooms_with_members(), "oob": True}
    return render_to_string("rooms.html#room-list", context).strip()


def rooms_with_members() -> list[Room]:
    """Rooms with members, busiest first, each with `member_count` and `online_count`."""
    rooms = list(Room.objects.with_members())
    counts = online_counts([room.slug for room in rooms])
    for room in rooms:
        room.online_count = counts.get(room.slug)  # None: presence is off or unavailable
    return rooms


def render_snapshot(*, room_slug: str, session_key: str) -> Snapshot | None:
    """The full member list as seen by one member, or None if the session is not a member."""
    me = Member.objects.filter(room__slug=room_slug, session_key=session_key).first()
    if me is None:
        return None
    room_id, version = Room.objects.filter(slug=room_slug).values_list("id", "version").get()
    presence = room_presence(room_slug)
    member_list = _member_lists.get(room_slug)
    # The room id tells a room deleted and started again from the one that was cached.
    if member_list is None or (member_list.room_id, member_list.version) != (room_id, version):
        member_list = _render_member_list(room_slug)
        _member_lists[room_slug] = member_list
    context = {"me": me, "count": member_list.count, "oob": True} | presence_context(presence)
    own_part = render_to_string(f"{ROOM_TEMPLATE}#snapshot-you", context)
    return Snapshot(
        version=member_list.version,
        presence_sequence=presence.sequence,
        member_id=me.pk,
        members_html=member_list.render(presence),
        own_html=own_part,
    )


def forget_member_lists() -> None:
    """Drop the rendered lists this process keeps (tests start each from nothing)."""
    _member_lists.clear()


def _render_member_list(room_slug: str) -> MemberList:
    # One statement reads the members and the room version together, so the list is exactly
    # the state at that version: later changes are newer, earlier ones are included.
    members = list(
        Member.objects.filter(room__slug=room_slug)
        .annotate(room_version=F("room__version"))
        .only("id", "name", "joined_at")
    )
    entries = {}
    for member in members:
        entries[member.pk] = tuple(
            render_to_string(
                f"{ROOM_TEMPLATE}#member", {"member": member} | presence_context(presence)
            )
            for presence in (RoomPresence(0, frozenset({member.pk})), None)
        )
    room_id, version = (members[0].room_id, members[0].room_version) if members else (0, 0)
    return MemberList(room_id, version, entries)


def render_heartbeat() -> str:
    """The connection indicator, sent to every page now and then to say the socket is alive."""
    return render_to_string(f"{ROOM_TEMPLATE}#connection", {"oob": True}).strip()


def render_left_notice(room_slug: str) -> str:
    """What a page shows when its member left from another tab."""
    return render_to_string(
        f"{ROOM_TEMPLATE}#left-notice", {"room": Room(slug=room_slug), "oob": True}
    ).strip()
