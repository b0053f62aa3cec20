"""Presence: online while any page of the member is open, away a grace period after the last."""

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from redis import Redis

from harness.waiting import until
from liveroom.asgi import application
from liveroom.live import watch
from liveroom.live.messages import room_group
from liveroom.models import Member, Room
from liveroom.presence import room_presence, stores
from liveroom.rooms import cleanup, fragments
from liveroom.rooms.idle import remove_idle_members
from liveroom.testing import Page, new_member, open_socket, receive_snapshot, socket_headers

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

GRACE = 0.5


@pytest.fixture(autouse=True)
def presence_on(settings) -> None:
    settings.LIVEROOM_PRESENCE = True
    settings.LIVEROOM_PRESENCE_GRACE_SECONDS = GRACE


async def open_page(client: Client, path: str = "/ws/room/") -> tuple[WebsocketCommunicator, Page]:
    socket = await open_socket(client, path=path)
    page = Page()
    page.apply(await receive_snapshot(socket))
    return socket, page


async def read_until(
    socket: WebsocketCommunicator, page: Page, done: Callable[[Page], bool]
) -> None:
    """Apply the socket's messages to `page` until `done(page)` (within a few seconds)."""
    async with asyncio.timeout(3):
        while not done(page):
            page.apply(await socket.receive_from(timeout=3))
    assert page.errors == []


async def test_a_member_with_a_page_open_is_online_on_every_page() -> None:
    alice, bob = await new_member("Alice"), await new_member("Bob")
    alice_socket, alice_page = await open_page(alice)
    assert alice_page.presence_of("Bob") == "away"
    await read_until(alice_socket, alice_page, lambda page: page.presence_of("Alice") == "online")
    assert alice_page.text("#online-count") == "1 online"

    bob_socket, _ = await open_page(bob)
    await read_until(alice_socket, alice_page, lambda page: page.presence_of("Bob") == "online")
    assert alice_page.text("#online-count") == "2 online"
    assert alice_page.text("#announcement") == ""  # coming online is not announced
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_two_tabs_are_one_member_and_closing_one_changes_nothing() -> None:
    alice, bob = await new_member("Alice"), await new_member("Bob")
    alice_socket, alice_page = await open_page(alice)
    first_tab, _ = await open_page(bob)
    second_tab, _ = await open_page(bob)
    await read_until(
        alice_socket, alice_page, lambda page: page.text("#online-count") == "2 online"
    )
    assert alice_page.presence_of("Bob") == "online"
    assert await alice_socket.receive_nothing(timeout=0.3)  # one member, one change

    await first_tab.disconnect()
    assert await alice_socket.receive_nothing(timeout=GRACE + 0.5)

    await second_tab.disconnect()
    started = time.monotonic()
    await read_until(alice_socket, alice_page, lambda page: page.presence_of("Bob") == "away")
    assert time.monotonic() - started >= GRACE * 0.9  # not before the grace period
    await read_until(
        alice_socket, alice_page, lambda page: page.text("#announcement") == "Bob is away"
    )
    assert alice_page.text("#online-count") == "1 online"
    await alice_socket.disconnect()


async def test_a_reload_within_the_grace_period_is_not_seen_by_others() -> None:
    alice, bob = await new_member("Alice"), await new_member("Bob")
    alice_socket, alice_page = await open_page(alice)
    bob_socket, _ = await open_page(bob)
    await read_until(
        alice_socket, alice_page, lambda page: page.text("#online-count") == "2 online"
    )

    await bob_socket.disconnect()
    bob_socket, bob_page = await open_page(bob)
    assert bob_page.presence_of("Bob") == "online"
    assert await alice_socket.receive_nothing(timeout=GRACE + 0.5)
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_presence_in_one_room_does_not_reach_another() -> None:
    alice, bob = Client(), Client()
    await sync_to_async(alice.post)("/room/chess/join/", {"name": "Alice"})
    await sync_to_async(bob.post)("/room/go/join/", {"name": "Bob"})
    alice_socket, alice_page = await open_page(alice, "/ws/room/chess/")
    await read_until(
        alice_socket, alice_page, lambda page: page.text("#online-count") == "1 online"
    )

    bob_socket, bob_page = await open_page(bob, "/ws/room/go/")
    await read_until(bob_socket, bob_page, lambda page: page.presence_of("Bob") == "online")
    assert await alice_socket.receive_nothing(timeout=0.3)
    assert alice_page.members() == ["Alice"]
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_late_presence_message_brings_those_members_current_states() -> None:
    alice = await new_member("Alice")
    alice_id = (await Member.objects.aget(name="Alice")).pk
    socket, page = await open_page(alice)
    await read_until(socket, page, lambda page: page.presence_of("Alice") == "online")
    layer, group = get_channel_layer(), room_group(Room.DEFAULT_SLUG)
    sequence = room_presence(Room.DEFAULT_SLUG).sequence

    def message(sequence: int, html: str) -> dict:
        return {"type": "room.presence", "group": group, "sequence": sequence,
                "members": [alice_id], "rendered": {"en": html}}  # fmt: skip

    await layer.group_send(group, message(sequence, "old"))
    assert await socket.receive_nothing(timeout=0.2)  # already in the list the page has
    await layer.group_send(group, message(sequence + 5, "new"))
    assert await socket.receive_from() == "new"
    # Older than "new": it may say "away" for someone the page rightly shows online.
    await layer.group_send(
        group, message(sequence + 3, "<span>Alice is away, says the late one</span>")
    )
    current = await socket.receive_from()
    assert current.startswith('<p id="online-count"')
    assert f'<span id="presence-{alice_id}" class="presence presence--online"' in current
    await socket.disconnect()


async def test_the_rooms_page_shows_online_counts_live() -> None:
    alice = await new_member("Alice")
    rooms = WebsocketCommunicator(application, "/ws/rooms/", headers=socket_headers(Client()))
    assert (await rooms.connect())[0]
    assert "1 person, 0 online" in await rooms.receive_from()
    socket, _ = await open_page(alice)
    assert "1 person, 1 online" in await rooms.receive_from(timeout=3)
    await socket.disconnect()
    assert "1 person, 0 online" in await rooms.receive_from(timeout=GRACE + 3)
    await rooms.disconnect()


async def test_going_away_records_when_the_member_was_last_seen() -> None:
    alice = await new_member("Alice")
    await Member.objects.filter(name="Alice").aupdate(
        last_seen_at=timezone.now() - timedelta(days=1)
    )
    socket, page = await open_page(alice)
    await read_until(socket, page, lambda page: page.presence_of("Alice") == "online")
    await socket.disconnect()

    async def seen_a_moment_ago() -> bool:
        seen = (await Member.objects.aget(name="Alice")).last_seen_at
        return timezone.now() - seen < timedelta(seconds=5)

    await until(seen_a_moment_ago, within=GRACE + 5)


async def test_idle_members_are_removed_by_the_sweep_and_every_page_sees_them_go(settings) -> None:
    settings.LIVEROOM_IDLE_REMOVAL_SECONDS = 1
    alice, bob = await new_member("Alice"), await new_member("Bob")  # Bob opens no page
    socket, page = await open_page(alice)
    await read_until(socket, page, lambda page: page.presence_of("Alice") == "online")
    # Both pass the limit by the clock; Alice's page is open. The process sweeps every second.
    await read_until(socket, page, lambda page: page.members() == ["Alice"])
    await read_until(socket, page, lambda page: page.text("#announcement") == "Bob left")
    assert await Member.objects.filter(name="Alice").aexists()
    response = await sync_to_async(bob.get)("/room/")
    assert response["Location"] == "/room/join/"  # Bob's session is out of the room
    await socket.disconnect()


async def test_a_process_with_pages_open_sweeps_idle_members_and_empty_rooms_unasked(
    settings, monkeypatch
) -> None:
    settings.LIVEROOM_EMPTY_ROOM_SECONDS = 1
    monkeypatch.setattr(cleanup.sweeps, "next_sweep", 0.0)
    alice = await new_member("Alice")
    await new_member("Bob")  # opens no page
    carol = Client()
    await sync_to_async(carol.post)("/room/chess/join/", {"name": "Carol"})
    await sync_to_async(carol.post)("/room/chess/leave/")  # chess is empty from now
    socket, page = await open_page(alice)
    await read_until(socket, page, lambda page: page.presence_of("Alice") == "online")
    settings.LIVEROOM_IDLE_REMOVAL_SECONDS = 1  # Bob has been away for longer

    # No request from here on: the live core's timer sweeps.
    await read_until(socket, page, lambda page: page.members() == ["Alice"])
    await read_until(socket, page, lambda page: page.text("#announcement") == "Bob left")
    await asyncio.sleep(2.5)  # two sweeps more, chess empty for longer than its second
    assert not await Room.objects.filter(slug="chess").aexists()
    assert await Room.objects.filter(slug=Room.DEFAULT_SLUG).aexists()  # Alice is in it
    await socket.disconnect()


async def test_a_member_online_for_long_is_not_idle_the_moment_they_go_away(
    settings, monkeypatch
) -> None:
    settings.LIVEROOM_IDLE_REMOVAL_SECONDS = 60
    render = fragments.render_presence_change

    def slow_render(change):  # the "went away" announcement is late
        time.sleep(2)
        return render(change)

    alice = await new_member("Alice")
    socket, page = await open_page(alice)
    await read_until(socket, page, lambda page: page.presence_of("Alice") == "online")
    await Member.objects.filter(name="Alice").aupdate(  # online for a day and a bit
        last_seen_at=timezone.now() - timedelta(days=1)
    )
    monkeypatch.setattr(fragments, "render_presence_change", slow_render)
    await socket.disconnect()
    await until(lambda: not room_presence("lobby").online, within=GRACE + 5)  # Alice away
    # In a thread of its own: the one Channels shares is busy with the late announcement.
    assert await asyncio.to_thread(remove_idle_members) == 0  # seen a moment ago
    assert await Member.objects.filter(name="Alice").aexists()


@pytest.mark.services
async def test_the_idle_command_removes_idle_members_of_every_room(settings, monkeypatch) -> None:
    settings.LIVEROOM_IDLE_REMOVAL_SECONDS = 1
    monkeypatch.setattr(cleanup.sweeps, "next_sweep", float("inf"))  # the command's sweep alone
    await new_member("Alice")
    await sync_to_async(Client().post)("/room/chess/join/", {"name": "Bob"})
    await sync_to_async(Client().post)("/room/go/join/", {"name": "Carol"})
    carol = await Member.objects.aget(name="Carol")
    await stores.for_reading().update("go", "some-process", {carol.pk}, set(), ttl=60)
    await asyncio.sleep(1.2)

    output = StringIO()
    await sync_to_async(call_command)("remove_idle_members", stdout=output)
    assert output.getvalue().splitlines()[0] == "Removed 2 idle members."
    assert [m.name async for m in Member.objects.all()] == ["Carol"]  # online: kept


async def test_idle_removal_off_by_default_keeps_everyone() -> None:
    await new_member("Bob")
    await Member.objects.filter(name="Bob").aupdate(last_seen_at=timezone.now() - timedelta(days=9))
    await sync_to_async(Client().get)("/room/")
    assert await Member.objects.filter(name="Bob").aexists()


@pytest.mark.parametrize(
    ("idle_seconds", "message"),
    [(0, "Idle removal is off"), (60, "Without REDIS_URL")],
)
async def test_the_idle_command_says_when_it_cannot_remove_members(
    settings, idle_seconds, message
) -> None:
    settings.LIVEROOM_IDLE_REMOVAL_SECONDS = idle_seconds
    settings.REDIS_URL = ""
    output = StringIO()
    await sync_to_async(call_command)("remove_idle_members", stdout=output)
    assert output.getvalue().startswith(message)
    assert output.getvalue().endswith("Removed 0 empty rooms.\n")  # that part runs anyway


async def test_a_new_page_shows_presence_that_changed_after_the_list_was_rendered() -> None:
    alice, bob = await new_member("Alice"), await new_member("Bob")
    alice_socket, alice_page = await open_page(alice)  # renders the list: both away
    await read_until(alice_socket, alice_page, lambda page: page.presence_of("Alice") == "online")

    bob_socket, bob_page = await open_page(bob)  # the same list, plus what changed since
    assert bob_page.presence_of("Alice") == "online"
    assert bob_page.text("#online-count") == "1 online"
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_the_watch_heals_presence_a_page_never_got_a_message_for(
    settings, monkeypatch
) -> None:
    settings.LIVEROOM_WATCH_INTERVAL = 0.2
    monkeypatch.setattr(watch, "PRESENCE_HEAL_SECONDS", 0.6)  # 5 s in production
    alice = await new_member("Alice")
    await new_member("Bob")
    socket, page = await open_page(alice)
    await read_until(socket, page, lambda page: page.presence_of("Alice") == "online")
    bob_id = await Member.objects.filter(name="Bob").values_list("id", flat=True).aget()
    # Bob comes online on another process whose message is lost: only the store knows.
    change = await stores.for_reading().update("lobby", "elsewhere", {bob_id}, set(), 60)
    assert change is not None
    await read_until(socket, page, lambda page: page.presence_of("Bob") == "online")
    assert page.text("#online-count") == "2 online"
    await socket.disconnect()


@pytest.mark.services
async def test_every_redis_key_left_after_pages_close_expires_by_itself(settings) -> None:
    alice, bob = await new_member("Alice"), await new_member("Bob")
    alice_socket, alice_page = await open_page(alice)
    bob_socket, _ = await open_page(bob)
    await read_until(
        alice_socket, alice_page, lambda page: page.text("#online-count") == "2 online"
    )
    await bob_socket.disconnect()
    await alice_socket.disconnect()
    redis = Redis.from_url(settings.REDIS_URL)

    def keys() -> list[str]:
        return [key.decode() for key in redis.scan_iter(f"{settings.LIVEROOM_KEY_PREFIX}*")]

    def entries() -> list[str]:
        return [key for key in keys() if ":presence:entries:" in key or ":presence:counts:" in key]

    await until(lambda: entries() == [], within=GRACE + 5)  # both went away: entries gone
    left = keys()
    assert left, "the test wrote to Redis under its prefix"
    assert [key for key in left if redis.ttl(key) < 0] == []
