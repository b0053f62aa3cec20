"""Each room's member list as last rendered in this process, shared by every page load and
snapshot while the room's version is the same (the database bumps it for every write of a
member: migration 0004), so a thousand loads at one version render it once. A list is kept per
language in use (its entries say "online", "away"): the active language when it is asked for.
A crowded room's list is its most recent arrivals (crowds.py): the same bounded read and render
however many members it has. The live transport brings a crowded room's list up to the changes
it delivers (`advance_lists`), without reading, as its pages apply them, and sends a burst as
the window it leaves where that is shorter than its changes (liveroom/live/windows.py).
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from liveroom.presence import RoomPresence, room_presence
from liveroom.rooms.crowds import is_crowded, listed, room_version
from liveroom.rooms.fragments import ROOM_TEMPLATE, ChangeData, render_count, render_entries
from liveroom.rooms.models import Member, Room


@dataclass
class MemberList:
    """The members a room lists at one version (everyone, or a crowded room's most recent
    arrivals), in one language, each entry rendered once online and once away when first
    needed. Not thread-safe: used through MemberLists, under its lock."""

    room_id: int
    version: int
    count: int  # members in the room, listed or not
    shown: dict[int, tuple]  # member id -> what its entries show (Member.SHOWN_FIELDS), in order
    language: str
    # member id -> (online, away); a member not here yet is rendered when first needed
    rendered: dict[int, tuple[str, str]] = field(default_factory=dict)
    presence: RoomPresence | None = None  # of the latest `html`
    html: str = ""

    @property
    def crowded(self) -> bool:
        return is_crowded(self.count)

    def entries(self) -> list[tuple[int, tuple[str, str]]]:
        """Each member listed and their entries (online, away), in list order."""
        missing = [member_id for member_id in self.shown if member_id not in self.rendered]
        if missing:
            fields = Member.SHOWN_FIELDS
            with translation.override(self.language):
                for member_id in missing:
                    named = dict(zip(fields, self.shown[member_id], strict=True))
                    self.rendered[member_id] = render_entries(Member(pk=member_id, **named))
        return [(member_id, self.rendered[member_id]) for member_id in self.shown]

    def render(self, presence: RoomPresence) -> str:
        """The whole list with `presence`, for a snapshot; presence changes cost a join, not a
        render."""
        if presence != self.presence:
            online = presence.online
            entries = [both[member_id not in online] for member_id, both in self.entries()]
            # Entries rendered from the template, names escaped.
            context = {"members_html": mark_safe("".join(entries)), "oob": True,
                       "count": self.count, "crowded": self.crowded,
                       "listed": len(self.shown)}  # fmt: skip
            with translation.override(self.language):
                html = render_to_string(f"{ROOM_TEMPLATE}#rendered-members", context)
            self.presence, self.html = presence, html.strip()
        return self.html

    def page_entries(self, presence: RoomPresence, me_id: int, me_html: str) -> str:
        """The entries for the room page of member `me_id`, whose own entry is `me_html` (a
        crowded room's list is the same on every page: its member's entry is not marked)."""
        online = presence.online
        if self.crowded:
            me_id = 0
        return "".join(
            me_html if member_id == me_id else both[member_id not in online]
            for member_id, both in self.entries()
        )

    def advanced(self, changes: list[tuple[int, ChangeData]]) -> "MemberList | None":
        """The list as of the last of `changes` (version, what changed), in order of version:
        each one made to it as a page makes it (a join adds its member at the end and deletes
        the one it pushed out of a crowded room's window; a leave deletes its member and brings
        back the one before the window, at its top; an update shows what it changed; a list
        sent whole replaces it). Changes it shows already are passed over; None if a version
        between is missing (a write of which no change came: only a read says). Renders
        nothing: entries are rendered when first needed."""
        pending = [(version, data) for version, data in changes if version > self.version]
        if [version for version, _ in pending] != list(
            range(self.version + 1, self.version + 1 + len(pending))
        ):
            return None
        if not pending:
            return self
        shown, count = dict(self.shown), self.count
        fields = Member.SHOWN_FIELDS

        def values(member: dict) -> tuple:
            return tuple(member[field] for field in fields)

        for _, data in pending:
            count = data["count"]
            if (listed := data.get("listed")) is not None:
                shown = {member["id"]: values(member) for member in listed}
                continue
            change, member = data["change"], data["member"]
            added = change == "joined" and not data.get("unlisted")
            if added or (change == "updated" and member["id"] in shown):
                shown[member["id"]] = values(member)
            elif change in ("left", "removed"):
                shown.pop(member["id"], None)
                if (entering := data.get("entering")) is not None:
                    shown = {entering["id"]: values(entering)} | shown
            if (dropped := data.get("dropped")) is not None:
                shown.pop(dropped, None)
        # Entries of members whose entries show the same are kept.
        rendered = {member_id: both for member_id, both in self.rendered.items()
                    if self.shown.get(member_id) == shown.get(member_id)}  # fmt: skip
        return MemberList(self.room_id, pending[-1][0], count, shown, self.language, rendered)


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

    def page_entries(
        self, member_list: MemberList, presence: RoomPresence, me_id: int, me_html: str
    ) -> str:
        with self.lock:
            return member_list.page_entries(presence, me_id, me_html)

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
    """The room's list now, in the active language; an entry of `previous` (the same room at an
    earlier version) is kept while what its member shows is the same, so a join renders one
    entry, not the room."""
    # One statement reads the members and the room version together, so the list is exactly
    # the state at that version: later changes are newer, earlier ones are included.
    now = listed(room_id, crowded=previous is not None and previous.crowded)
    shown = {member_id: tuple(values) for member_id, *values in now.rows}
    rendered = {}
    if previous is not None:
        rendered = {member_id: both for member_id, both in previous.rendered.items()
                    if previous.shown.get(member_id) == shown.get(member_id)}  # fmt: skip
    return MemberList(now.room_id, now.version, now.count, shown, get_language(), rendered)


@dataclass(frozen=True)
class Window:
    """A crowded room's list as every page of it shows it at `version`: the recent arrivals
    with who of them is online, the hint and the count, as out-of-band swaps, by language."""

    version: int
    html: dict[str, str]


class ListsBehind(Exception):
    """The room's list kept in this process (in a language asked for) is missing, or older
    than the changes with a version between them missing: `read_lists` catches it up."""


Change = tuple[int, ChangeData]  # a change's version, and what it changed


def advance_lists(
    room_slug: str, languages: set[str], changes: list[Change], *, window: bool
) -> Window | None:
    """Bring the room's lists kept in this process, in each of `languages`, up to `changes`
    (in order of version) without reading the database, as pages apply them; with `window`,
    the window they then show, if the room is crowded (presence read once). Raises
    ListsBehind."""
    lists: dict[str, MemberList] = {}
    for language in languages:
        with translation.override(language):
            member_list = member_lists.advance(room_slug, changes)
        if member_list is None:
            raise ListsBehind(room_slug)
        lists[language] = member_list
    if not window or not lists or not all(each.crowded for each in lists.values()):
        return None
    presence = room_presence(room_slug)
    html = {}
    for language, member_list in lists.items():
        with translation.override(language):
            members_html = member_lists.render(member_list, presence)
            html[language] = members_html + render_count(member_list.count)
    return Window(min(each.version for each in lists.values()), html)


def read_lists(room_slug: str, languages: set[str]) -> None:
    """Read the room's list in each of `languages` into this process's (when it is behind)."""
    room = Room.objects.filter(slug=room_slug).values_list("pk", "version").first()
    if room is None:
        return
    for language in languages:
        with translation.override(language):
            member_lists.current(room_slug, *room)
