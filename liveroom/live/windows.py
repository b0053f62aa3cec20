"""Crowded rooms' windows: the lists this process keeps for page loads and snapshots
(liveroom/rooms/member_lists.py) brought up to every change delivered in a crowded room, as a
page applies it, and the window a burst is sent as where that is shorter than its changes
(docs/crowds.md#bursts).

Lists are brought up in one thread of their own, in the order the changes are delivered: it
never reads the database, so no frame waits for a pooled connection behind a burst's requests.
A list that is not kept, or that a version was skipped for, is read again in the background
(the database's reader threads); until then the room's changes go one by one.
"""

import logging

from django.conf import settings

from liveroom.live.messages import CHANGE_EVENT, Message
from liveroom.live.page import Page
from liveroom.live.readers import Readers
from liveroom.live.supervisor import Supervisor
from liveroom.rooms import member_lists
from liveroom.rooms.crowds import is_crowded
from liveroom.rooms.member_lists import Window

logger = logging.getLogger(__name__)


class Windows:
    def __init__(self, tasks: Supervisor, readers: Readers) -> None:
        self.tasks = tasks
        self.readers = readers  # the database's, for pages
        self.thread = Readers(1, name="liveroom-lists")
        self.catching_up: set[str] = set()  # rooms whose kept lists are being read

    async def bring_up(
        self, messages: list[Message], pages: list[Page], *, window: bool
    ) -> Window | None:
        """A crowded room's lists kept here brought up to its `messages` (in order of version),
        in the languages of its `pages`; with `window`, the window they then show. None if the
        room is not crowded, the lists are behind (a read catches them up for the next messages)
        or anything failed."""
        changes = crowded_changes(messages)
        if not changes or not pages:
            return None
        room_slug, languages = pages[0].room_slug, {page.language for page in pages}
        try:
            return await self.thread.run(
                member_lists.advance_lists, room_slug, languages, changes, window=window
            )
        except member_lists.ListsBehind:
            if room_slug not in self.catching_up:
                self.catching_up.add(room_slug)
                self.tasks.spawn(self.catch_up(room_slug, languages))
        except Exception:
            logger.warning("A crowded room's list was not brought up to its changes; they go "
                           "one by one", exc_info=True)  # fmt: skip
        return None

    async def catch_up(self, room_slug: str, languages: set[str]) -> None:
        try:
            await self.readers.run(member_lists.read_lists, room_slug, languages)
        finally:
            self.catching_up.discard(room_slug)

    def close(self) -> None:
        self.thread.close()


def crowded_changes(messages: list[Message]) -> list[member_lists.Change]:
    """The changes among `messages` (version, what changed), if any of them is a crowded
    room's (or makes or ends a crowd); else none."""
    changes = [
        (message["version"], data)
        for message in messages
        if message["type"] == CHANGE_EVENT and isinstance(data := message.get("data"), dict)
    ]
    crowded = any(is_crowded(data["count"]) or data.get("listed") is not None
                  for _, data in changes)  # fmt: skip
    return changes if crowded else []


def worth_a_window(messages: list[Message]) -> bool:
    """Whether the changes among `messages` are better sent as the window they leave: all of
    them in a crowded room, and more than half as many as the window lists (each carries an
    entry of its own, and most one more to delete)."""
    changes = [message for message in messages if message["type"] == CHANGE_EVENT]
    return len(changes) > settings.LIVEROOM_RECENT_ARRIVALS // 2 and all(
        isinstance(data := change.get("data"), dict) and is_crowded(data["count"])
        for change in changes
    )


def window_in_place(messages: list[Message], window: Window, language: str) -> str | None:
    """The window's swaps in `language`, if they can stand for the changes among `messages`
    (the window is as new as the newest of them, and they are worth one); else None."""
    changes = [message for message in messages if message["type"] == CHANGE_EVENT]
    if (
        language not in window.html
        or not worth_a_window(messages)
        or any(change["version"] > window.version for change in changes)
    ):
        return None
    return window.html[language]
