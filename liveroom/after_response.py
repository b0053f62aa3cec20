"""A request's room messages go out once its response has been sent.

A change's fan-out keeps this process's event loop busy for a while (a pass over every page of
the room here, when it has them); sent from the view, it would hold up that very view's
response. So the view queues its sends here, and the HTTP application (liveroom/asgi.py) runs
them after the response, in order, one request after another. Outside a request served that
way (the test client, management commands), a send runs at once.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial

from asgiref.sync import async_to_sync

logger = logging.getLogger(__name__)

Send = Callable[[], Awaitable[None]]

_pending: ContextVar[list[Send] | None] = ContextVar("liveroom_pending_sends", default=None)


def send_after_response(coroutine_function, /, *args, **kwargs) -> None:
    """Run `await coroutine_function(*args, **kwargs)` once the response is out (or now)."""
    pending = _pending.get()
    if pending is None:
        async_to_sync(coroutine_function)(*args, **kwargs)
    else:
        pending.append(partial(coroutine_function, *args, **kwargs))


def sending_after_response(app):
    """Wrap an HTTP ASGI application so its requests' sends run after their responses."""

    async def application(scope, receive, send) -> None:
        pending: list[Send] = []
        token = _pending.set(pending)  # the view's thread gets a copy of this context
        try:
            await app(scope, receive, send)
        finally:
            _pending.reset(token)
            if pending:
                _outbox().put_nowait(pending)

    return application


_outboxes: dict[asyncio.AbstractEventLoop, asyncio.Queue] = {}


def _outbox() -> asyncio.Queue:
    """This loop's queue of sends and the task that runs them in order."""
    loop = asyncio.get_running_loop()
    if loop not in _outboxes:
        for old_loop in [old for old in _outboxes if old.is_closed()]:
            del _outboxes[old_loop]
        queue = _outboxes[loop] = asyncio.Queue()
        task = loop.create_task(_run(queue), name="after-response")
        task.add_done_callback(lambda _: _outboxes.pop(loop, None))
    return _outboxes[loop]


async def _run(queue: asyncio.Queue) -> None:
    while True:
        for send in await queue.get():
            try:
                await send()
            except Exception:  # each send logs its own failures; this is a last resort
                logger.exception("A message after a response failed")
