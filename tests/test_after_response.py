"""A request's room messages leave after its response (liveroom/after_response.py)."""

import asyncio
import threading

import pytest
from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.core.cache import caches

from harness.waiting import until
from liveroom.live.after_response import send_after_response, sending_after_response


def test_outside_a_wrapped_request_a_send_runs_at_once() -> None:
    ran = []

    async def record(value: str) -> None:
        ran.append(value)

    send_after_response(record, "sent")
    assert ran == ["sent"]


async def serve(view) -> list[str]:
    """Serve one request whose view (run in a thread, as Django runs it) is `view(events)`."""
    events: list[str] = []

    async def app(scope, receive, send) -> None:
        await sync_to_async(view)(events)
        await send({"type": "http.response.start", "status": 302, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict) -> None:
        events.append(message["type"])

    try:
        await sending_after_response(app)({"type": "http"}, None, send)
    except RuntimeError:
        events.append("request failed")
    await until(lambda: events[-1].startswith("sent"), within=5)
    return events


async def record(events: list[str], value: str) -> None:
    events.append(value)


@pytest.mark.asyncio
async def test_a_requests_sends_run_once_its_response_is_out() -> None:
    def view(events: list[str]) -> None:
        send_after_response(record, events, "sent first")
        send_after_response(record, events, "sent second")
        events.append("view returned")

    assert await serve(view) == [
        "view returned",
        "http.response.start",
        "http.response.body",
        "sent first",
        "sent second",
    ]


@pytest.mark.asyncio
async def test_sends_start_when_the_last_body_part_is_out_not_when_the_handler_returns() -> None:
    # Django's handler closes the response after sending it, in the request's thread, which
    # under a burst waits its turn among many. The sends do not wait for that.
    events: list[str] = []
    closed = asyncio.Event()

    async def app(scope, receive, send) -> None:
        send_after_response(record, events, "sent")
        await send({"type": "http.response.start", "status": 302, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await asyncio.sleep(0.05)
        assert "sent" not in events  # not after a part that is not the last
        await send({"type": "http.response.body", "body": b""})
        await until(lambda: "sent" in events, within=5)
        closed.set()

    async def send(message: dict) -> None:
        events.append(message["type"])

    await sending_after_response(app)({"type": "http"}, None, send)
    assert closed.is_set()
    assert events.count("sent") == 1  # once, not again as the handler returns


@pytest.mark.asyncio
async def test_a_slow_send_holds_up_no_other_send_of_the_same_request() -> None:
    """A change's publish and the room list's refresh go out side by side, each with its own
    timeout: a slow one does not delay or use up the other's."""

    async def slow(events: list[str]) -> None:
        await asyncio.sleep(0.5)
        events.append("sent slowly")

    def view(events: list[str]) -> None:
        send_after_response(slow, events)
        send_after_response(record, events, "sent")

    events = await serve(view)
    assert events[-1] == "sent"  # not behind the slow one
    await asyncio.sleep(0.6)
    assert events[-1] == "sent slowly"


@pytest.mark.asyncio
async def test_a_request_that_fails_after_its_change_still_sends_it() -> None:
    def view(events: list[str]) -> None:
        send_after_response(record, events, "sent")
        raise RuntimeError("after the commit")

    assert await serve(view) == ["request failed", "sent"]


@pytest.mark.services
def test_requests_share_one_redis_connection_pool_for_the_cache() -> None:
    # Django's caches are per thread and per request context: each gets a client of its own.
    pools = []

    def cache_pool() -> None:
        pools.append(caches["default"]._cache.get_client(write=True).connection_pool)

    threads = [threading.Thread(target=cache_pool) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pools) == 2
    assert pools[0] is pools[1]


@pytest.mark.asyncio
async def test_a_stuck_send_holds_up_no_other_requests_sends() -> None:
    layer_stuck = asyncio.Event()  # never set: a send that waits for its timeout
    sent = []

    async def stuck() -> None:
        await layer_stuck.wait()

    async def record(value: str) -> None:
        sent.append(value)

    def request(send, *args):
        async def app(scope, receive, respond) -> None:
            await sync_to_async(send_after_response)(send, *args)

        return sending_after_response(app)({"type": "http"}, None, None)

    await request(stuck)
    await request(record, "second request's change")
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.01)
    assert sent == ["second request's change"]
    layer_stuck.set()  # let the first request's send end with the test
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_sends_run_outside_the_requests_thread_sensitive_context() -> None:
    # Django's handler runs a request in a ThreadSensitiveContext, whose tasks must end before
    # it does (asgiref); the sends outlive it. Inheriting it, their database calls ran on
    # threads of an ended context and left pool connections checked out.
    contexts: list = []

    async def sent() -> None:
        contexts.append(SyncToAsync.thread_sensitive_context.get(None))

    async def app(scope, receive, send) -> None:
        async with ThreadSensitiveContext() as request_context:
            contexts.append(request_context)
            send_after_response(sent)
            await send({"type": "http.response.start", "status": 302, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def send(message: dict) -> None:
        pass

    await sending_after_response(app)({"type": "http"}, None, send)
    await until(lambda: len(contexts) == 2, within=5)
    assert contexts[0] is not None
    assert contexts[1] is None
