"""Whether Redis went away or was replaced, for the watch (liveroom/live/watch.py).

Pub/sub keeps nothing: while Redis is unreachable, or across a restart, a process's pages lose
changes. When Redis stops answering, pages are closed with TRY_AGAIN_LATER; when a new Redis
server answers (another run id), with SERVICE_RESTART. htmx reconnects after either, and each
page then gets its snapshot.
"""

import logging

from redis import asyncio as aioredis

from liveroom.wire import SERVICE_RESTART, TRY_AGAIN_LATER

logger = logging.getLogger(__name__)


class RedisCheck:
    def __init__(self, url: str, timeout: float) -> None:
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.run_id: str | None = None
        self.reachable = True

    async def close_code(self, pages: int) -> int | None:
        """The code to close this process's `pages` pages with now, or None if they may stay."""
        try:
            info = await self.client.info("server")
        except Exception as error:
            was_reachable, self.reachable = self.reachable, False
            if was_reachable:
                logger.error(
                    "Redis unreachable (%s: %s): asking %d pages to retry",
                    type(error).__name__, error, pages,
                    extra={"event": "redis_lost", "pages": pages},
                )  # fmt: skip
                return TRY_AGAIN_LATER
            return None
        restarted = self.run_id is not None and info["run_id"] != self.run_id
        if not self.reachable:
            logger.info("Redis reachable again", extra={"event": "redis_back"})
        self.run_id, self.reachable = info["run_id"], True
        if restarted:
            logger.warning(
                "Redis restarted: asking %d pages to reconnect", pages,
                extra={"event": "redis_restarted", "pages": pages},
            )  # fmt: skip
            return SERVICE_RESTART
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
