"""The live core's tasks: long-running ones by name, started again if they die, and one-off ones
(work for a few pages). The event loop keeps only weak references to tasks; this keeps them."""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from liveroom import metrics

logger = logging.getLogger(__name__)

RESTART_SECONDS = 1.0  # before a task that died is started again

Run = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.running: dict[str, asyncio.Task] = {}  # supervised, by name
        self.restarts: Counter[str] = Counter()
        self.one_off: set[asyncio.Task] = set()
        self.closed = False

    def supervise(self, name: str, run: Run) -> None:
        """Run `run()` as the task `name` unless it runs already; if it dies, log it, count it
        and start it again. A task that has ended but whose end is not yet handled counts as
        not running: its last step may have been to see nothing left to do."""
        running = self.running.get(name)
        if self.closed or (running is not None and not running.done()):
            return
        task = self.loop.create_task(run(), name=f"liveroom {name}")
        self.running[name] = task
        task.add_done_callback(lambda task: self._ended(name, run, task))

    def _ended(self, name: str, run: Run, task: asyncio.Task) -> None:
        if self.running.get(name) is task:
            del self.running[name]
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
        """Run `coroutine` once; a failure is logged, not raised."""
        task = self.loop.create_task(coroutine)
        self.one_off.add(task)
        task.add_done_callback(self._spawned_ended)

    def _spawned_ended(self, task: asyncio.Task) -> None:
        self.one_off.discard(task)
        if not task.cancelled() and (error := task.exception()):
            logger.info("A page's message was not handled: %s: %s", type(error).__name__, error)

    async def wait_one_off(self) -> None:
        """Wait for the one-off tasks under way (tests; the core's close)."""
        await asyncio.gather(*self.one_off, return_exceptions=True)

    def cancel(self) -> list[asyncio.Task]:
        """Stop every task, for good; the tasks to wait for."""
        self.closed = True
        tasks = [*self.running.values(), *self.one_off]
        for task in tasks:
            task.cancel()
        return tasks
