"""A request's room messages go out once its response has been sent.

A change's fan-out keeps this process's event loop busy for a while (a pass over every page of
the room here, when it has them); sent from the view, it would hold up that very view's
response. So the view queues its sends here, and the HTTP application (liveroom/asgi.py) runs
them once the response is out, side by side, each with its own timeout (a slow publish holds
up no other). Each request's sends run in a task of their own: a slow or unreachable channel
layer holds up no other request's. The live core's own database work (a sweep that removes
idle members) queues its sends the same way. Outside both (the test client, management
commands), a send runs at once.
"""

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any

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
        started = 0  # how many of `pending` are running

        def start() -> None:
            nonlocal started
            if len(pending) > started:
                sends = _run(pending[started:])
                task = asyncio.get_running_loop().create_task(sends, context=outside.copy())
                _running.add(task)  # the loop keeps only weak references to tasks
                task.add_done_callback(_running.discard)
                started = len(pending)

        async def send_then_start(message: dict) -> None:
            await send(message)
            # The response is out with its last body part; the handler may still have work (a
            # streamed response is closed after it is sent, in the request's thread, which
            # under a burst waits its turn): what the view changed goes out now, in order.
            if message["type"] == "http.response.body" and not message.get("more_body"):
                start()

        token = _pending.set(pending)  # the view's thread gets a copy of this context
        # The sends outlive the request, so they run in its context as it is here, before
        # Django's handler enters a ThreadSensitiveContext: tasks created inside one must end
        # before it does (asgiref). Sends that inherited it ran their database calls on
        # threads of a context that had ended, and left pool connections checked out.
        outside = contextvars.copy_context()
        try:
            await app(scope, receive, send_then_start)
        finally:
            _pending.reset(token)
            start()  # what is left: a request that failed or went, or a send queued late

    return application


async def sending_after[T](call: Callable[[], Awaitable[T]]) -> T:
    """Await `call()` with its sends queued as a request's are (threads it starts from here
    get this context), then run them, as a request's after its response."""
    pending: list[Send] = []
    token = _pending.set(pending)
    try:
        return await call()
    finally:
        _pending.reset(token)
        await _run(pending)


_running: set[asyncio.Task[Any]] = set()


async def _run(sends: list[Send]) -> None:
    await asyncio.gather(*(_guarded(send) for send in sends))


async def _guarded(send: Send) -> None:
    try:
        await send()
    except Exception:  # each send logs its own failures; this is a last resort
        logger.exception("A message after a response failed")
