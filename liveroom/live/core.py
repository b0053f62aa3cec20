"""One LiveCore per process (per event loop): the owner of everything live there.

- The open pages, in one registry (group -> pages), registered by the consumers' connect and
  forgotten by their disconnect.
- The subscription: one channel-layer channel, in the group of every room with pages here, and
  one task that hands each message to the group's pages in one pass: framed once, written to
  each socket. A page that needs more than a forward is handled in a task of its own.
- The watch: every LIVEROOM_WATCH_INTERVAL seconds, pages whose version differs from the
  database's get a fresh snapshot (pages of a room that is gone are told and closed), Redis is
  checked (pages are asked to reconnect when it went away or was replaced), group memberships
  are renewed before any layer can expire them, and heartbeats go out.
- Presence counting (a Tracker) and what it reports: rendered per room and published.
- The sweeps that remove idle members and empty rooms, on a timer (liveroom/rooms/cleanup.py).
- The sockets each member and each client address has open here, against their limits.
- The frames of the rooms' member lists, and the reader threads snapshots are made in: at most
  LIVEROOM_READ_THREADS at once, never queued behind the threads that serve HTTP requests; the
  snapshots a room's pages ask for together are read together (liveroom/live/snapshot_reads.py). A
  room's list (liveroom/rooms/fragments.py, shared with page loads) and frame go with its last
  page here.

Its tasks are supervised: a message that fails is logged and the other pages still get it; a
task that dies is logged, counted and started again. Nothing here waits on the event loop from
a worker thread: database work runs in threads, publishing stays on the loop.
"""

import asyncio
import logging
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.db import DatabaseError

from liveroom import metrics
from liveroom.live import after_response, publish
from liveroom.live.limits import SocketLimits
from liveroom.live.messages import (
    CHANGE_EVENT,
    PRESENCE_EVENT,
    ROOMS_GROUP,
    Message,
    RoomPresenceChange,
    room_group,
)
from liveroom.live.page import (
    FORWARD,
    GAP_SECONDS,
    HANDLE,
    HOLD,
    RELEASE,
    Decision,
    Page,
    RoomPage,
)
from liveroom.live.readers import Readers
from liveroom.live.redis_check import RedisCheck
from liveroom.live.snapshot_reads import SnapshotReads
from liveroom.live.sockets import text_frame
from liveroom.presence import PresenceChange, presence_sequences, stores
from liveroom.presence.tracker import Tracker
from liveroom.rooms import cleanup, fragments, idle
from liveroom.rooms.models import Room

logger = logging.getLogger(__name__)

PRESENCE_HEAL_SECONDS = 5.0  # a presence message this late is taken as lost
PASS_SECONDS = 0.0003  # of sending before a delivery pass yields to the event loop
RESTART_SECONDS = 1.0  # before a task that died is started again

Run = Callable[[], Coroutine[Any, Any, None]]


class LiveCore:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.layer: BaseChannelLayer = get_channel_layer()
        self.groups: dict[str, set[Page]] = {}  # every open page here, by group
        self.present: dict[Page, tuple[str, int]] = {}  # counted by the tracker: room, member
        self.channel: str | None = None
        self.subscribed: dict[str, float] = {}  # group -> when it was last added
        self.subscription_lock = asyncio.Lock()
        self.list_frames: dict[str, tuple[str, bytes]] = {}
        self.readers = Readers(settings.LIVEROOM_READ_THREADS)
        self.snapshot_reads = SnapshotReads(self.readers)
        self.limits = SocketLimits(
            settings.LIVEROOM_SOCKETS_PER_MEMBER, settings.LIVEROOM_SOCKETS_PER_ADDRESS
        )
        self.tracker: Tracker | None = None
        self.room_list = publish.RoomListRefresh(interval=settings.LIVEROOM_ROOMS_REFRESH_SECONDS)
        self.tasks: dict[str, asyncio.Task] = {}  # supervised, by name
        self.restarts: Counter[str] = Counter()
        self.failed_deliveries = 0
        self.database_reachable = True  # as the watch last found it
        self.handlers: set[asyncio.Task] = set()  # one-off work for single pages
        self.closed = False

    # The registry

    async def open(self, page: Page) -> None:
        """Start handing `page` the messages of its group. Raises if the channel layer does not
        take a new subscription within LIVEROOM_BROADCAST_TIMEOUT."""
        group = page.group_name
        pages = self.groups.get(group)
        if pages is None:
            pages = self.groups[group] = set()
            if page.room_slug is not None:
                metrics.rooms_served.inc()
        if page not in pages:
            pages.add(page)
            metrics.open_pages.labels(page_kind(page)).inc()
        if group not in self.subscribed:  # a room's later pages wait for nothing
            try:
                await self.subscribe(group)
            except BaseException:
                self.close(page)
                raise
        self.supervise("room messages", self.receive)
        if cleanup.sweep_interval() is not None:
            self.supervise("sweeps", self.run_sweeps)

    def watch(self, page: Page) -> None:
        """`page` has its first list: watch it, and count it as its member's (room pages)."""
        self.supervise("watch", self.run_watch)
        if settings.LIVEROOM_PRESENCE and page.room_slug is not None and page.member_id:
            self.present[page] = (page.room_slug, page.member_id)
            self.presence_tracker().page_opened(page.room_slug, page.member_id)

    def close(self, page: Page) -> None:
        """Forget `page`; a room's last page here takes its cached lists and subscription."""
        if (counted := self.present.pop(page, None)) and self.tracker is not None:
            self.tracker.page_closed(*counted)
        group = page.group_name
        pages = self.groups.get(group)
        if pages is None or page not in pages:
            return
        pages.discard(page)
        metrics.open_pages.labels(page_kind(page)).dec()
        if pages:
            return
        del self.groups[group]
        if page.room_slug is not None:
            metrics.rooms_served.dec()
            fragments.member_lists.forget(page.room_slug)
            self.list_frames.pop(page.room_slug, None)
        self.spawn(self.unsubscribe_if_unused(group))

    def room_pages(self) -> list[Page]:
        """The room pages that have their first list."""
        return [
            page
            for pages in self.groups.values()
            for page in pages
            if page.room_slug is not None and page.ready
        ]

    # The subscription

    async def subscribe(self, group: str) -> None:
        """Add this process's channel to `group`; each layer call has its own timeout, not the
        wait for the subscriptions before it (pages arriving together must not time out in a
        queue while the layer is healthy)."""
        timeout = settings.LIVEROOM_BROADCAST_TIMEOUT
        async with self.subscription_lock:
            if self.channel is None:
                self.channel = await asyncio.wait_for(self.layer.new_channel(), timeout)
            if group not in self.subscribed:
                await asyncio.wait_for(self.layer.group_add(group, self.channel), timeout)
                self.subscribed[group] = time.monotonic()

    async def unsubscribe_if_unused(self, group: str) -> None:
        async with self.subscription_lock:
            if group in self.groups or group not in self.subscribed:
                return  # a page of the room came back meanwhile
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
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as error:  # the layer reconnects by itself
                logger.warning("Room messages unavailable: %s: %s", type(error).__name__, error)
                await asyncio.sleep(1)
                continue
            await self.deliver(message)

    async def deliver(self, message: Message) -> None:
        """Hand `message` to every page of its group; one page's failure is not another's."""
        pages = list(self.groups.get(message["group"], ()))
        frame = None  # framed at most once, for every page that forwards it as is
        handled: list[Page] = []
        next_yield = time.perf_counter() + PASS_SECONDS
        for page in pages:
            try:
                decision = page.triage(message)
                if decision is FORWARD:  # nearly always: kept to the point
                    frame = frame or text_frame(message["html"])
                    page.socket.send(frame)
                else:
                    self.act(page, message, decision, handled)
            except Exception:
                self.failed_deliveries += 1
                logger.exception("A %s message was not delivered to one page", message["type"])
            if time.perf_counter() >= next_yield:
                await asyncio.sleep(0)
                next_yield = time.perf_counter() + PASS_SECONDS
        if handled:
            self.handle(message, handled)
        if pages and (sent_at := message.get("sent_at")):
            metrics.delivery_seconds.observe(max(0.0, time.time() - sent_at))

    def act(self, page: Page, message: Message, decision: Decision, handled: list[Page]) -> None:
        """What a page decided for a message, but a plain forward; pages that need it handled
        are added to `handled`."""
        if decision is FORWARD or decision is RELEASE:
            page.socket.send(text_frame(message["html"]))
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
        the pages' own member (a rename or a leave from another tab), one snapshot for all of
        that member's pages, however many they opened."""
        if message["type"] == PRESENCE_EVENT:
            self.spawn(self.send_presence_now(message["members"], pages))
        elif message["type"] == CHANGE_EVENT and not message["left"]:
            self.spawn(self.refresh_own(cast(list[RoomPage], pages)))
        else:
            for page in pages:
                self.spawn(page.handle(message))

    async def refresh_own(self, pages: list[RoomPage]) -> None:
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
        if page in self.groups.get(page.group_name, ()) and page.gap_open():
            self.spawn(page.send_snapshot())

    async def send_presence_now(self, member_ids: list[int], pages: list[Page]) -> None:
        """A late presence message (processes publish independently) may be older than what
        pages show: send them those members' current states instead, rendered once."""
        html = await database_sync_to_async(fragments.render_presence_now)(
            room_slug=pages[0].room_slug, member_ids=member_ids
        )
        self.send_to_each(pages, text_frame(html))

    @staticmethod
    def send_to_each(pages: list[Page], frame: bytes) -> None:
        for page in pages:
            page.socket.send(frame)

    # Snapshots and the lists they share

    async def snapshot(
        self, page: Page, session_key: str, *, check_session: bool
    ) -> fragments.Snapshot | None:
        """The room as `page`'s member sees it now, from this room's cached list while the
        room's version is the same."""
        room_slug = page.room_slug
        assert room_slug is not None
        snapshot = await self.snapshot_reads.read(
            room_slug, session_key, check_session=check_session
        )
        if page.group_name not in self.groups:  # the room's last page closed meanwhile
            fragments.member_lists.forget(room_slug)
        return snapshot

    def list_frame(self, room_slug: str, members_html: str) -> bytes:
        """The frame of a room's list, made once for every page that gets it while it stays
        current (MemberList keeps one string per version and presence: same string, same list)."""
        cached = self.list_frames.get(room_slug)
        if cached is None or cached[0] is not members_html:
            cached = (members_html, text_frame(members_html))
            if room_group(room_slug) in self.groups:
                self.list_frames[room_slug] = cached
        return cached[1]

    # The watch

    async def run_watch(self) -> None:
        """Runs while this process has room pages; the next page starts it again."""
        interval = settings.LIVEROOM_WATCH_INTERVAL
        redis = RedisCheck(settings.REDIS_URL, timeout=interval) if settings.REDIS_URL else None
        # The store's presence sequences of the last PRESENCE_HEAL_SECONDS, a dict a tick.
        presence_seen: deque[dict[str, int]] = deque(
            maxlen=max(2, round(PRESENCE_HEAL_SECONDS / interval))
        )
        heartbeat = text_frame(fragments.render_heartbeat())
        tick = 0
        try:
            while pages := self.room_pages():
                if redis is not None and (code := await redis.close_code(len(pages))):
                    await self.close_pages(code)
                else:
                    await self.resync_pages(pages)
                    if settings.LIVEROOM_PRESENCE:
                        await self.heal_presence(pages, presence_seen)
                await self.renew_subscriptions()
                if settings.LIVEROOM_HEARTBEAT_SECONDS:
                    slices = max(1, round(settings.LIVEROOM_HEARTBEAT_SECONDS / interval))
                    tick = (tick + 1) % slices
                    self.send_to_each([page for page in pages if hash(page) % slices == tick],
                                      heartbeat)  # fmt: skip
                await asyncio.sleep(interval)
        finally:
            if redis is not None:
                await redis.aclose()

    async def run_sweeps(self) -> None:
        """Remove idle members and empty rooms every sweep interval, for as long as this
        process runs (liveroom/rooms/cleanup.py); the members removed leave as in a request."""
        while (interval := cleanup.sweep_interval()) is not None:
            await asyncio.sleep(interval)
            await after_response.sending_after(
                lambda: self.readers.run(cleanup.sweeps.now_and_then)
            )

    async def resync_pages(self, pages: list[Page]) -> None:
        """Bring every page to the database's version of its room, whoever wrote it: pages
        ahead of it (the database went back, as a restore does) get a snapshot at once; pages
        behind it get one if they are still behind GAP_SECONDS later (a change's own message
        is usually a moment away); pages of a room that is gone are told and closed."""
        shown = {page: page.version for page in pages}  # before the read: see below
        slugs = {page.room_slug for page in pages}
        try:
            versions = await database_sync_to_async(room_versions)(slugs)
        except DatabaseError as error:
            if self.database_reachable:
                logger.error(
                    "Database unreachable (%s: %s): pages catch up when it is back",
                    type(error).__name__, error, extra={"event": "database_lost"},
                )  # fmt: skip
            self.database_reachable = False
            return
        if not self.database_reachable:
            logger.info("Database reachable again", extra={"event": "database_back"})
            self.database_reachable = True
        gone, ahead, behind = [], [], []
        for page, version_shown in shown.items():
            version = versions.get(page.room_slug or "")
            if version is None:
                gone.append(page)
            # A page can only show a version the database had committed before the read began,
            # so a page ahead of the read is ahead of the database.
            elif version_shown > version:
                ahead.append(page)
            elif version_shown < version:
                behind.append((page, version))
        for page in gone:
            self.spawn(page.close_with_notice("closed"))
        if ahead:
            logger.warning(
                "%d pages were ahead of the database (restored?); sending them its list",
                len(ahead), extra={"event": "database_behind_pages"},
            )  # fmt: skip
            for room_slug in {page.room_slug for page in ahead if page.room_slug}:
                fragments.member_lists.forget(room_slug)
            for page in ahead:
                self.spawn(page.send_snapshot(rewind=True))
        if behind:
            self.loop.call_later(GAP_SECONDS, self.resync_still_behind, behind)

    def resync_still_behind(self, behind: list[tuple[Page, int]]) -> None:
        """Pages that missed a change (lost, skipped, or written outside the app) get a
        snapshot; pages the change reached meanwhile, or that closed, need nothing."""
        missed = [
            page
            for page, version in behind
            if page.version < version and page in self.groups.get(page.group_name, ())
        ]
        if missed:
            logger.info("%d pages missed a change; sending them the whole list", len(missed))
            for page in missed:
                self.spawn(page.send_snapshot())

    async def heal_presence(self, pages: list[Page], seen: deque[dict[str, int]]) -> None:
        """Pages showing older presence than the store had PRESENCE_HEAL_SECONDS ago, and no
        newer than a tick ago, missed a presence message (lost, or skipped when the layer was
        slow); messages only late under load are left to arrive. Each such room's presence now,
        rendered once, goes to them. `seen` gets the store's sequences now."""
        room_pages = cast(list[RoomPage], [page for page in pages if page.room_slug])
        try:
            sequences = await self.readers.run(
                presence_sequences, sorted({page.room_slug for page in room_pages})
            )
        except Exception as error:
            logger.warning("Cannot check presence: %s: %s", type(error).__name__, error)
            return
        due = seen[0] if len(seen) == seen.maxlen else {}
        seen.append(sequences)
        behind: dict[str, list[RoomPage]] = {}
        for page in room_pages:
            state = page.state
            stuck, state.presence_checked = (
                state.presence_seen == state.presence_checked,
                state.presence_seen,
            )
            if stuck and state.presence_seen < due.get(page.room_slug or "", 0):
                behind.setdefault(page.room_slug or "", []).append(page)
        for room_slug, stale in behind.items():
            logger.info("%d pages of %s missed presence; sending it whole", len(stale), room_slug)
            self.spawn(self.send_presence_all(room_slug, stale))

    async def send_presence_all(self, room_slug: str, pages: list[RoomPage]) -> None:
        html, sequence = await self.readers.run(fragments.render_presence_all, room_slug)
        frame = text_frame(html)
        for page in pages:
            if sequence > page.state.presence_seen:
                page.state.presence_shown(sequence)
                page.socket.send(frame)

    async def close_pages(self, code: int) -> None:
        """Close every room page of this process with `code` (they reconnect for a fresh list)."""
        pages = self.room_pages()
        await asyncio.gather(*(page.close(code=code) for page in pages), return_exceptions=True)

    # Presence

    def presence_tracker(self) -> Tracker:
        if self.tracker is None:
            self.tracker = Tracker(
                stores.for_writing(),
                on_change=self.presence_changed,
                on_leaving=lambda members: self.readers.run(idle.mark_seen, members),
            )
        self.supervise("presence", self.tracker.run)
        return self.tracker

    async def presence_changed(self, changes: list[PresenceChange]) -> None:
        """The tracker's callback: each room's change rendered (in a thread) and published
        (from here) on its own, then the /rooms/ list refreshed (without waiting for it)."""
        await asyncio.gather(*(self.announce(change) for change in changes))
        self.spawn(self.room_list.refresh())  # at most once a second: the tracker goes on

    async def announce(self, change: PresenceChange) -> None:
        try:
            html, members = await database_sync_to_async(fragments.render_presence_change)(change)
        except Exception as error:  # the watch and the next snapshot show the truth
            logger.warning("Presence not announced: %s: %s", type(error).__name__, error)
            return
        group = room_group(change.room_slug)
        message: RoomPresenceChange = {
            "type": PRESENCE_EVENT,
            "group": group,
            "sequence": change.sequence,
            "members": members,
            "html": html,
        }
        await publish.publish(group, message, what="presence")

    # Tasks

    def supervise(self, name: str, run: Run) -> None:
        """Run `run()` as this core's task `name` unless it runs already; if it dies, log it,
        count it and start it again."""
        if self.closed or name in self.tasks:
            return
        task = self.loop.create_task(run(), name=f"liveroom {name}")
        self.tasks[name] = task
        task.add_done_callback(lambda task: self._ended(name, run, task))

    def _ended(self, name: str, run: Run, task: asyncio.Task) -> None:
        if self.tasks.get(name) is task:
            del self.tasks[name]
        if task.cancelled() or self.closed or task.exception() is None:
            return  # stopped, or done (the watch ends with the last page)
        self.restarts[name] += 1
        metrics.live_task_restarts.labels(name).inc()
        logger.error(
            "Live task %r died (restart %d): %s",
            name, self.restarts[name], task.exception(), exc_info=task.exception(),
        )  # fmt: skip
        self.loop.call_later(RESTART_SECONDS, self.supervise, name, run)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coroutine)
        self.handlers.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task) -> None:
        self.handlers.discard(task)
        if not task.cancelled() and (error := task.exception()):
            logger.info("A page's message was not handled: %s: %s", type(error).__name__, error)

    async def aclose(self) -> None:
        """Stop every task and forget every page (pages themselves are closed by the server)."""
        self.closed = True
        tasks = [*self.tasks.values(), *self.handlers]
        for task in tasks:
            task.cancel()
        tasks += self.snapshot_reads.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.tracker is not None:
            await self.tracker.aclose()
        for page in [page for pages in self.groups.values() for page in pages]:
            metrics.open_pages.labels(page_kind(page)).dec()
            if page.room_slug is not None:
                fragments.member_lists.forget(page.room_slug)
        metrics.rooms_served.dec(sum(1 for group in self.groups if group != ROOMS_GROUP))
        self.groups.clear()
        self.present.clear()
        self.list_frames.clear()
        self.readers.close()


def page_kind(page: Page) -> str:
    return "rooms" if page.room_slug is None else "room"


def room_versions(slugs: set[str | None]) -> dict[str, int]:
    return dict(Room.objects.filter(slug__in=slugs).values_list("slug", "version"))


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
