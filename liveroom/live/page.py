"""What one room page shows, and what it makes of each room message.

A page shows the room at one `version` (of memberships) and one presence `sequence`. Messages
arrive from several processes in any order, some twice, some never: a page forwards a message
that is exactly next, skips what it has shown, holds a change that came early (the one before it
is usually a moment behind: requests publish independently) and handles the rest (a gap still
open after GAP_SECONDS is healed with a fresh snapshot; a late presence message with the
members' current states). Plain state, no I/O: the LiveCore and the consumer act on the
decisions.
"""

from enum import Enum
from typing import Protocol

from liveroom.live.messages import CHANGE_EVENT, CLOSED_EVENT, PRESENCE_EVENT, Message
from liveroom.live.sockets import Socket
from liveroom.rooms.snapshots import Snapshot


class Decision(Enum):
    FORWARD = "forward"  # send the message's HTML as it is (now counted as shown)
    SKIP = "skip"  # shown already, or kept until the page has its first list
    HANDLE = "handle"  # needs more than a forward: Page.handle()
    HOLD = "hold"  # early: kept until the change before it comes (PageState.next_held)
    RELEASE = "release"  # forward, and a held change is next now: PageState.next_held


FORWARD, SKIP, HANDLE, HOLD = Decision.FORWARD, Decision.SKIP, Decision.HANDLE, Decision.HOLD
RELEASE = Decision.RELEASE

GAP_SECONDS = 0.5  # how long an early change waits for the one before it


class PageState:
    """The versions one page shows, and the messages it holds until its first list."""

    def __init__(self) -> None:
        self.member_id: int | None = None
        self.version = 0
        # Presence messages up to `presence_base` are in the last snapshot; `presence_seen` is
        # the latest applied since.
        self.presence_base = self.presence_seen = 0
        self.presence_checked = 0  # presence_seen when the watch last looked
        # Room messages that arrive before the first list is sent wait here, then go in order.
        self.waiting: list[Message] | None = []
        self.held: dict[int, Message] = {}  # changes that came early, by version
        self.gap_due = False  # a check of whether the held changes' gap closed is scheduled
        # Paused by its person: sent nothing but the end of its membership or of the room,
        # until resumed (then one snapshot).
        self.paused = False

    def shown(
        self, *, member_id: int, version: int, presence_sequence: int, rewind: bool = False
    ) -> bool:
        """A snapshot at `version` reached the page; False if it is older than what it shows
        (unless `rewind`: the database went back to an earlier version, as a restore does)."""
        if version < self.version and not rewind:
            return False
        self.member_id, self.version = member_id, version
        self.presence_base = self.presence_seen = presence_sequence
        self.held = {held: message for held, message in self.held.items() if held > version}
        return True

    def presence_shown(self, sequence: int) -> None:
        """Every member's presence as of `sequence` reached the page (the watch's repair)."""
        if sequence > self.presence_seen:
            self.presence_base = self.presence_seen = sequence

    def ends_page(self, message: Message) -> bool:
        """Whether `message` ends this page: its room closed, or its member gone."""
        if message["type"] == CLOSED_EVENT:
            return True
        return (
            message["type"] == CHANGE_EVENT
            and message["left"]
            and message["member_id"] == self.member_id
        )

    def next_held(self) -> Message | None:
        """The held change that is next now, if any (triage it like a new one)."""
        return self.held.pop(self.version + 1, None)

    def watch_gap(self) -> bool:
        """Whether to schedule a check of the gap a change was just held for: not while one is
        due (a burst holds many changes; one check, and at most one snapshot, heals them)."""
        if self.gap_due:
            return False
        self.gap_due = True
        return True

    def gap_open(self) -> bool:
        """Whether a held change still waits for one that has not come (the check that was
        due)."""
        self.gap_due = False
        self.held = {held: message for held, message in self.held.items() if held > self.version}
        return bool(self.held)

    def release_waiting(self) -> list[Message]:
        """The messages that came before the first list; from now on none wait."""
        waiting, self.waiting = self.waiting or [], None
        return waiting

    def triage(self, message: Message) -> Decision:
        if self.waiting is not None:
            self.waiting.append(message)
            return SKIP
        if self.paused and not self.ends_page(message):
            return SKIP
        if message["type"] == PRESENCE_EVENT:
            sequence = message["sequence"]
            if sequence <= self.presence_base or sequence == self.presence_seen:
                return SKIP  # shown already, by the snapshot or as this very message
            if sequence < self.presence_seen:
                return HANDLE  # late: processes publish independently
            self.presence_seen = sequence
            return FORWARD
        if message["type"] == CLOSED_EVENT:
            return HANDLE  # the room is gone: the page says so and closes
        if message["type"] != "room.change":
            return FORWARD
        version = message["version"]
        if version <= self.version:
            return SKIP  # a repeat, or older than the page's list
        if version > self.version + 1:
            self.held[version] = message
            return HOLD  # early, or the one before it was lost: GAP_SECONDS tell
        if message["member_id"] == self.member_id:
            return HANDLE  # this page's own member changed
        self.version = version
        return RELEASE if version + 1 in self.held else FORWARD


class Page(Protocol):
    """An open room page as the LiveCore sees it."""

    group_name: str
    socket: Socket
    room_slug: str
    member_id: int | None
    version: int
    ready: bool  # has its first list
    state: PageState
    language: str  # what its pieces are rendered in
    paused: bool  # sent nothing until its person resumes it
    quiet: bool  # its spoken announcements are off

    def triage(self, message: Message) -> Decision: ...

    def next_held(self) -> Message | None: ...

    def gap_open(self) -> bool: ...

    async def handle(self, message: Message) -> None: ...

    async def send_snapshot(self, *, rewind: bool = False) -> None: ...

    async def read_snapshot(self) -> Snapshot | None: ...

    def show_own_change(self, snapshot: Snapshot) -> None: ...

    async def close(self, code: int | None = None) -> None: ...

    async def close_with_notice(self, notice: str) -> None: ...


class Listener(Protocol):
    """A page that takes every message of its group as it is (the /rooms/ page)."""

    group_name: str
    socket: Socket
    language: str
