"""What screen readers hear, at most once a second a room: the first change after a quiet second
is said in its own frame ("Bob joined"); the changes that follow within the second are gathered
and said together ("12 people joined; 3 people left") in the frame of the first change after the
second ends, or, if none comes within CARRY_SECONDS, in a frame of their own to the room's pages
that are neither paused nor silent, rendered once per language. The list itself is swapped as
changes come; only the words wait, and a busy room sends no frame for words alone.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from liveroom.live.messages import Message
from liveroom.live.page import Page
from liveroom.live.rendering import announcement_html, kind_of
from liveroom.live.sockets import text_frame

INTERVAL = 1.0  # seconds between two announcements of a room
CARRY_SECONDS = 0.25  # how long gathered words wait, after that, for a change to carry them


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

    def now(self, group: str, messages: list[Message]) -> list[Message]:
        """What is said in the frame of `messages` (new to the room's pages, sent together):
        the words gathered since the last announcement and theirs, once a second has passed;
        nothing if their words wait for the next announcement, or are never spoken."""
        spoken = [message for message in messages if kind_of(message) is not None]
        if not spoken:
            return []
        now = self.loop.time()
        room = self.rooms.get(group)
        if room is None:
            self.rooms[group] = RoomWords(said_at=now)
            return spoken
        if now - room.said_at >= INTERVAL:
            said = [*room.waiting, *spoken]
            if room.timer is not None:
                room.timer.cancel()
            room.said_at, room.waiting, room.timer = now, [], None
            return said
        room.waiting.extend(spoken)
        if room.timer is None:
            due = room.said_at + INTERVAL + CARRY_SECONDS
            room.timer = self.loop.call_at(due, self.say_waiting, group)
        return []

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
