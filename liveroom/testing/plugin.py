"""pytest fixtures for projects that test liveroom, and for liveroom's own tests: registered by
the `pytest11` entry point `liveroom` (pyproject.toml), or with `-p liveroom.testing.plugin`.

`room_page` opens room pages as new members: `alice = await room_page("Alice")`; every page is
closed after the test. It asks for a transactional database, which the socket's reads need."""

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio
from asgiref.sync import sync_to_async
from django.test import Client

from liveroom.rooms.models import Room
from liveroom.testing.page import RoomPage, join

OpenPage = Callable[..., Awaitable[RoomPage]]


@pytest_asyncio.fixture
async def room_page(transactional_db: None) -> AsyncIterator[OpenPage]:
    pages: list[RoomPage] = []

    async def open_page(
        name: str, room: str = Room.DEFAULT_SLUG, client: Client | None = None
    ) -> RoomPage:
        """A member called `name` (a new browser unless `client` is given) joins `room` and
        opens its page."""
        client = client or Client()
        await sync_to_async(join)(client, name, room)
        page = await RoomPage.open(client, room)
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        await page.close()
