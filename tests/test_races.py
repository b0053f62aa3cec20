"""Ordering and convergence: whatever order changes land in, every page ends up showing exactly
the database's list, with no duplicates and no ghosts."""

import contextlib
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import transaction
from django.template.loader import render_to_string
from django.test import Client

from harness.servers import Daphne, Visitor
from liveroom.models import Member, Room
from liveroom.rooms.membership import member_join
from liveroom.testing import Page, join, open_room_socket, open_socket, receive_snapshot
from tests.conftest import USES_SERVICES


class Listener:
    """A member's open room page, fed from its own socket in a thread."""

    def __init__(self, server: Daphne, name: str) -> None:
        self.visitor = Visitor()
        assert self.visitor.join(server, name).status_code == 302
        self.page = Page()
        self._exit_stack = contextlib.ExitStack()
        self.socket = self._exit_stack.enter_context(self.visitor.open_socket(server))
        self.page.apply(self.socket.recv(timeout=10))
        self.last_message = time.monotonic()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for message in self.socket:
                self.page.apply(message)
                self.last_message = time.monotonic()

    def close(self) -> None:
        self._exit_stack.close()
        self.thread.join(timeout=5)


def wait_until_quiet(listeners: list[Listener], quiet: float = 2.5, timeout: float = 30) -> None:
    """Wait until no page has had a message for `quiet` seconds, counting from now at the
    earliest: a change posted just before the call may not have reached the pages yet."""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        if all(time.monotonic() - max(each.last_message, started) > quiet for each in listeners):
            return
        time.sleep(0.1)


def database_list(visitor: Visitor, server: Daphne) -> list[str]:
    page = visitor.http.get(f"{server.url}/room/", timeout=10).text
    return re.findall(r'<span class="member__name"[^>]*>(.*?)</span>', page)


def assert_every_page_shows(listeners: list[Listener], names: list[str]) -> None:
    count = f"{len(names)} {'person' if len(names) == 1 else 'people'} here"
    for listener in listeners:
        assert listener.page.members() == names
        assert listener.page.text("#member-count") == count
        assert listener.page.errors == []


def test_50_concurrent_joins_and_leaves_converge_on_20_pages(start_server) -> None:
    # With PostgreSQL + Redis, two processes share the work; the embedded default has one.
    servers = [start_server(), start_server()] if USES_SERVICES else [start_server()]
    listeners = [Listener(servers[i % len(servers)], f"Listener {i}") for i in range(20)]
    rng = random.Random(7)

    def churn(i: int) -> None:
        visitor, server = Visitor(), servers[i % len(servers)]
        for step in range(rng.randint(1, 4)):
            visitor.join(server, f"Guest {i}" + ("" if step == 0 else f" ({step})"))
            if rng.random() < 0.5:
                visitor.leave(server)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(churn, range(50)))
    wait_until_quiet(listeners)

    expected = database_list(listeners[0].visitor, servers[0])
    assert len(expected) > 20
    assert len(set(expected)) == len(expected)
    assert_every_page_shows(listeners, expected)
    for listener in listeners:
        listener.close()


def test_join_and_leave_in_quick_succession_converge(start_server) -> None:
    server = start_server()
    listener = Listener(server, "Alice")
    bob = Visitor()
    for _ in range(5):
        bob.join(server, "Bob")
        bob.leave(server)
    bob.join(server, "Bob")
    wait_until_quiet([listener])
    assert_every_page_shows([listener], ["Alice", "Bob"])
    bob.leave(server)
    wait_until_quiet([listener])
    assert_every_page_shows([listener], ["Alice"])
    listener.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_join_between_page_render_and_socket_connect_is_in_the_snapshot() -> None:
    alice = Client()
    await sync_to_async(join)(alice, "Alice")
    page = (await sync_to_async(alice.get)("/room/")).content.decode()
    assert re.findall(r'<span class="member__name"[^>]*>(.*?)</span>', page) == ["Alice"]

    await sync_to_async(join)(Client(), "Bob")  # lands after the render, before the socket
    socket = await open_socket(alice)
    room_page = Page()
    room_page.apply(await receive_snapshot(socket))
    assert room_page.members() == ["Alice", "Bob"]
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_rolled_back_join_broadcasts_nothing() -> None:
    _, socket = await open_room_socket("Alice")

    @sync_to_async
    def join_then_fail() -> None:
        with transaction.atomic():
            member_join(room_slug=Room.DEFAULT_SLUG, session_key="x" * 32, name="Ghost")
            raise RuntimeError("something after the join failed")

    with pytest.raises(RuntimeError):
        await join_then_fail()
    assert await socket.receive_nothing(timeout=0.5)
    assert not await Member.objects.filter(name="Ghost").aexists()
    await socket.disconnect()


def test_applying_the_same_join_twice_shows_the_member_once() -> None:
    page = Page()
    page.apply('<ul id="members" hx-swap-oob="true"></ul>')
    bob = Member(pk=7, name="Bob")
    joined = render_to_string(
        "liveroom/room.html#member-joined", {"member": bob, "count": 1, "oob": True}
    )
    page.apply(joined)
    page.apply(joined)
    assert page.members() == ["Bob"]
    assert page.text("#member-count") == "1 person here"
    # As in the browser, htmx drops the repeat for want of a target and says so.
    assert page.errors == ["htmx:oobErrorNoTarget #members:not(:has(#member-7))"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_page_that_missed_the_last_change_gets_the_whole_list_soon() -> None:
    _, socket = await open_room_socket("Alice")

    # A change whose broadcast the layer lost, and no change after it to reveal the gap.
    room = await Room.objects.aget(slug=Room.DEFAULT_SLUG)
    await Member.objects.acreate(room=room, session_key="d" * 32, name="Dana")
    await Room.objects.filter(pk=room.pk).aupdate(version=room.version + 1)

    page = Page()
    page.apply(await socket.receive_from(timeout=5))  # within two watch intervals: the list
    assert page.members() == ["Alice", "Dana"]
    await socket.disconnect()
