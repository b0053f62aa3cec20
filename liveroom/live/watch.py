"""The watch: what heals what the channel layer lost or never carried.

Every LIVEROOM_WATCH_INTERVAL seconds, while the process has room pages, it
- brings every page to the database's version of its room (docs/reliability.md): a write with
  no message (lost, or made outside the app) leaves pages behind; a restore leaves them ahead;
  a room that is gone leaves them with nothing to show;
- checks Redis: pages are asked to reconnect when it went away or was replaced;
- heals presence a page missed;
- renews the layer's group memberships before any layer can expire them, and sends heartbeats.
"""

import asyncio
import logging
from collections import deque
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.utils import translation

from liveroom.live.delivery import Delivery
from liveroom.live.page import GAP_SECONDS, Page
from liveroom.live.readers import Readers
from liveroom.live.redis_check import RedisCheck
from liveroom.live.sockets import text_frame
from liveroom.live.supervisor import Supervisor
from liveroom.presence import presence_sequences
from liveroom.rooms import fragments
from liveroom.rooms.member_lists import member_lists
from liveroom.rooms.models import Room

logger = logging.getLogger(__name__)

PRESENCE_HEAL_SECONDS = 5.0  # a presence message this late is taken as lost


class Watched(Protocol):
    """What the watch needs of the live core."""

    tasks: Supervisor
    readers: Readers
    delivery: Delivery

    def room_pages(self) -> list[Page]: ...

    def is_open(self, page: Page) -> bool: ...

    async def renew_subscriptions(self) -> None: ...


class Watch:
    def __init__(self, core: Watched) -> None:
        self.core = core
        self.database_reachable = True  # as the watch last found it

    async def run(self) -> None:
        """Runs while the process has room pages; the next page starts it again. Whether any
        are left is the last thing it looks at: a page that came while it closed its Redis
        client is watched too."""
        while self.core.room_pages():
            await self.watch_while_pages()

    async def watch_while_pages(self) -> None:
        interval = settings.LIVEROOM_WATCH_INTERVAL
        redis = RedisCheck(settings.REDIS_URL, timeout=interval) if settings.REDIS_URL else None
        # The store's presence sequences of the last PRESENCE_HEAL_SECONDS, a dict a tick.
        presence_seen: deque[dict[str, int]] = deque(
            maxlen=max(2, round(PRESENCE_HEAL_SECONDS / interval))
        )
        heartbeats = Heartbeats()
        tick = 0
        try:
            while pages := self.core.room_pages():
                if redis is not None and (code := await redis.close_code(len(pages))):
                    await asyncio.gather(*(page.close(code) for page in pages),
                                         return_exceptions=True)  # fmt: skip
                elif live := [page for page in pages if not page.paused]:  # paused: left be
                    await self.resync_pages(live)
                    if settings.LIVEROOM_PRESENCE:
                        await self.heal_presence(live, presence_seen)
                await self.core.renew_subscriptions()
                if settings.LIVEROOM_HEARTBEAT_SECONDS:
                    slices = max(1, round(settings.LIVEROOM_HEARTBEAT_SECONDS / interval))
                    tick = (tick + 1) % slices
                    for page in pages:
                        if hash(page) % slices == tick and not page.paused:
                            page.socket.send(heartbeats.frame(page.language))
                await asyncio.sleep(interval)
        finally:
            if redis is not None:
                await redis.aclose()

    async def resync_pages(self, pages: list[Page]) -> None:
        """Bring every page to the database's version of its room, whoever wrote it: pages
        ahead of it (the database went back, as a restore does) get a snapshot at once; pages
        behind it get one if GAP_SECONDS later they are still behind and have shown nothing
        new meanwhile (a change's own message is usually a moment away, and under load pages
        that are being sent changes catch up by themselves); pages of a room that is gone are
        told and closed."""
        shown = {page: page.version for page in pages}  # before the read: see below
        try:
            versions = await database_sync_to_async(room_versions)(
                {page.room_slug for page in pages}
            )
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
        spawn = self.core.tasks.spawn
        ahead, behind = [], []
        for page, version_shown in shown.items():
            version = versions.get(page.room_slug)
            if version is None:
                spawn(page.close_with_notice("closed"))
            # A page can only show a version the database had committed before the read began,
            # so a page ahead of the read is ahead of the database.
            elif version_shown > version:
                ahead.append(page)
            elif version_shown < version:
                behind.append((page, version_shown, version))
        if ahead:
            logger.warning(
                "%d pages were ahead of the database (restored?); sending them its list",
                len(ahead), extra={"event": "database_behind_pages"},
            )  # fmt: skip
            for room_slug in {page.room_slug for page in ahead}:
                member_lists.forget(room_slug)
            for group in {page.group_name for page in ahead}:
                self.core.delivery.rewound(group)
            for page in ahead:
                spawn(page.send_snapshot(rewind=True))
        if behind:
            asyncio.get_running_loop().call_later(GAP_SECONDS, self.resync_still_behind, behind)

    def resync_still_behind(self, behind: list[tuple[Page, int, int]]) -> None:
        """Pages that missed a change (lost, skipped, or written outside the app) get a
        snapshot. Pages the change reached meanwhile, pages still being sent changes, pages of
        a room whose change this process has and is still handing out (late only because the
        process is busy: a snapshot each would make it busier) and pages that closed need
        nothing (the next read looks again)."""
        on_the_way = self.core.delivery.on_the_way
        missed = [
            page
            for page, version_shown, version in behind
            if version_shown == page.version < version
            and not on_the_way(page.group_name, version)
            and self.core.is_open(page)
        ]
        if missed:
            logger.info("%d pages missed a change; sending them the whole list", len(missed))
            for page in missed:
                self.core.tasks.spawn(page.send_snapshot())

    async def heal_presence(self, pages: list[Page], seen: deque[dict[str, int]]) -> None:
        """Pages showing older presence than the store had PRESENCE_HEAL_SECONDS ago, and no
        newer than a tick ago, missed a presence message (lost, or skipped when the layer was
        slow); messages only late under load are left to arrive. Each such room's presence now,
        rendered once, goes to them. `seen` gets the store's sequences now."""
        try:
            sequences = await self.core.readers.run(
                presence_sequences, sorted({page.room_slug for page in pages})
            )
        except Exception as error:
            logger.warning("Cannot check presence: %s: %s", type(error).__name__, error)
            return
        due = seen[0] if len(seen) == seen.maxlen else {}
        seen.append(sequences)
        behind: dict[str, list[Page]] = {}
        for page in pages:
            state = page.state
            stuck, state.presence_checked = (
                state.presence_seen == state.presence_checked,
                state.presence_seen,
            )
            if stuck and state.presence_seen < due.get(page.room_slug, 0):
                behind.setdefault(page.room_slug, []).append(page)
        for room_slug, stale in behind.items():
            logger.info("%d pages of %s missed presence; sending it whole", len(stale), room_slug)
            self.core.tasks.spawn(self.send_presence_all(room_slug, stale))

    async def send_presence_all(self, room_slug: str, pages: list[Page]) -> None:
        rendered, sequence = await self.core.readers.run(
            fragments.render_presence_all, room_slug, {page.language for page in pages}
        )
        frames = {language: text_frame(html) for language, html in rendered.items()}
        for page in pages:
            if sequence > page.state.presence_seen:
                page.state.presence_shown(sequence)
                page.socket.send(frames[page.language])


class Heartbeats:
    """The connection indicator's frame, rendered once per language when first needed."""

    def __init__(self) -> None:
        self.frames: dict[str, bytes] = {}

    def frame(self, language: str) -> bytes:
        frame = self.frames.get(language)
        if frame is None:
            with translation.override(language):
                frame = self.frames[language] = text_frame(fragments.render_heartbeat())
        return frame


def room_versions(slugs: set[str]) -> dict[str, int]:
    return dict(Room.objects.filter(slug__in=slugs).values_list("slug", "version"))
