"""One LiveCore per process (per event loop): the owner of everything live there.

It keeps the open pages (room pages by group; /rooms/ pages as listeners of a plain broadcast
group), the one channel-layer channel subscribed to the groups of every room with pages here,
and the task that hands each message to the group's pages in one pass: framed once, written to
each socket; a page that needs more than a forward is handled in a task of its own. It keeps
the frames of the rooms' lists and the reader threads snapshots are read in (at most
LIVEROOM_READ_THREADS at once, never queued behind the threads that serve HTTP requests; the
snapshots a room's pages ask for together are read together, liveroom/live/snapshot_reads.py).

What it starts has modules of its own: the watch (liveroom/live/watch.py), presence announcing
(announcer.py), and the supervisor of its tasks (supervisor.py): a message that fails is
logged and the other pages still get it; a task that dies is logged, counted and started again.
Nothing here waits on the event loop from a worker thread: database work runs in threads,
publishing stays on the loop.
"""

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from liveroom import metrics
from liveroom.live import after_response, publish
from liveroom.live.announcements import Announcements
from liveroom.live.announcer import PresenceAnnouncer
from liveroom.live.limits import SocketLimits
from liveroom.live.messages import (
    BATCH_EVENT,
    CHANGE_EVENT,
    PRESENCE_EVENT,
    Message,
    RoomBatch,
    room_group,
)
from liveroom.live.page import (
    FORWARD,
    GAP_SECONDS,
    HANDLE,
    HOLD,
    RELEASE,
    Decision,
    Listener,
    Page,
)
from liveroom.live.readers import Readers
from liveroom.live.rendering import announcement_html, html_of
from liveroom.live.snapshot_reads import SnapshotReads
from liveroom.live.sockets import text_frame
from liveroom.live.supervisor import Supervisor
from liveroom.live.watch import Watch
from liveroom.rooms import cleanup, fragments, snapshots
from liveroom.rooms.member_lists import member_lists

logger = logging.getLogger(__name__)

PASS_SECONDS = 0.0003  # of sending before a delivery pass yields to the event loop
# A room's pages get at most one frame of its messages in each window: a message in a quiet room
# goes at once; those that come while one is going out are gathered, and go out together.
WINDOW_SECONDS = 0.1


@dataclass
class Outbox:
    """A room's messages not yet handed to its pages, and when the last were."""

    messages: list[Message] = field(default_factory=list)
    sent_at: float = float("-inf")  # loop time
    sending: bool = False  # a task is handing them to the pages


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
        self.outboxes: dict[str, Outbox] = {}
        self.failed_deliveries = 0

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
        self.outboxes.pop(group, None)
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
            self.outboxes.pop(listener.group_name, None)
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
            self.gather(message)

    def gather(self, message: Message | RoomBatch) -> None:
        group = message["group"]
        outbox = self.outboxes.get(group)
        if outbox is None:
            outbox = self.outboxes[group] = Outbox()
        if message["type"] == BATCH_EVENT:
            outbox.messages.extend(message["messages"])
        else:
            outbox.messages.append(message)
        if not outbox.sending:
            outbox.sending = True
            self.tasks.spawn(self.send_gathered(group, outbox))

    async def send_gathered(self, group: str, outbox: Outbox) -> None:
        """Hand the room's gathered messages to its pages, one batch a window, until none
        wait (a message that failed is logged by `deliver`; the watch heals what it missed)."""
        try:
            while outbox.messages:
                wait = outbox.sent_at + WINDOW_SECONDS - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                batch, outbox.messages = outbox.messages, []
                outbox.sent_at = self.loop.time()
                await self.deliver(batch)
        finally:
            outbox.sending = False  # kept, with when it last sent, while the room has pages here
            unused = group not in self.groups and group not in self.listeners
            if unused and self.outboxes.get(group) is outbox and not outbox.messages:
                del self.outboxes[group]

    # Delivery

    async def deliver(self, messages: list[Message]) -> None:
        """Hand a room's `messages` (in the order they came) to every page of the room: the ones
        a page forwards as they are go in one frame, rendered once per language and framed once
        for every page that forwards the same ones (nearly always: all of them); one page's
        failure is not another's. The first page they are new to decides whether their words
        are said now or with the room's next announcement (liveroom/live/announcements.py)."""
        group = messages[0]["group"]
        if listeners := self.listeners.get(group):  # each message is the whole list: the last
            self.send_in_languages(list(listeners), messages[-1])
        pages = list(self.groups.get(group, ()))
        if len(messages) == 1:  # a quiet room: as before gathering
            await self.deliver_one(group, messages[0], pages)
        else:
            await self.deliver_batch(group, messages, pages)
        if pages or listeners:
            now = time.time()
            for message in messages:
                if sent_at := message.get("sent_at"):
                    metrics.delivery_seconds.observe(max(0.0, now - sent_at))

    async def deliver_one(self, group: str, message: Message, pages: list[Page]) -> None:
        frames: dict[str, bytes] = {}  # by language, for every page that forwards it as is
        said: list[Message] | None = None  # what its frame says (decided once, when forwarded)
        handled: list[Page] = []
        next_yield = time.perf_counter() + PASS_SECONDS
        for page in pages:
            try:
                decision = page.triage(message)
                if decision is FORWARD:  # nearly always: kept to the point
                    frame = frames.get(page.language)
                    if frame is None:
                        if said is None:
                            said = self.announcements.now(group, [message])
                        frame = frames[page.language] = self.frame_of(
                            [message], page.language, said
                        )
                    page.socket.send(frame)
                else:
                    self.act(page, message, decision, handled)
            except Exception:
                self.failed_deliveries += 1
                logger.exception("Room messages were not delivered to one page")
            if time.perf_counter() >= next_yield:
                await asyncio.sleep(0)
                next_yield = time.perf_counter() + PASS_SECONDS
        if handled:
            self.handle(message, handled)

    async def deliver_batch(self, group: str, messages: list[Message], pages: list[Page]) -> None:
        """A window's messages: in order of version (requests publish independently, so they
        come shuffled), each page sent what it shows of them, the changes it held that they
        release included, in one frame; pages that show the same share the frame."""
        messages = sorted(messages, key=in_order)
        frames: dict[tuple[str, tuple[int, ...] | None], bytes] = {}  # language, what it shows
        said: list[Message] | None = None  # what the frames say (decided once, when shown)
        handled: dict[int, tuple[Message, list[Page]]] = {}  # by message
        next_yield = time.perf_counter() + PASS_SECONDS
        for page in pages:
            try:
                shown: list[Message] = []
                every = all([self.take(page, message, shown, handled) for message in messages])
                if shown:
                    key = None if every else tuple(map(id, shown))
                    frame = frames.get((page.language, key))
                    if frame is None:
                        if said is None:
                            said = self.announcements.now(group, messages)
                        frame = frames[page.language, key] = self.frame_of(
                            shown, page.language, said
                        )
                    page.socket.send(frame)
            except Exception:
                self.failed_deliveries += 1
                logger.exception("Room messages were not delivered to one page")
            if time.perf_counter() >= next_yield:
                await asyncio.sleep(0)
                next_yield = time.perf_counter() + PASS_SECONDS
        for message, handled_pages in handled.values():
            self.handle(message, handled_pages)

    def take(
        self,
        page: Page,
        message: Message,
        shown: list[Message],
        handled: dict[int, tuple[Message, list[Page]]],
    ) -> bool:
        """What `page` makes of `message` in a batch: added to what it is `shown` (with the held
        changes it releases), held, or handled later; True if it is simply shown."""
        decision = page.triage(message)
        if decision is FORWARD:
            shown.append(message)
            return True
        if decision is RELEASE:
            shown.append(message)
            while (held := page.next_held()) is not None:
                self.take(page, held, shown, handled)
        elif decision is HOLD:
            self.loop.call_later(GAP_SECONDS, self.check_gap, page)
        elif decision is HANDLE:
            handled.setdefault(id(message), (message, []))[1].append(page)
        return False

    @staticmethod
    def frame_of(messages: list[Message], language: str, said: list[Message]) -> bytes:
        """`messages` for pages in `language`, in one frame, with the words of `said`."""
        html = "".join(html_of(message, language) for message in messages)
        if said:
            html += announcement_html(said, language)
        return text_frame(html)

    def act(self, page: Page, message: Message, decision: Decision, handled: list[Page]) -> None:
        """What a page decided for a message, but a plain forward; pages that need it handled
        are added to `handled`."""
        if decision is FORWARD or decision is RELEASE:
            page.socket.send(text_frame(html_of(message, page.language)))
            if decision is RELEASE and (held := page.next_held()) is not None:
                self.deliver_to(page, held)
        elif decision is HOLD:
            self.loop.call_later(GAP_SECONDS, self.check_gap, page)
        elif decision is HANDLE:
            handled.append(page)

    def deliver_to(self, page: Page, message: Message) -> None:
        """One message to one page, as `deliver` would hand it."""
        handled: list[Page] = []
        self.act(page, message, page.triage(message), handled)
        if handled:
            self.handle(message, handled)

    def handle(self, message: Message, pages: list[Page]) -> None:
        """What the pages that said HANDLE to one message need, done once for all of them: a
        late presence message, the current states of its members, rendered once; a change of
        the pages' own member (a rename from another tab or the admin), one snapshot for all of
        that member's pages, however many they opened. Anything else (a leave, a removal, a
        closed room), each page on its own."""
        if message["type"] == PRESENCE_EVENT:
            self.tasks.spawn(self.send_presence_now(message["members"], pages))
        elif message["type"] == CHANGE_EVENT and not message["left"]:
            self.tasks.spawn(self.refresh_own(pages))
        else:
            for page in pages:
                self.tasks.spawn(page.handle(message))

    async def refresh_own(self, pages: list[Page]) -> None:
        """Pages of one member, renamed from another tab: one snapshot, each page sent what it
        lacks (nearly always its own part alone), in small pieces."""
        snapshot = await pages[0].read_snapshot()
        if snapshot is None:
            return  # closed: the session or membership is gone, or the database is down
        next_yield = time.perf_counter() + PASS_SECONDS
        for page in pages:
            page.show_own_change(snapshot)
            if time.perf_counter() >= next_yield:
                await asyncio.sleep(0)
                next_yield = time.perf_counter() + PASS_SECONDS

    def check_gap(self, page: Page) -> None:
        """A change held for GAP_SECONDS still lacks the one before it: that one was lost."""
        if self.is_open(page) and page.gap_open():
            self.tasks.spawn(page.send_snapshot())

    async def send_presence_now(self, member_ids: list[int], pages: list[Page]) -> None:
        """A late presence message (processes publish independently) may be older than what
        pages show: send them those members' current states instead, rendered once a
        language."""
        rendered = await database_sync_to_async(fragments.render_presence_now)(
            room_slug=pages[0].room_slug,
            member_ids=member_ids,
            languages={page.language for page in pages},
        )
        send_rendered(pages, rendered)

    @staticmethod
    def send_in_languages(listeners: list[Listener], message: Message) -> None:
        frames: dict[str, bytes] = {}
        for listener in listeners:
            frame = frames.get(listener.language)
            if frame is None:
                frame = frames[listener.language] = text_frame(html_of(message, listener.language))
            listener.socket.send(frame)

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
        self.outboxes.clear()
        self.readers.close()


def send_rendered(pages: list[Page], rendered: dict[str, str]) -> None:
    """To each page the swaps rendered in its language (`rendered`: by language), framed once
    a language."""
    frames = {language: text_frame(html) for language, html in rendered.items()}
    for page in pages:
        page.socket.send(frames[page.language])


ORDER = {CHANGE_EVENT: 0, PRESENCE_EVENT: 1}  # then a closed room's, last


def in_order(message: Message) -> tuple[int, int]:
    """Where `message` goes among a window's: changes by version, presence by sequence."""
    number = message.get("version") or message.get("sequence") or 0
    return ORDER.get(message["type"], 2), number  # type: ignore[return-value]


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
