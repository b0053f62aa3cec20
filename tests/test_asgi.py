"""HTTP through liveroom's ASGI application (liveroom/asgi.py, liveroom/handler.py): each request
goes to a thread once and runs there from its start to its closing; threads are reused."""

import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from asgiref.sync import AsyncToSync
from asgiref.testing import ApplicationCommunicator
from channels.testing import HttpCommunicator
from django.core import signals
from django.http import HttpRequest, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from liveroom.asgi import application, django_asgi_app
from liveroom.handler import RequestThreads

# The request's thread opens its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def returns_to_the_loop(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What a request's thread handed back to the event loop to run, in order."""
    handed_back: list[object] = []
    original = AsyncToSync.__call__

    def counting(self: AsyncToSync, *args, **kwargs):
        handed_back.append(self.awaitable)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncToSync, "__call__", counting)
    return handed_back


async def get(path: str) -> dict:
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"localhost")])
    response = await communicator.get_response(timeout=10)
    await communicator.wait(timeout=5)
    return response


@pytest.mark.asyncio
async def test_a_page_request_runs_in_its_thread_from_middleware_to_view(
    returns_to_the_loop: list[object],
) -> None:
    response = await get("/room/join/")

    assert response["status"] == 200
    assert b'name="csrfmiddlewaretoken"' in response["body"]  # the middleware ran
    assert returns_to_the_loop == []  # Django's own handler comes back once, before the view


@pytest.mark.asyncio
async def test_an_async_view_is_run_on_the_event_loop_from_the_requests_thread(
    returns_to_the_loop: list[object],
) -> None:
    response = await get("/healthz")

    assert (response["status"], response["body"]) == (200, b"ok\n")
    assert len(returns_to_the_loop) == 1


@pytest.mark.asyncio
async def test_an_unknown_path_is_answered_404_through_the_middleware() -> None:
    response = await get("/no-such-page/")

    assert response["status"] == 404
    assert (b"X-Frame-Options", b"DENY") in response["headers"]  # the middleware ran


@pytest.fixture
def threads_of_a_request() -> Iterator[dict[str, list[int]]]:
    """The threads `request_started` and `request_finished` ran on, in order."""
    seen: dict[str, list[int]] = {"started": [], "finished": []}

    def started(**kwargs) -> None:
        seen["started"].append(threading.get_ident())

    def finished(**kwargs) -> None:
        seen["finished"].append(threading.get_ident())

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


@pytest.mark.asyncio
async def test_a_request_starts_and_ends_on_one_thread_that_the_next_request_reuses(
    threads_of_a_request: dict[str, list[int]],
) -> None:
    started_before = django_asgi_app.threads.started

    first, second = await get("/room/join/"), await get("/room/join/")

    assert first["status"] == second["status"] == 200
    assert threads_of_a_request["started"] == threads_of_a_request["finished"]
    assert len(set(threads_of_a_request["started"])) == 1  # the second ran on the first's
    assert django_asgi_app.threads.started - started_before <= 1
    assert threading.get_ident() not in threads_of_a_request["started"]  # not the event loop's


async def parts() -> AsyncIterator[bytes]:
    for part in (b"one ", b"two"):
        yield part


def streamed(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(parts())


urlpatterns = [path("streamed/", streamed)]


@pytest.mark.asyncio
@override_settings(ROOT_URLCONF=__name__)
async def test_a_streamed_response_is_closed_on_the_requests_thread_once_it_is_sent(
    threads_of_a_request: dict[str, list[int]],
) -> None:
    scope = {"type": "http", "method": "GET", "path": "/streamed/", "query_string": b"",
             "headers": [(b"host", b"localhost")]}  # fmt: skip
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request"})
    messages = [await communicator.receive_output(timeout=5) for _ in range(4)]
    await communicator.wait(timeout=5)

    assert messages[0]["status"] == 200
    assert b"".join(message.get("body", b"") for message in messages[1:]) == b"one two"
    assert not messages[-1].get("more_body")
    assert threads_of_a_request["started"] == threads_of_a_request["finished"]


def test_threads_beyond_those_kept_are_stopped_when_they_are_given_back() -> None:
    threads = RequestThreads(keep=1)
    lent = [threads.lend(), threads.lend()]

    for thread in lent:
        threads.take_back(thread)

    assert threads.idle == lent[:1]
    assert lent[1]._shutdown
    assert threads.lend() is lent[0]  # kept, and lent again
