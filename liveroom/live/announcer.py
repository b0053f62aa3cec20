"""Presence, announced: the process's Tracker counts its pages per member, and what the store
says changed is read (in a thread) and published (from the event loop), one message a room,
then the /rooms/ list is refreshed. As Phoenix.Presence turns the tracker's `handle_diff` into
broadcasts, the tracker itself renders and publishes nothing."""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from liveroom.live import publish
from liveroom.live.messages import PRESENCE_EVENT, RoomPresenceChange, room_group
from liveroom.live.page import Page
from liveroom.live.readers import Readers
from liveroom.live.supervisor import Supervisor
from liveroom.presence import PresenceChange, stores
from liveroom.presence.tracker import Tracker
from liveroom.rooms import fragments, idle

logger = logging.getLogger(__name__)


def read_and_record(change: PresenceChange) -> fragments.PresenceData:
    """What the change shows (each process renders it in its pages' languages); the members
    who went away recorded as last seen now (idle removal reads it)."""
    if change.went_away:
        idle.mark_seen(set(change.went_away))
    return fragments.presence_data(change)


class PresenceAnnouncer:
    def __init__(
        self, tasks: Supervisor, readers: Readers, room_list: publish.RoomListRefresh
    ) -> None:
        self.tasks = tasks
        self.readers = readers
        self.room_list = room_list
        self.tracker: Tracker | None = None
        self.counted: dict[Page, tuple[str, int]] = {}  # pages counted: room, member

    def start(self) -> Tracker:
        """The process's tracker, running (a /rooms/ page starts it too: this process then
        sweeps away the members of dead processes)."""
        if self.tracker is None:
            self.tracker = Tracker(
                stores.for_writing(),
                on_change=self.changed,
                on_leaving=lambda members: self.readers.run(idle.mark_seen, members),
            )
        self.tasks.supervise("presence", self.tracker.run)
        return self.tracker

    def page_opened(self, page: Page) -> None:
        """`page` has its first list: its member is online here."""
        if settings.LIVEROOM_PRESENCE and page.member_id:
            self.counted[page] = (page.room_slug, page.member_id)
            self.start().page_opened(page.room_slug, page.member_id)

    def page_closed(self, page: Page) -> None:
        if (counted := self.counted.pop(page, None)) and self.tracker is not None:
            self.tracker.page_closed(*counted)

    async def changed(self, changes: list[PresenceChange]) -> None:
        """The tracker's callback: each room's change rendered and published on its own, then
        the /rooms/ list refreshed (without waiting for it: the tracker goes on)."""
        await asyncio.gather(*(self.announce(change) for change in changes))
        self.tasks.spawn(self.room_list.refresh())  # at most once a second

    async def announce(self, change: PresenceChange) -> None:
        try:
            data = await database_sync_to_async(read_and_record)(change)
        except Exception as error:  # the watch and the next snapshot show the truth
            logger.warning("Presence not announced: %s: %s", type(error).__name__, error)
            return
        group = room_group(change.room_slug)
        message: RoomPresenceChange = {
            "type": PRESENCE_EVENT,
            "group": group,
            "sequence": change.sequence,
            "members": [member_id for member_id, _ in data["members"]],
            "data": data,
        }
        await publish.publish(group, message, what="presence")

    async def aclose(self) -> None:
        self.counted.clear()
        if self.tracker is not None:
            await self.tracker.aclose()
