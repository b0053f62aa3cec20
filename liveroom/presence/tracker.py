"""Counting one process's open pages per member, and telling the store what changed.

Several tabs are one member: the store hears of a member's first page here opening, or of their
last one here staying closed for the grace period (LIVEROOM_PRESENCE_GRACE_SECONDS), so a reload
is no visit. Changes are gathered for a moment and written in one batch. What the store says
changed goes to one callback, `on_change` (as Phoenix's Tracker calls `handle_diff`): the tracker
renders nothing and publishes nothing. Before the store hears that a member's last page here has
gone, `on_leaving` is told, so whatever keeps "last seen" has it before anyone can read the
member as away.
"""

import asyncio
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

from django.conf import settings

from liveroom import metrics
from liveroom.presence.store import PresenceChange, Store

logger = logging.getLogger(__name__)

# Seconds a process gathers presence changes before writing them together: at least
# BATCH_SECONDS, and longer with many pages open here, since each change is then announced to
# every page of the room (a second per 1,000 pages, up to MAX_BATCH_SECONDS).
BATCH_SECONDS = 0.1
MAX_BATCH_SECONDS = 5.0
PAGES_PER_BATCH_SECOND = 1000

OnChange = Callable[[list[PresenceChange]], Awaitable[None]]
OnLeaving = Callable[[set[int]], Awaitable[None]]


class Tracker:
    """This process's open pages per member, and what it has told the store of them. Runs on
    one event loop; `run()` renews this process's entries and sweeps those of dead ones."""

    def __init__(self, store: Store, on_change: OnChange, on_leaving: OnLeaving | None = None):
        self.store = store
        self.on_change = on_change
        self.on_leaving = on_leaving
        self.process = uuid.uuid4().hex[:12]
        self.loop = asyncio.get_running_loop()
        self.pages: Counter[tuple[str, int]] = Counter()
        self.page_count = 0
        self.closing: dict[tuple[str, int], float] = {}  # last page closed: until when to wait
        self.told: dict[str, set[int]] = {}  # per room, the members the store has from here
        self.flush_timer: asyncio.TimerHandle | None = None
        self.flush_lock = asyncio.Lock()
        self.flushes: set[asyncio.Task] = set()

    def page_opened(self, room_slug: str, member_id: int) -> None:
        key = (room_slug, member_id)
        self.pages[key] += 1
        self.page_count += 1
        self.closing.pop(key, None)
        self.schedule_flush()

    def page_closed(self, room_slug: str, member_id: int) -> None:
        key = (room_slug, member_id)
        self.pages[key] -= 1
        self.page_count -= 1
        if self.pages[key] > 0:
            return
        del self.pages[key]
        grace = settings.LIVEROOM_PRESENCE_GRACE_SECONDS
        self.closing[key] = self.loop.time() + grace
        self.loop.call_later(grace, self.schedule_flush)

    def schedule_flush(self) -> None:
        if self.flush_timer is None:
            by_pages = self.page_count / PAGES_PER_BATCH_SECOND
            delay = min(MAX_BATCH_SECONDS, max(BATCH_SECONDS, by_pages))
            self.flush_timer = self.loop.call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self.flush_timer = None
        task = self.loop.create_task(self.flush())
        self.flushes.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.flushes.discard)

    def wanted(self) -> dict[str, set[int]]:
        """Per room, the members this process has online, counting those in their grace."""
        now = self.loop.time()
        for key in [key for key, until in self.closing.items() if until <= now]:
            del self.closing[key]
        wanted: dict[str, set[int]] = defaultdict(set)
        for room_slug, member_id in [*self.pages, *self.closing]:
            wanted[room_slug].add(member_id)
        return wanted

    async def flush(self, *, renew: bool = False) -> None:
        """Tell the store what changed here (everything, to renew), and report the result."""
        ttl = settings.LIVEROOM_PRESENCE_EXPIRY_SECONDS * 3 / 4
        async with self.flush_lock:
            wanted, changes = self.wanted(), []
            await self.tell_leaving(wanted)
            for room_slug in wanted.keys() | self.told.keys():
                want, told = wanted.get(room_slug, set()), self.told.get(room_slug, set())
                arriving = want if renew else want - told
                if not arriving and not told - want:
                    continue
                try:
                    change = await self.store.update(
                        room_slug, self.process, arriving, told - want, ttl
                    )
                except Exception as error:  # retried at the next change or renewal
                    metrics.presence_errors.labels("update").inc()
                    logger.warning("Presence not saved: %s: %s", type(error).__name__, error)
                    continue
                self.told[room_slug] = want
                if change is not None:
                    changes.append(change)
            self.told = {room_slug: told for room_slug, told in self.told.items() if told}
        if changes:
            await self.on_change(changes)

    async def tell_leaving(self, wanted: dict[str, set[int]]) -> None:
        leaving = {
            member
            for room_slug, told in self.told.items()
            for member in told - wanted.get(room_slug, set())
        }
        if not leaving or self.on_leaving is None:
            return
        try:
            await self.on_leaving(leaving)
        except Exception as error:  # presence goes on without it
            logger.warning("Leaving members not recorded: %s: %s", type(error).__name__, error)

    async def run(self) -> None:
        """Renew this process's entries and sweep away those of processes that died."""
        period = settings.LIVEROOM_PRESENCE_EXPIRY_SECONDS / 4
        while True:
            await asyncio.sleep(period)
            await self.flush(renew=True)
            try:
                changes = await self.store.sweep()
            except Exception as error:
                metrics.presence_errors.labels("sweep").inc()
                logger.warning("Presence sweep failed: %s: %s", type(error).__name__, error)
                continue
            if changes:
                await self.on_change(changes)

    async def aclose(self) -> None:
        if self.flush_timer is not None:
            self.flush_timer.cancel()
        for task in list(self.flushes):
            task.cancel()
        await self.store.aclose()
