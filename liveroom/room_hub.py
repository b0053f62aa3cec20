"""One channel-layer subscriber per process, handing each room message to that room's pages.

A stock Channels page has a channel of its own in the room's group: the layer puts every message
in each page's queue and wakes each page's task to forward it. Here the process has one channel,
in the group of every room it has pages of, and a message reaches all the room's pages in one
pass: framed once, written to each socket, no queue, no task switch. Every fraction of a
millisecond the pass yields, so an HTTP request is not held up behind a big room.

A page that needs more than a forward (its own membership changed, a gap in versions) is handled
in a task of its own: those query the database. A late presence message gets its members'
current states instead, rendered once for all the pages it was late for.
"""

import asyncio
import logging
import time
from collections import defaultdict

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from liveroom.broadcast import PRESENCE_EVENT, render_presence_now
from liveroom.daphne_server import prepare

logger = logging.getLogger(__name__)

# What a page makes of a room message (RoomConsumer.triage).
FORWARD, SKIP, HANDLE = "forward", "skip", "handle"

PASS_SECONDS = 0.0003  # of sending before the pass yields to the event loop


class RoomHub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.loop = asyncio.get_running_loop()
        self.channel: str | None = None
        self.pages: dict[str, set] = defaultdict(set)  # group -> pages
        self.subscribed: set[str] = set()
        self.lock = asyncio.Lock()  # one subscription change at a time
        self.task: asyncio.Task | None = None
        self.handlers: set[asyncio.Task] = set()

    async def add(self, page) -> None:
        """Start handing `page` the messages of its group (`page.group_name`)."""
        group = page.group_name
        async with self.lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
                self.task = self.loop.create_task(self.receive(), name="room-hub")
            if group not in self.subscribed:
                await self.layer.group_add(group, self.channel)
                self.subscribed.add(group)
        self.pages[group].add(page)

    def discard(self, page) -> None:
        group = page.group_name
        self.pages[group].discard(page)
        if not self.pages[group]:
            del self.pages[group]
            self.spawn(self.unsubscribe_if_unused(group))

    async def unsubscribe_if_unused(self, group: str) -> None:
        async with self.lock:
            if group in self.pages or group not in self.subscribed:
                return  # a page of the room came back meanwhile
            self.subscribed.discard(group)
            try:
                await self.layer.group_discard(group, self.channel)
            except Exception as error:
                logger.info("Left group %s while the layer is down: %s", group, error)

    async def receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as error:  # the layer reconnects by itself
                logger.warning("Room messages unavailable: %s: %s", type(error).__name__, error)
                await asyncio.sleep(1)
                continue
            await self.deliver(message)

    async def deliver(self, message: dict) -> None:
        pages = list(self.pages.get(message["group"], ()))
        html, late = message["html"], []
        frame = None  # framed at most once, for every page whose socket takes it as is
        next_yield = time.perf_counter() + PASS_SECONDS
        for page in pages:
            decision = page.triage(message)
            if decision == FORWARD and page.socket is not None:
                frame = frame or prepare(html)
                page.socket.send(frame)
            elif decision == FORWARD:
                await send(page, html)
            elif decision == HANDLE and message["type"] == PRESENCE_EVENT:
                late.append(page)
            elif decision == HANDLE:
                self.spawn(page.handle(message))
            if time.perf_counter() >= next_yield:
                await asyncio.sleep(0)
                next_yield = time.perf_counter() + PASS_SECONDS
        if late:
            self.spawn(self.send_presence_now(message, late))

    async def send_presence_now(self, message: dict, pages: list) -> None:
        """A late presence message (processes publish independently) may be older than what
        pages show: send them those members' current states instead, rendered once."""
        html = await database_sync_to_async(render_presence_now)(
            room_slug=pages[0].room_slug, member_ids=message["members"]
        )
        await send_to_each(pages, html)

    def spawn(self, coroutine) -> None:
        task = self.loop.create_task(coroutine)
        self.handlers.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task) -> None:
        self.handlers.discard(task)
        if not task.cancelled() and (error := task.exception()):
            logger.info("A page's message was not handled: %s: %s", type(error).__name__, error)


async def send_to_each(pages, html: str, frame: bytes | None = None) -> None:
    """`html` to every page: to each socket daphne serves as one frame, made once (or given);
    through Channels to any other (the tests' communicator)."""
    frame = frame or prepare(html)
    for page in pages:
        if page.socket is not None:
            page.socket.send(frame)
        else:
            await send(page, html)


async def send(page, html: str) -> None:
    try:
        await page.send(text_data=html)
    except Exception as error:  # a socket closing as we send: its own business
        logger.debug("Send to a closing page failed: %s", error)


_hubs: dict[asyncio.AbstractEventLoop, RoomHub] = {}


def hub() -> RoomHub:
    """This process's hub, for the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        for old_loop in [old for old in _hubs if old.is_closed()]:
            del _hubs[old_loop]
        _hubs[loop] = RoomHub()
    return _hubs[loop]
