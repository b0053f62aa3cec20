"""Each room's member list as last rendered in this process, shared by every page load and
snapshot while the room's version is the same (the database bumps it for every write of a
member: migration 0004), so a thousand loads at one version render it once. A list is kept per
language in use (its entries say "online", "away"): the active language when it is asked for.
A crowded room's list is its most recent arrivals (crowds.py): the same bounded read and render
however many members it has. The live transport brings a crowded room's list up to the changes
it delivers (`MemberLists.advance`), without reading, as its pages apply them.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from liveroom.presence import RoomPresence
from liveroom.rooms.crowds import is_crowded, listed, room_version
from liveroom.rooms.fragments import ROOM_TEMPLATE, ChangeData, render_entries
from liveroom.rooms.models import Member


@dataclass
class MemberList:
    """The members a room lists at one version (everyone, or a crowded room's most recent
    arrivals), each entry rendered once online and once away."""

    room_id: int
    version: int
    count: int  # members in the room, listed or not
    entries: dict[int, tuple[str, str]]  # member id -> (online, away), in list order
    shown: dict[int, tuple]  # member id -> what its entries show (Member.SHOWN_FIELDS)
    presence: RoomPresence | None = None  # of the latest `html`
    html: str = ""

    @property
    def crowded(self) -> bool:
        return is_crowded(self.count)

    def render(self, presence: RoomPresence) -> str:
        """The whole list with `presence`, for a snapshot; presence changes cost a join, not a
        render. Not thread-safe: through MemberLists.render."""
        if presence != self.presence:
            online = presence.online
            entries = [both[member_id not in online] for member_id, both in self.entries.items()]
            # Entries rendered from the template, names escaped.
            context = {"members_html": mark_safe("".join(entries)), "oob": True,
                       "count": self.count, "crowded": self.crowded,
                       "listed": len(self.entries)}  # fmt: skip
            html = render_to_string(f"{ROOM_TEMPLATE}#rendered-members", context)
            self.presence, self.html = presence, html.strip()
        return self.html

    def advanced(self, changes: list[tuple[int, ChangeData]]) -> "MemberList | None":
        """The list as of the last of `changes` (version, what changed), in order of version:
        each one made to it as a page makes it (a join adds its member at the end and deletes
        the one it pushed out of a crowded room's window; a leave deletes its member and brings
        back the one before the window, at its top; an update renders the entry again; a list
        sent whole replaces it). Changes it shows already are passed over; None if a version
        between is missing (a write of which no change came: only a read says)."""
        pending = [(version, data) for version, data in changes if version > self.version]
        if [version for version, _ in pending] != list(
            range(self.version + 1, self.version + 1 + len(pending))
        ):
            return None
        if not pending:
            return self
        entries, shown, count = dict(self.entries), dict(self.shown), self.count
        fields = Member.SHOWN_FIELDS

        def entry(member: dict) -> tuple[int, tuple[str, str], tuple]:
            values = tuple(member[field] for field in fields)
            if shown.get(member["id"]) == values:
                return member["id"], entries[member["id"]], values
            named = dict(zip(fields, values, strict=True))
            rendered = render_entries(Member(pk=member["id"], **named))
            return member["id"], rendered, values

        for _, data in pending:
            count = data["count"]
            if (listed := data.get("listed")) is not None:
                made = [entry(member) for member in listed]
                entries = {member_id: both for member_id, both, _ in made}
                shown = {member_id: values for member_id, _, values in made}
                continue
            change, member = data["change"], data["member"]
            added = change == "joined" and not data.get("unlisted")
            if added or (change == "updated" and member["id"] in entries):
                member_id, entries[member_id], shown[member_id] = entry(member)
            elif change in ("left", "removed"):
                entries.pop(member["id"], None)
                shown.pop(member["id"], None)
                if (entering := data.get("entering")) is not None:
                    member_id, both, values = entry(entering)
                    entries = {member_id: both} | entries
                    shown[member_id] = values
            if (dropped := data.get("dropped")) is not None:
                entries.pop(dropped, None)
                shown.pop(dropped, None)
        return MemberList(self.room_id, pending[-1][0], count, entries, shown)

    def page_entries(self, presence: RoomPresence, me_id: int, me_html: str) -> str:
        """The entries for the room page of member `me_id`, whose own entry is `me_html` (a
        crowded room's list is the same on every page: its member's entry is not marked)."""
        online = presence.online
        if self.crowded:
            me_id = 0
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

    def __init__(self, max_rooms: int | None = None) -> None:
        self.lock = threading.Lock()
        self.lists: OrderedDict[tuple[str, str], MemberList] = OrderedDict()  # by room, language
        self._max_rooms = max_rooms

    @property
    def max_rooms(self) -> int:
        """LIVEROOM_CACHED_ROOMS, read when used (override_settings applies at once)."""
        return self._max_rooms or settings.LIVEROOM_CACHED_ROOMS

    def current(self, room_slug: str, room_id: int, version: int) -> MemberList:
        """The room's list at `version` or later, never later than the database, in the active
        language."""
        key = (room_slug, get_language())
        with self.lock:
            cached = self.lists.get(key)
            # The room id tells a room deleted and started again from the one that was cached.
            if cached is None or cached.room_id != room_id:
                cached = self.lists[key] = render_member_list(room_id)
            elif cached.version < version or (
                # Read before a newer list was cached, or the database went back (a restore)?
                cached.version > version and room_version(room_id) < cached.version
            ):  # entries of members unchanged since are reused
                cached = self.lists[key] = render_member_list(room_id, cached)
            self.lists.move_to_end(key)
            while len(self.lists) > self.max_rooms:
                self.lists.popitem(last=False)
            return cached

    def advance(self, room_slug: str, changes: list[tuple[int, ChangeData]]) -> MemberList | None:
        """The room's list in the active language brought up to `changes` (in order of
        version), kept for page loads and snapshots; None if none is kept or a version between
        is missing."""
        key = (room_slug, get_language())
        with self.lock:
            cached = self.lists.get(key)
            advanced = None if cached is None else cached.advanced(changes)
            if advanced is not None and cached is not None and advanced.version > cached.version:
                self.lists[key] = advanced
            return advanced

    def render(self, member_list: MemberList, presence: RoomPresence) -> str:
        with self.lock:
            return member_list.render(presence)

    def forget(self, room_slug: str) -> None:
        """Drop the room's lists, in every language."""
        with self.lock:
            for key in [key for key in self.lists if key[0] == room_slug]:
                del self.lists[key]

    def rooms(self) -> list[str]:
        with self.lock:
            return list(dict.fromkeys(room_slug for room_slug, _ in self.lists))

    def clear(self) -> None:
        with self.lock:
            self.lists.clear()


member_lists = MemberLists()  # the process's


def render_member_list(room_id: int, previous: MemberList | None = None) -> MemberList:
    """The room's list now; an entry of `previous` (the same room at an earlier version) is
    reused while what its member shows is the same, so a join renders one entry, not the
    room."""
    fields = Member.SHOWN_FIELDS
    # One statement reads the members and the room version together, so the list is exactly
    # the state at that version: later changes are newer, earlier ones are included.
    now = listed(room_id, crowded=previous is not None and previous.crowded)
    entries: dict[int, tuple[str, str]] = {}
    shown: dict[int, tuple] = {}
    for member_id, *values in now.rows:
        shown[member_id] = tuple(values)
        if previous is not None and previous.shown.get(member_id) == shown[member_id]:
            entries[member_id] = previous.entries[member_id]
        else:
            member = Member(pk=member_id, **dict(zip(fields, values, strict=True)))
            entries[member_id] = render_entries(member)
    return MemberList(now.room_id, now.version, now.count, entries, shown)
