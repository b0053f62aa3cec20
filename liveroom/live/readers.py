"""The threads a process reads the database with for its room pages (snapshots).

At most LIVEROOM_READ_THREADS reads run at once, and none waits behind the threads that serve
HTTP requests. The threads are daemons: a read still queued when the server stops is dropped,
not worked through before the process may exit, and a read whose page stopped waiting for it
(its consumer was cancelled) is skipped.
"""

import asyncio
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections

Work = tuple[asyncio.Future, asyncio.AbstractEventLoop, Callable[[], Any], contextvars.Context]


class Readers:
    def __init__(self, size: int, name: str = "liveroom-read") -> None:
        self.size = size
        self.name = name
        self.queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    async def run[T](self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` in a reader thread, with a database connection of its
        own (closed after, as Channels' database_sync_to_async does)."""
        if not self.threads:
            self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call = functools.partial(function, *args, **kwargs)
        self.queue.put((future, loop, call, contextvars.copy_context()))
        return await future

    def start(self) -> None:
        for number in range(self.size):
            thread = threading.Thread(target=self.work, name=f"{self.name}-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def work(self) -> None:
        while (item := self.queue.get()) is not None:
            future, loop, call, context = item
            if future.cancelled():  # nobody waits for it any more
                continue
            close_old_connections()
            try:
                result, error = context.run(call), None
            except BaseException as raised:
                result, error = None, raised
            finally:
                close_old_connections()
            try:
                loop.call_soon_threadsafe(settle, future, result, error)
            except RuntimeError:  # the loop is closed: the server is stopping
                return

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        self.threads = []


def settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
