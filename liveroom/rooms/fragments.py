"""The HTML a page is sent: every fragment comes from a partial of templates/room.html (or
rooms.html), the same partials that render the pages, so a pushed change and a page load cannot
drift apart. Rendering only: sending is the live transport's business (liveroom/live/).
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.models import Session
from django.core.paginator import Page, Paginator
from django.template.loader import render_to_string
from django.utils import timezone

from liveroom.presence import PresenceChange, RoomPresence, online_counts, room_presence
from liveroom.rooms.models import Member, Room
from liveroom.rooms.sessions import session_engine

ROOM_TEMPLATE = "room.html"


@dataclass
class MemberList:
    """A room's members at one version, each entry rendered once online and once away."""

    room_id: int
    version: int
    entries: dict[int, tuple[str, str]]  # member id -> (online, away), in list order
    names: dict[int, str]  # member id -> the name its entries show
    presence: RoomPresence | None = None  # of the latest `html`
    html: str = ""

    @property
    def count(self) -> int:
        return len(self.entries)

    def render(self, presence: RoomPresence) -> str:
        """The whole list with `presence`, for a snapshot; presence changes cost a join, not a
        render. Not thread-safe: through MemberLists.render."""
        if presence != self.presence:
            online = presence.online
            entries = [both[member_id not in online] for member_id, both in self.entries.items()]
            html = render_to_string(f"{ROOM_TEMPLATE}#rendered-members", {"entries": entries})
            self.presence, self.html = presence, html.strip()
        return self.html

    def page_entries(self, presence: RoomPresence, me_id: int, me_html: str) -> str:
        """The entries for the room page of member `me_id`, whose own entry is `me_html`."""
        online = presence.online
        return "".join(
            me_html if member_id == me_id else both[member_id not in online]
            for member_id, both in self.entries.items()
        )


class MemberLists:
    """Each room's member list as last rendered in this process, shared by every page load and
    snapshot while the room's version is the same: a thousand loads at one version render it
    once. Renders run one at a time (they are CPU-bound: side by side they only take the event
    loop's turns). At most `max_rooms` are kept, the least recently used going first; the live
    transport forgets a room when its last page here closes."""

    def __init__(self, max_rooms: int) -> None:
        self.lock = threading.Lock()
        self.lists: OrderedDict[str, MemberList] = OrderedDict()
        self.max_rooms = max_rooms

    def current(self, room_slug: str, room_id: int, version: int) -> MemberList:
        """The room's list at `version` or later, never later than the database."""
        with self.lock:
            cached = self.lists.get(room_slug)
            # The room id tells a room deleted and started again from the one that was cached.
            if cached is None or cached.room_id != room_id:
                cached = self.lists[room_slug] = render_member_list(room_slug)
            elif cached.version < version or (
                # Read before a newer list was cached, or the database went back (a restore)?
                cached.version > version and room_version(room_id) < cached.version
            ):  # entries of members unchanged since are reused
                cached = self.lists[room_slug] = render_member_list(room_slug, cached)
            self.lists.move_to_end(room_slug)
            while len(self.lists) > self.max_rooms:
                self.lists.popitem(last=False)
            return cached

    def render(self, member_list: MemberList, presence: RoomPresence) -> str:
        with self.lock:
            return member_list.render(presence)

    def forget(self, room_slug: str) -> None:
        with self.lock:
            self.lists.pop(room_slug, None)

    def rooms(self) -> list[str]:
        with self.lock:
            return list(self.lists)

    def clear(self) -> None:
        with self.lock:
            self.lists.clear()


member_lists = MemberLists(max_rooms=settings.LIVEROOM_CACHED_ROOMS)


@dataclass(frozen=True)
class Snapshot:
    """Everything one page needs to show the room as it is now."""

    version: int
    presence_sequence: int
    member_id: int
    member_list: MemberList  # shared by every page of the room at this version
    members_html: str  # the list: the same string for every page at this version and presence
    own_html: str  # this page's own part


def presence_context(presence: RoomPresence | None) -> dict:
    """What the room templates need to show who is online."""
    return {
        "presence": settings.LIVEROOM_PRESENCE,
        "online": presence.online if presence else frozenset(),
        "online_count": len(presence.online) if presence else 0,
    }


def render_change(
    *, room: Room, member: Member, change: str, count: int, previous_name: str = ""
) -> str:
    """One membership change ("joined", "renamed", "left" or "removed") as out-of-band swaps."""
    context = {"member": member, "count": count, "previous_name": previous_name, "oob": True}
    # A new member has no page open yet; a renamed one keeps their state.
    context |= presence_context(room_presence(room.slug) if change == "renamed" else None)
    return render_to_string(f"{ROOM_TEMPLATE}#member-{change}", context).strip()


def render_presence_change(change: PresenceChange) -> tuple[str, list[int]]:
    """Who came online or went away in one room, and the ids of the members it shows. Members
    who went away are recorded as last seen now (idle removal reads it)."""
    members = list(
        Member.objects.filter(
            room__slug=change.room_slug, pk__in=change.came_online + change.went_away
        ).only("id", "name")
    )
    if change.went_away:
        Member.objects.filter(pk__in=change.went_away).update(last_seen_at=timezone.now())
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
    return render_to_string("rooms.html#room-list", context).strip()


def rooms_page(number: int | str | None) -> Page:
    """One page of the rooms with members, busiest first (LIVEROOM_ROOMS_PAGE_SIZE a page),
    each with `member_count` and `online_count`; a number out of range gives the nearest page."""
    page = Paginator(Room.objects.with_members(), settings.LIVEROOM_ROOMS_PAGE_SIZE).get_page(
        number
    )
    rooms = list(page.object_list)
    counts = online_counts([room.slug for room in rooms])
    for room in rooms:
        room.online_count = counts.get(room.slug)  # None: presence is off or unavailable
    page.object_list = rooms
    return page


def live_sessions(session_keys: set[str]) -> set[str]:
    """The keys the session store still has, unexpired: one query with the database engine."""
    if not session_keys:
        return set()
    engine = session_engine()
    if issubclass(engine, db.SessionStore):  # what SessionStore.load() checks
        unexpired = Session.objects.filter(
            session_key__in=session_keys, expire_date__gt=timezone.now()
        )
        return set(unexpired.values_list("session_key", flat=True))
    live = set()
    for session_key in session_keys:
        store: SessionBase = engine(session_key)
        store.load()  # an unknown or expired session leaves the store without a key
        if store.session_key == session_key:
            live.add(session_key)
    return live


SnapshotWanted = tuple[str, bool]  # a session key, and whether its session must be checked


def snapshots(room_slug: str, wanted: list[SnapshotWanted]) -> dict[SnapshotWanted, Snapshot]:
    """The room as each wanted session's member sees it, read together: a handful of queries
    and one list however many pages ask. A session that is not a member (or, when it must be
    checked, no longer a live session) has no snapshot."""
    checked = live_sessions({key for key, check in wanted if check})
    allowed = {key for key, check in wanted if key in checked or not check}
    members = {
        member.session_key: member
        for member in Member.objects.filter(room__slug=room_slug, session_key__in=allowed)
    }
    if not members:
        return {}
    room_id, version = Room.objects.filter(slug=room_slug).values_list("id", "version").get()
    presence = room_presence(room_slug)
    member_list = member_lists.current(room_slug, room_id, version)
    members_html = member_lists.render(member_list, presence)
    found: dict[str, Snapshot] = {}
    for session_key, me in members.items():
        context = {"me": me, "count": member_list.count, "oob": True} | presence_context(presence)
        found[session_key] = Snapshot(
            version=member_list.version,
            presence_sequence=presence.sequence,
            member_id=me.pk,
            member_list=member_list,
            members_html=members_html,
            own_html=render_to_string(f"{ROOM_TEMPLATE}#snapshot-you", context).strip(),
        )
    return {
        (key, check): found[key]
        for key, check in wanted
        if key in found and (key in checked or not check)
    }


def render_own_entry(me: Member, presence: RoomPresence) -> str:
    """A member's own entry, marked "you"."""
    context = {"member": me, "me": me} | presence_context(presence)
    return render_to_string(f"{ROOM_TEMPLATE}#member", context)


def render_member_list(room_slug: str, previous: MemberList | None = None) -> MemberList:
    """The room's list now; an entry of `previous` (the same room at an earlier version) is
    reused while its member's name is the same, so a join renders one entry, not the room."""
    # One statement reads the members and the room version together, so the list is exactly
    # the state at that version: later changes are newer, earlier ones are included.
    rows = list(
        Member.objects.filter(room__slug=room_slug).values_list(
            "id", "name", "room_id", "room__version"
        )
    )
    entries: dict[int, tuple[str, str]] = {}
    names: dict[int, str] = {}
    for member_id, name, _, _ in rows:
        names[member_id] = name
        if previous is not None and previous.names.get(member_id) == name:
            entries[member_id] = previous.entries[member_id]
        else:
            entries[member_id] = render_entries(Member(pk=member_id, name=name))
    room_id, version = rows[0][2:] if rows else (0, 0)
    return MemberList(room_id, version, entries, names)


def room_version(room_id: int) -> int:
    """The room's version now (-1 if it is gone)."""
    version = Room.objects.filter(pk=room_id).values_list("version", flat=True).first()
    return -1 if version is None else version


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
    context = {"room": Room(slug=room_slug), "notice": notice, "oob": True}
    return render_to_string(f"{ROOM_TEMPLATE}#notice", context).strip()
