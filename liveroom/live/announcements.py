"""What screen readers hear, at most once a second a room: the first change after a quiet second
is said with its own frame ("Bob joined"); the changes that follow within the second are
gathered and said once when it ends ("12 people joined, 3 people left"), to the room's pages
that are neither paused nor silent, rendered once per language. The list itself is swapped as
changes come; only the words wait.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from liveroom.live.messages import Message
from liveroom.live.page import Page
from liveroom.live.rendering import announcement_html, kind_of
from liveroom.live.sockets import text_frame

INTERVAL = 1.0  # seconds between two announcements of a room


@dataclass
class RoomWords:
    said_at: float  # loop time of the room's last announcement
    waiting: list[Message] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Announcements:
    def __init__(self, loop: asyncio.AbstractEventLoop, pages: Callable[[str], list[Page]]):
        self.loop = loop
        self.pages = pages  # the ready pages of a group
        self.rooms: dict[str, RoomWords] = {}

    def now(self, group: str, message: Message) -> bool:
        """Whether `message` (new to the room's pages) is said now, with its own frame; if not,
        it is said with the next announcement. False for what is never spoken."""
        if kind_of(message) is None:
            return False
        now = self.loop.time()
        room = self.rooms.get(group)
        if room is None or (not room.waiting and now - room.said_at >= INTERVAL):
            self.rooms[group] = RoomWords(said_at=now)
            return True
        room.waiting.append(message)
        if room.timer is None:
            room.timer = self.loop.call_at(room.said_at + INTERVAL, self.say_waiting, group)
        return False

    def say_waiting(self, group: str) -> None:
        room = self.rooms.get(group)
        if room is None:
            return
        waiting, room.waiting, room.timer = room.waiting, [], None
        room.said_at = self.loop.time()
        frames: dict[str, bytes] = {}
        for page in self.pages(group):
            if page.paused or page.quiet:
                continue
            frame = frames.get(page.language)
            if frame is None:
                frame = frames[page.language] = text_frame(
                    announcement_html(waiting, page.language)
                )
            page.socket.send(frame)

    def forget(self, group: str) -> None:
        """The room's last page here closed."""
        room = self.rooms.pop(group, None)
        if room is not None and room.timer is not None:
            room.timer.cancel()

    def clear(self) -> None:
        for group in list(self.rooms):
            self.forget(group)
