"""Named rooms: /room/<slug>/, one group each, several memberships per session."""

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from liveroom.asgi import application
from liveroom.live.publish import RoomListRefresh
from liveroom.models import Member, Room
from liveroom.presence import stores
from liveroom.rooms import cleanup
from liveroom.rooms.cleanup import remove_empty_rooms
from liveroom.testing import open_socket, receive_snapshot, socket_headers
from liveroom.wire import NOT_A_MEMBER


def names_on(page_html: str) -> list[str]:
    return re.findall(r'<span class="member__name"[^>]*>(.*?)</span>', page_html)


def join_room(client: Client, slug: str, name: str) -> None:
    response = client.post(f"/room/{slug}/join/", {"name": name})
    assert response.status_code == 302
    assert response["Location"] == f"/room/{slug}/"


@pytest.mark.django_db
def test_the_first_join_creates_a_named_room(client: Client) -> None:
    assert client.get("/room/book-club/")["Location"] == "/room/book-club/join/"
    join_page = client.get("/room/book-club/join/").content.decode()
    assert 'action="/room/book-club/join/"' in join_page
    join_room(client, "book-club", "Alice")
    page = client.get("/room/book-club/").content.decode()
    assert names_on(page) == ["Alice"]
    assert 'ws-connect="/ws/room/book-club/?v=1&amp;p=0&amp;l=en"' in page  # what it shows
    assert 'action="/room/book-club/leave/"' in page


@pytest.mark.django_db
def test_one_session_is_a_member_of_several_rooms_under_different_names(client: Client) -> None:
    client.post("/room/join/", {"name": "Alice"})
    join_room(client, "book-club", "Ally")
    assert names_on(client.get("/room/").content.decode()) == ["Alice"]
    assert names_on(client.get("/room/book-club/").content.decode()) == ["Ally"]

    assert client.post("/room/book-club/leave/")["Location"] == "/room/book-club/join/"
    assert names_on(client.get("/room/").content.decode()) == ["Alice"]
    assert list(Member.objects.values_list("name", flat=True)) == ["Alice"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/room/Book_Club/", "/room/-x/", "/room/a--/join/", "/room/x_y/"])
def test_a_bad_room_name_is_not_found(client: Client, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.django_db
def test_join_and_leave_keep_their_pages(client: Client) -> None:
    assert client.get("/room/join/").status_code == 200
    assert client.get("/room/leave/").status_code == 405


@pytest.mark.django_db
def test_the_rooms_page_lists_rooms_with_their_member_counts(client: Client) -> None:
    join_room(client, "book-club", "Alice")
    join_room(Client(), "book-club", "Bob")
    join_room(Client(), "chess", "Carol")
    page = client.get("/rooms/").content.decode()
    assert page.index("book-club") < page.index("chess")
    assert "2 people" in page
    assert "1 person" in page
    assert 'href="/room/book-club/"' in page


@pytest.mark.django_db
def test_the_rooms_page_opens_a_room_by_name(client: Client) -> None:
    assert client.get("/rooms/", {"name": " Book-Club "})["Location"] == "/room/book-club/"
    response = client.get("/rooms/", {"name": "join"})
    assert response.status_code == 400
    assert "lowercase letters, digits and hyphens" in response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_change_in_one_room_reaches_only_that_rooms_pages() -> None:
    alice = Client()
    await sync_to_async(join_room)(alice, "book-club", "Alice")
    await sync_to_async(alice.post)("/room/join/", {"name": "Alice in the lobby"})
    club = WebsocketCommunicator(application, "/ws/room/book-club/", headers=socket_headers(alice))
    assert (await club.connect())[0]
    assert names_on(await receive_snapshot(club)) == ["Alice", "Alice"]  # the list, then "you"
    lobby = await open_socket(alice)
    assert "Alice in the lobby" in await receive_snapshot(lobby)

    await sync_to_async(join_room)(Client(), "book-club", "Bob")
    assert "Bob" in await club.receive_from()
    assert await lobby.receive_nothing(timeout=0.3)
    await club.disconnect()
    await lobby.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_member_of_one_room_cannot_open_another_rooms_socket() -> None:
    alice = Client()
    await sync_to_async(join_room)(alice, "book-club", "Alice")
    socket = WebsocketCommunicator(application, "/ws/room/chess/", headers=socket_headers(alice))
    assert (await socket.connect())[0]
    assert await socket.receive_output() == {"type": "websocket.close", "code": NOT_A_MEMBER}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_rooms_page_updates_its_counts_live() -> None:
    await sync_to_async(join_room)(Client(), "chess", "Carol")
    page = WebsocketCommunicator(application, "/ws/rooms/", headers=socket_headers(Client()))
    assert (await page.connect())[0]
    first = await page.receive_from()
    assert '<div id="room-list" hx-swap-oob="true">' in first
    assert "1 person" in first

    await sync_to_async(join_room)(Client(), "chess", "Dan")
    update = await page.receive_from()
    assert "chess" in update
    assert "2 people" in update
    await sync_to_async(join_room)(Client(), "book-club", "Eve")
    assert "book-club" in await page.receive_from()
    await page.disconnect()


@pytest.mark.django_db  # the render runs like any database work from async code
@pytest.mark.asyncio
async def test_a_burst_of_changes_renders_the_rooms_list_once() -> None:
    renders, sent = [], []
    refresh = RoomListRefresh(
        render=lambda: renders.append(1) or "list", send=lambda *message, **_: record(sent, message)
    )
    await asyncio.gather(*(refresh.refresh() for _ in range(10)))
    assert (len(renders), len(sent)) == (1, 1)  # every change waited for that one list


@pytest.mark.django_db
@pytest.mark.asyncio
async def test_a_change_during_a_render_of_the_rooms_list_gets_a_fresh_one() -> None:
    renders, sent = [], []

    def render_while_a_change_lands() -> str:
        renders.append(1)
        if len(renders) == 1:  # read before the change: stale once sent
            asyncio.run_coroutine_threadsafe(refresh.refresh(), loop)
            time.sleep(0.1)  # the change marks the list stale meanwhile
        return f"list {len(renders)}"

    loop = asyncio.get_running_loop()
    refresh = RoomListRefresh(
        render=render_while_a_change_lands, send=lambda *message, **_: record(sent, message)
    )
    await refresh.refresh()
    assert [message["html"] for (_, message) in sent] == ["list 1", "list 2"]


async def record(sent: list, message: tuple) -> bool:
    sent.append(message)
    return True


@pytest.mark.django_db
@pytest.mark.asyncio
async def test_the_rooms_list_is_refreshed_at_most_once_an_interval() -> None:
    loop = asyncio.get_running_loop()
    rendered_at, sent = [], []
    refresh = RoomListRefresh(
        render=lambda: rendered_at.append(loop.time()) or f"list {len(rendered_at)}",
        send=lambda *message, **_: record(sent, message),
        interval=0.5,
    )
    started = loop.time()
    await refresh.refresh()
    for _ in range(5):  # a burst of changes, 0.05 s apart
        await asyncio.sleep(0.05)
        later = asyncio.ensure_future(refresh.refresh())
    await later
    assert len(rendered_at) == 2  # the first at once, then one for the whole burst
    assert rendered_at[0] - started < 0.2
    # Renders run in a thread: each is timed a thread hop after its turn began (a few ms).
    assert rendered_at[1] - rendered_at[0] >= 0.5 - 0.01
    assert [message["html"] for (_, message) in sent] == ["list 1", "list 2"]  # the last state


@pytest.mark.django_db(transaction=True)
def test_outside_a_server_each_change_refreshes_the_rooms_list_at_once() -> None:
    # A management command or the test client: each send in an event loop of its own, so
    # nothing shares the refresh and there is no interval to wait out after the last one.
    renders, sent = [], []
    refresh = RoomListRefresh(
        render=lambda: renders.append(1) or f"list {len(renders)}",
        send=lambda *message, **_: record(sent, message),
        interval=60,
    )
    with ThreadPoolExecutor(1) as thread:  # as such a command runs them: one after the other
        for _ in range(3):
            thread.submit(async_to_sync(refresh.refresh)).result(timeout=10)
    assert [message["html"] for (_, message) in sent] == ["list 1", "list 2", "list 3"]


@pytest.mark.django_db
def test_the_rooms_page_is_paginated_busiest_first(client, settings) -> None:
    settings.LIVEROOM_ROOMS_PAGE_SIZE = 2
    for room, people in [("quiet", 1), ("busy", 3), ("middle", 2)]:
        for number in range(people):
            join_room(Client(), room, f"Person {number}")
    first = client.get("/rooms/").content.decode()
    assert first.index("/room/busy/") < first.index("/room/middle/")
    assert "/room/quiet/" not in first
    assert "Page 1 of 2" in first
    assert 'ws-connect="/ws/rooms/?l=en"' in first  # the first page is live, in English
    second = client.get("/rooms/?page=2").content.decode()
    assert "/room/quiet/" in second
    assert "/room/busy/" not in second
    assert "ws-connect" not in second
    assert "Page 2 of 2" in client.get("/rooms/?page=99").content.decode()  # the nearest
    assert "Page 1 of 2" in client.get("/rooms/?page=nonsense").content.decode()


@pytest.mark.django_db
def test_an_empty_room_goes_after_the_delay_with_its_presence_keys(settings) -> None:
    settings.LIVEROOM_EMPTY_ROOM_SECONDS = 60
    settings.LIVEROOM_PRESENCE = True
    alice, bob = Client(), Client()
    join_room(alice, "chess", "Alice")
    join_room(bob, "go", "Bob")
    alice_id = Member.objects.get(name="Alice").pk
    asyncio.run(stores.for_reading().update("chess", "a-process", {alice_id}, set(), 60))
    assert alice.post("/room/chess/leave/").status_code == 302
    assert remove_empty_rooms() == 0  # empty, but not for long enough
    Room.objects.filter(slug="chess").update(changed_at=timezone.now() - timedelta(minutes=2))
    Room.objects.filter(slug="go").update(changed_at=timezone.now() - timedelta(minutes=2))
    assert remove_empty_rooms() == 1
    assert list(Room.objects.values_list("slug", flat=True)) == ["go"]  # Bob is still in go
    assert stores.for_reading().read("chess").sequence == 0  # its presence went with it
    join_room(alice, "chess", "Alice")  # a later join starts it afresh
    assert Room.objects.get(slug="chess").members.count() == 1


@pytest.mark.django_db
def test_leaves_sweep_empty_rooms_now_and_then(settings) -> None:
    settings.LIVEROOM_EMPTY_ROOM_SECONDS = 60  # a sweep at most every 15 s
    assert cleanup.sweep_interval() == 15  # and a new delay: the next chance sweeps
    alice = Client()
    join_room(alice, "chess", "Alice")
    assert alice.post("/room/chess/leave/").status_code == 302  # a sweep: too early for chess
    Room.objects.filter(slug="chess").update(changed_at=timezone.now() - timedelta(minutes=2))
    join_room(Client(), "go", "Bob")  # within the interval: no sweep
    assert Room.objects.filter(slug="chess").exists()
    cleanup.sweeps.next_sweep = 0  # an interval later
    join_room(Client(), "go", "Carol")
    assert not Room.objects.filter(slug="chess").exists()


@pytest.mark.django_db
def test_a_sweep_deletes_the_sessions_past_their_expiry(settings) -> None:
    settings.LIVEROOM_EMPTY_ROOM_SECONDS = 60
    alice, bob = Client(), Client()
    join_room(alice, "chess", "Alice")
    join_room(bob, "chess", "Bob")
    Session.objects.filter(session_key=bob.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    cleanup.sweeps.next_sweep = 0  # an interval after the joins' own sweep

    cleanup.sweeps.now_and_then()

    assert list(Session.objects.values_list("session_key", flat=True)) == [
        alice.session.session_key
    ]
