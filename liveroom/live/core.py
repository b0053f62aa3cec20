"""One LiveCore per process (per event loop): the owner of everything live there.

It keeps the open pages (room pages by group; /rooms/ pages as listeners of a plain broadcast
group), the one channel-layer channel subscribed to the groups of every room with pages here,
and the task that takes the channel's messages as they come and gives them to its delivery
(liveroom/live/delivery.py: each room's a window at a time). It keeps the frames of the rooms'
lists and the reader threads snapshots are read in (at most
LIVEROOM_READ_THREADS at once, never queued behind the threads that serve HTTP requests, though
their connections come from the same pool; the snapshots a room's pages ask for together are
read together, liveroom/live/snapshot_reads.py).

What it starts has modules of its own: delivery, crowded rooms' windows (windows.py), the watch
(liveroom/live/watch.py), presence announcing (announcer.py), what screen readers hear
(announcements.py), and the supervisor of its tasks (supervisor.py): a task that dies is
logged, counted and started again.
Nothing here waits on the event loop from a worker thread: database work runs in threads,
publishing stays on the loop.
"""

import asyncio
import logging
import time
import weakref

from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from liveroom import metrics
from liveroom.live import after_response, publish
from liveroom.live.announcements import Announcements
from liveroom.live.announcer import PresenceAnnouncer
from liveroom.live.delivery import Delivery
from liveroom.live.limits import SocketLimits
from liveroom.live.messages import (
    room_group,
)
from liveroom.live.page import (
    Listener,
    Page,
)
from liveroom.live.readers import Readers
from liveroom.live.snapshot_reads import SnapshotReads
from liveroom.live.sockets import text_frame
from liveroom.live.supervisor import Supervisor
from liveroom.live.watch import Watch
from liveroom.live.windows import Windows
from liveroom.rooms import cleanup, snapshots
from liveroom.rooms.member_lists import member_lists

logger = logging.getLogger(__name__)


class LiveCore:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.layer: BaseChannelLayer = get_channel_layer()
        self.groups: dict[str, set[Page]] = {}  # every open room page here, by group
        self.listeners: dict[str, set[Listener]] = {}  # pages that take every message as is
        self.channel: str | None = None
        self.subscribed: dict[str, float] = {}  # group -> when it was last added
        self.subscription_lock = asyncio.Lock()
        self.list_frames: dict[tuple[str, str], tuple[str, bytes]] = {}  # by room, language
        self.readers = Readers(settings.LIVEROOM_READ_THREADS)
        self.snapshot_reads = SnapshotReads(self.readers)
        self.limits = SocketLimits(
            settings.LIVEROOM_SOCKETS_PER_MEMBER, settings.LIVEROOM_SOCKETS_PER_ADDRESS
        )
        self.tasks = Supervisor(self.loop)
        self.room_list = publish.RoomListRefresh(interval=settings.LIVEROOM_ROOMS_REFRESH_SECONDS)
        self.presence = PresenceAnnouncer(self.tasks, self.readers, self.room_list)
        self.watch = Watch(self)
        self.announcements = Announcements(self.loop, self.ready_pages)
        self.windows = Windows(self.tasks, self.readers)
        self.delivery = Delivery(self)

    @property
    def closed(self) -> bool:
        return self.tasks.closed

    # The registry

    async def open(self, page: Page) -> None:
        """Start handing room page `page` the messages of its group. Raises if the channel
        layer does not take a new subscription within LIVEROOM_BROADCAST_TIMEOUT."""
        group = page.group_name
        pages = self.groups.get(group)
        if pages is None:
            pages = self.groups[group] = set()
            metrics.rooms_served.inc()
        if page not in pages:
            pages.add(page)
            metrics.open_pages.labels("room").inc()
        try:
            await self.subscribe(group)
        except BaseException:
            self.close(page)
            raise
        self.start_tasks()

    def watch_page(self, page: Page) -> None:
        """`page` has its first list: watch it, and count it as its member's."""
        self.tasks.supervise("watch", self.watch.run)
        self.presence.page_opened(page)

    def close(self, page: Page) -> None:
        """Forget `page`; a room's last page here takes its cached lists and subscription."""
        self.presence.page_closed(page)
        group = page.group_name
        pages = self.groups.get(group)
        if pages is None or page not in pages:
            return
        pages.discard(page)
        metrics.open_pages.labels("room").dec()
        if pages:
            return
        del self.groups[group]
        metrics.rooms_served.dec()
        member_lists.forget(page.room_slug)
        for key in [key for key in self.list_frames if key[0] == page.room_slug]:
            del self.list_frames[key]
        self.announcements.forget(group)
        self.delivery.forget(group)
        self.tasks.spawn(self.unsubscribe_if_unused(group))

    async def listen(self, listener: Listener) -> None:
        """Start writing every message of `listener.group_name` to its socket, as it is."""
        listeners = self.listeners.setdefault(listener.group_name, set())
        if listener not in listeners:
            listeners.add(listener)
            metrics.open_pages.labels("rooms").inc()
        try:
            await self.subscribe(listener.group_name)
        except BaseException:
            self.stop_listening(listener)
            raise
        self.start_tasks()

    def stop_listening(self, listener: Listener) -> None:
        listeners = self.listeners.get(listener.group_name)
        if listeners is None or listener not in listeners:
            return
        listeners.discard(listener)
        metrics.open_pages.labels("rooms").dec()
        if not listeners:
            del self.listeners[listener.group_name]
            self.delivery.forget(listener.group_name)
            self.tasks.spawn(self.unsubscribe_if_unused(listener.group_name))

    def start_tasks(self) -> None:
        self.tasks.supervise("room messages", self.receive)
        if cleanup.sweep_interval() is not None:
            self.tasks.supervise("sweeps", self.run_sweeps)

    def room_pages(self) -> list[Page]:
        """The room pages that have their first list."""
        return [page for pages in self.groups.values() for page in pages if page.ready]

    def ready_pages(self, group: str) -> list[Page]:
        """The pages of one room that have their first list."""
        return [page for page in self.groups.get(group, ()) if page.ready]

    def is_open(self, page: Page) -> bool:
        return page in self.groups.get(page.group_name, ())

    # The subscription

    async def subscribe(self, group: str) -> None:
        """Add this process's channel to `group` (a group's later pages wait for nothing); each
        layer call has its own timeout, not the wait for the subscriptions before it (pages
        arriving together must not time out in a queue while the layer is healthy)."""
        if group in self.subscribed:
            return
        timeout = settings.LIVEROOM_BROADCAST_TIMEOUT
        async with self.subscription_lock:
            if self.channel is None:
                self.channel = await asyncio.wait_for(self.layer.new_channel(), timeout)
            if group not in self.subscribed:
                await asyncio.wait_for(self.layer.group_add(group, self.channel), timeout)
                self.subscribed[group] = time.monotonic()

    async def unsubscribe_if_unused(self, group: str) -> None:
        async with self.subscription_lock:
            if group in self.groups or group in self.listeners or group not in self.subscribed:
                return  # a page of the group came back meanwhile
            del self.subscribed[group]
            try:
                await asyncio.wait_for(
                    self.layer.group_discard(group, self.channel),
                    settings.LIVEROOM_BROADCAST_TIMEOUT,
                )
            except Exception as error:
                logger.info("Left group %s while the layer is down: %s", group, error)

    async def renew_subscriptions(self) -> None:
        """Add this process's channel to its groups again before the layer's group expiry
        (the in-memory layer forgets members after it) could drop it."""
        expiry = getattr(self.layer, "group_expiry", None)
        if not expiry or self.channel is None:
            return
        due = time.monotonic() - expiry / 3
        for group in [group for group, added in self.subscribed.items() if added <= due]:
            async with self.subscription_lock:
                if group in self.subscribed:
                    await self.layer.group_add(group, self.channel)
                    self.subscribed[group] = time.monotonic()

    async def receive(self) -> None:
        """Take the layer's messages as they come (its channel never fills behind a slow
        delivery) and hand them to each room's pages a window at a time."""
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as error:  # the layer reconnects by itself
                logger.warning("Room messages unavailable: %s: %s", type(error).__name__, error)
                await asyncio.sleep(1)
                continue
            self.delivery.gather(message)

    # Snapshots and the lists they share

    async def snapshot(
        self, page: Page, session_key: str, *, check_session: bool
    ) -> snapshots.Snapshot | None:
        """The room as `page`'s member sees it now, from this room's cached list while the
        room's version is the same."""
        snapshot = await self.snapshot_reads.read(
            page.room_slug, session_key, check_session=check_session, language=page.language
        )
        if page.group_name not in self.groups:  # the room's last page closed meanwhile
            member_lists.forget(page.room_slug)
        return snapshot

    def list_frame(self, room_slug: str, language: str, members_html: str) -> bytes:
        """The frame of a room's list in one language, made once for every page that gets it
        while it stays current (MemberList keeps one string per version and presence: same
        string, same list)."""
        cached = self.list_frames.get((room_slug, language))
        if cached is None or cached[0] is not members_html:
            cached = (members_html, text_frame(members_html))
            if room_group(room_slug) in self.groups:
                self.list_frames[room_slug, language] = cached
        return cached[1]

    # Sweeps

    async def run_sweeps(self) -> None:
        """Remove idle members and empty rooms every sweep interval, for as long as this
        process runs (liveroom/rooms/cleanup.py); the members removed leave as in a request."""
        while (interval := cleanup.sweep_interval()) is not None:
            await asyncio.sleep(interval)
            await after_response.sending_after(
                lambda: self.readers.run(cleanup.sweeps.now_and_then)
            )

    async def aclose(self) -> None:
        """Stop every task and forget every page (pages themselves are closed by the server)."""
        tasks = self.tasks.cancel() + self.snapshot_reads.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.presence.aclose()
        for room_pages in self.groups.values():
            for page in room_pages:
                metrics.open_pages.labels("room").dec()
                member_lists.forget(page.room_slug)
        for listeners in self.listeners.values():
            metrics.open_pages.labels("rooms").dec(len(listeners))
        metrics.rooms_served.dec(len(self.groups))
        self.groups.clear()
        self.listeners.clear()
        self.list_frames.clear()
        self.announcements.clear()
        self.delivery.outboxes.clear()
        self.readers.close()
        self.windows.close()


_cores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveCore]" = (
    weakref.WeakKeyDictionary()
)


def live_core() -> LiveCore:
    """This process's LiveCore, for the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    core = _cores.get(loop)
    if core is None or core.closed:
        core = _cores[loop] = LiveCore()
    return core
