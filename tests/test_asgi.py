"""HTTP through liveroom's ASGI application (liveroom/asgi.py): each request goes to its thread
once and runs there from the first middleware to the view."""

import pytest
from asgiref.sync import AsyncToSync
from channels.testing import HttpCommunicator

from liveroom.asgi import application

# The request's thread opens its own database connection.
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


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


async def test_a_page_request_runs_in_its_thread_from_middleware_to_view(
    returns_to_the_loop: list[object],
) -> None:
    response = await get("/room/join/")

    assert response["status"] == 200
    assert b'name="csrfmiddlewaretoken"' in response["body"]  # the middleware ran
    assert returns_to_the_loop == []  # Django's own handler comes back once, before the view


async def test_an_async_view_is_run_on_the_event_loop_from_the_requests_thread(
    returns_to_the_loop: list[object],
) -> None:
    response = await get("/healthz")

    assert (response["status"], response["body"]) == (200, b"ok\n")
    assert len(returns_to_the_loop) == 1


async def test_an_unknown_path_is_answered_404_through_the_middleware() -> None:
    response = await get("/no-such-page/")

    assert response["status"] == 404
    assert (b"X-Frame-Options", b"DENY") in response["headers"]  # the middleware ran
