"""Publishing to the channel layer, from the event loop.

The database already holds every change: a layer that is down or slow must not fail or hang
anything. Every message this process publishes goes through one Publisher per event loop: a
message in a quiet moment is published at once; those that come while one publish is out are
gathered, and each room's go out together as one `room.batch` message (a burst of a hundred
joins is a few publishes, not a hundred). Publishes run one at a time (the Redis layer takes
them one at a time on its connection anyway), so each one's timeout (LIVEROOM_BROADCAST_TIMEOUT)
measures the layer, not a queue of other publishes in front of it. A publish that times out or
fails is logged (`broadcast_skipped`) and counted for each message in it; pages catch up from
the watch and their next snapshot.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from liveroom import metrics
from liveroom.live.messages import (
    BATCH_EVENT,
    ROOMS_EVENT,
    ROOMS_GROUP,
    Message,
    RoomBatch,
    RoomsChange,
)
from liveroom.rooms import fragments

logger = logging.getLogger(__name__)


async def publish(group: str, message: Message, *, what: str) -> bool:
    """Send `message` to `group`; False (and a log line) if the layer did not take it in time."""
    return await publisher().publish(group, message, what)


Waiting = tuple[Message, str, asyncio.Future[bool]]


class Publisher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[str, list[Waiting]] = {}  # by group, in the order they came
        self.sending: asyncio.Task | None = None

    async def publish(self, group: str, message: Message, what: str) -> bool:
        message["sent_at"] = time.time()
        future: asyncio.Future[bool] = self.loop.create_future()
        self.waiting.setdefault(group, []).append((message, what, future))
        if self.sending is None or self.sending.done():
            self.sending = self.loop.create_task(self.send_waiting())
        return await asyncio.shield(future)  # a request that goes leaves its publish be

    async def send_waiting(self) -> None:
        while self.waiting:
            waiting, self.waiting = self.waiting, {}
            for group, messages in waiting.items():
                what = "; ".join(dict.fromkeys(what for _, what, _ in messages))
                sent = await send(group, [message for message, _, _ in messages], what=what)
                for _, _, future in messages:
                    if not future.done():
                        future.set_result(sent)


async def send(group: str, messages: list[Message], *, what: str) -> bool:
    """One publish of `messages` to `group` (a batch, if more than one), within the timeout."""
    if len(messages) == 1:
        message: Message | RoomBatch = messages[0]
    else:
        message = {"type": BATCH_EVENT, "group": group, "messages": messages}
    try:
        await asyncio.wait_for(
            get_channel_layer().group_send(group, message),
            timeout=settings.LIVEROOM_BROADCAST_TIMEOUT,
        )
    except Exception as error:
        reason = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
        for skipped in messages:
            metrics.broadcasts_skipped.labels(skipped["type"], reason).inc()
        logger.error(
            "Broadcast skipped (%s; group %s, %d message(s)): %s %s",
            what, group, len(messages), type(error).__name__, error,
            extra={"event": "broadcast_skipped", "group": group, "reason": reason},
        )  # fmt: skip
        return False
    for published in messages:
        metrics.changes_published.labels(published["type"]).inc()
    return True


_publishers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Publisher]" = (
    weakref.WeakKeyDictionary()
)


def publisher() -> Publisher:
    """The running event loop's Publisher (created on first use)."""
    loop = asyncio.get_running_loop()
    found = _publishers.get(loop)
    if found is None:
        found = _publishers[loop] = Publisher(loop)
    return found


Publish = Callable[..., Awaitable[bool]]


class RoomListRefresh:
    """The /rooms/ list is the same for every change: rendered by each view, it would make each
    join wait for a query and a template, and a burst of a thousand joins would render it a
    thousand times. Changes share one refresh per process instead: one runs at a time, at most
    one every `interval` seconds, and a change that lands while it reads the database (or waits
    its turn) has it read once more.

    The interval is kept per event loop: a server has one. Outside a server (a management
    command, Django's test client) each send runs at once in an event loop of its own, with no
    other change to share a refresh with, and renders at once instead of waiting out the
    interval after the previous one."""

    def __init__(
        self,
        render: Callable[[], dict[str, str]] = fragments.render_room_list,
        send: Publish = publish,
        interval: float = 1.0,
    ) -> None:
        self.render = render
        self.send = send
        self.interval = interval
        self.stale = False
        self.running: asyncio.Task | None = None  # the last refresh, in its event loop
        self.last_render = -interval

    async def refresh(self) -> None:
        """Send the /rooms/ pages the list as it is after this call."""
        self.stale = True
        loop = asyncio.get_running_loop()
        other_loop = self.running is not None and self.running.get_loop() is not loop
        if other_loop:
            self.last_render = -self.interval  # nothing rendered in this loop yet
        if self.running is None or self.running.done() or other_loop:
            self.running = loop.create_task(self.refresh_while_stale())
        await asyncio.shield(self.running)

    async def refresh_while_stale(self) -> None:
        loop = asyncio.get_running_loop()
        while self.stale:
            await asyncio.sleep(max(0.0, self.last_render + self.interval - loop.time()))
            self.last_render = loop.time()
            self.stale = False
            try:
                html = await database_sync_to_async(self.render)()
            except Exception as error:
                logger.error("Room list not sent: %s: %s", type(error).__name__, error)
                continue
            message: RoomsChange = {"type": ROOMS_EVENT, "group": ROOMS_GROUP, "html": html}
            await self.send(ROOMS_GROUP, message, what="room list")
