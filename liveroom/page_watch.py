"""Keeps this process's open pages in step with the database, whatever the channel layer lost.

The channel layer is a lossy transport: the database is the truth. One task per process, started
with its first page, checks every LIVEROOM_WATCH_INTERVAL seconds:

- Heartbeat: every LIVEROOM_HEARTBEAT_SECONDS each page gets a fresh connection indicator,
  rendered once; a page that stops getting it shows "reconnecting…" (CSS, no script). Each
  tick serves one slice of the pages, so the sends are spread out instead of stalling changes.
- Room versions (one query for all rooms with open pages here). A page still behind the version
  the previous check saw has missed a change for good, and gets a fresh snapshot.
- Redis, when configured (one INFO call). Pub/sub keeps nothing, so while Redis is unreachable
  or across a restart this process's pages lose changes. When Redis stops answering, the pages
  are closed with TRY_AGAIN_LATER; when a new Redis server answers (another run id), with
  SERVICE_RESTART. htmx reconnects after either, and each page then gets its snapshot.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from redis import asyncio as aioredis

from liveroom import room_hub
from liveroom.broadcast import render_heartbeat
from liveroom.close_codes import SERVICE_RESTART, TRY_AGAIN_LATER
from liveroom.daphne_server import prepare
from liveroom.models import Room

logger = logging.getLogger(__name__)

_pages: set = set()
_task: asyncio.Task | None = None


def watch(page) -> None:
    """Watch a consumer with `room_slug`, `version`, `socket`, `send_snapshot()`, `close(code)`."""
    global _task
    _pages.add(page)
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_watch_pages(), name="page-watch")


def unwatch(page) -> None:
    _pages.discard(page)


async def _watch_pages() -> None:
    global _task
    interval = settings.LIVEROOM_WATCH_INTERVAL
    redis = RedisCheck(settings.REDIS_URL, timeout=interval) if settings.REDIS_URL else None
    due_versions: dict[str, int] = {}
    heartbeat = render_heartbeat()
    heartbeat_frame = prepare(heartbeat)
    tick = 0
    try:
        while True:
            if redis is not None and (code := await redis.close_code()):
                await close_pages(code)
            else:
                due_versions = await _resync_pages_behind(due_versions)
            if settings.LIVEROOM_HEARTBEAT_SECONDS:
                slices = max(1, round(settings.LIVEROOM_HEARTBEAT_SECONDS / interval))
                tick = (tick + 1) % slices
                due = [page for page in _pages if hash(page) % slices == tick]
                await room_hub.send_to_each(due, heartbeat, heartbeat_frame)
            await asyncio.sleep(interval)
            if not _pages:
                _task = None  # the next page starts a new watch
                return
    finally:
        if redis is not None:
            await redis.aclose()


async def _resync_pages_behind(due_versions: dict[str, int]) -> dict[str, int]:
    """Snapshot pages behind the versions seen last time; return the versions seen now."""
    slugs = {page.room_slug for page in _pages}
    try:
        versions = await database_sync_to_async(_room_versions)(slugs)
    except DatabaseError as error:
        logger.warning("Cannot check room versions: %s: %s", type(error).__name__, error)
        return due_versions
    behind = [page for page in _pages if page.version < due_versions.get(page.room_slug, 0)]
    if behind:
        logger.info("%d pages missed a change; sending them the whole list", len(behind))
        await asyncio.gather(*(page.send_snapshot() for page in behind), return_exceptions=True)
    return versions


def _room_versions(slugs: set[str]) -> dict[str, int]:
    return dict(Room.objects.filter(slug__in=slugs).values_list("slug", "version"))


async def close_pages(code: int) -> None:
    """Close every watched page of this process with `code`."""
    pages = list(_pages)
    _pages.clear()
    await asyncio.gather(*(page.close(code=code) for page in pages), return_exceptions=True)


class RedisCheck:
    """Tells whether Redis went away or was replaced since the last call."""

    def __init__(self, url: str, timeout: float) -> None:
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.run_id: str | None = None
        self.reachable = True

    async def close_code(self) -> int | None:
        """The code to close pages with now, or None if they may stay."""
        try:
            info = await self.client.info("server")
        except Exception as error:
            was_reachable, self.reachable = self.reachable, False
            if was_reachable:
                logger.error("Redis unreachable (%s: %s): asking %d pages to retry",
                             type(error).__name__, error, len(_pages))  # fmt: skip
                return TRY_AGAIN_LATER
            return None
        restarted = self.run_id is not None and info["run_id"] != self.run_id
        if not self.reachable:
            logger.info("Redis reachable again")
        self.run_id, self.reachable = info["run_id"], True
        if restarted:
            logger.warning("Redis restarted: asking %d pages to reconnect", len(_pages))
            return SERVICE_RESTART
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
