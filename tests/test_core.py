"""The per-process LiveCore and each page's state, without a server."""

import asyncio
import logging
import re
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from bench.arrival import watch_lists
from harness.waiting import until
from liveroom.asgi import application
from liveroom.live import supervisor
from liveroom.live.core import live_core
from liveroom.live.delivery import Outbox
from liveroom.live.messages import room_group
from liveroom.live.page import FORWARD, HANDLE, HOLD, RELEASE, SKIP, PageState
from liveroom.live.snapshot_reads import SnapshotReads
from liveroom.models import Member, Room
from liveroom.rooms import member_lists as lists_module
from liveroom.rooms import snapshots as snapshots_module
from liveroom.testing import new_member, open_socket, receive_snapshot, socket_headers
from liveroom.wire import NOT_A_MEMBER

# --- What a page makes of a message -------------------------------------------------------


def change(version: int, member_id: int = 7) -> dict:
    html = f"<p>{version}</p>"
    return {"type": "room.change", "group": "room.lobby", "version": version,
            "member_id": member_id, "left": False, "rendered": {"en": html}}  # fmt: skip


def presence(sequence: int) -> dict:
    return {"type": "room.presence", "group": "room.lobby", "sequence": sequence,
            "members": [7], "rendered": {"en": f"<p>{sequence}</p>"}}  # fmt: skip


def shown_page(version: int = 5, sequence: int = 3, member_id: int = 1) -> PageState:
    state = PageState()
    state.release_waiting()
    assert state.shown(member_id=member_id, version=version, presence_sequence=sequence)
    return state


def test_messages_before_the_first_list_wait_and_come_back_in_order() -> None:
    state = PageState()
    assert [state.triage(change(1)), state.triage(change(2))] == [SKIP, SKIP]
    state.shown(member_id=1, version=1, presence_sequence=0)
    assert [m["version"] for m in state.release_waiting()] == [1, 2]
    assert state.triage(change(2)) is FORWARD
    assert state.release_waiting() == []


def test_the_next_version_is_forwarded_and_repeats_are_skipped() -> None:
    state = shown_page(version=5)
    assert state.triage(change(6)) is FORWARD
    assert state.version == 6
    assert [state.triage(change(6)), state.triage(change(4))] == [SKIP, SKIP]


def test_the_pages_own_member_needs_handling() -> None:
    assert shown_page(version=5, member_id=7).triage(change(6, member_id=7)) is HANDLE


def test_an_early_change_is_held_until_the_one_before_it_comes() -> None:
    state = shown_page(version=5)
    assert state.triage(change(7)) is HOLD
    assert state.triage(change(8)) is HOLD
    assert state.next_held() is None  # 6 has not come
    assert state.gap_open()
    assert state.triage(change(6)) is RELEASE  # forward it, then what is next now
    released = state.next_held()
    assert released["version"] == 7
    assert state.triage(released) is RELEASE
    assert state.triage(state.next_held()) is FORWARD
    assert (state.version, state.next_held(), state.gap_open()) == (8, None, False)


def test_one_check_at_a_time_watches_the_gap_however_many_changes_wait() -> None:
    # A burst holds a change in each window while one is late: one check is due, not one each.
    state = shown_page(version=5)
    assert state.triage(change(7)) is HOLD
    assert state.watch_gap()
    assert state.triage(change(8)) is HOLD
    assert not state.watch_gap()  # the check that is due covers it
    assert state.gap_open()  # the check: 6 has still not come (a snapshot heals it)
    assert state.triage(change(9)) is HOLD
    assert state.watch_gap()  # past that check, the next is scheduled


def test_a_snapshot_closes_the_gap_it_covers() -> None:
    state = shown_page(version=5)
    state.triage(change(7))
    state.triage(change(9))
    state.shown(member_id=1, version=7, presence_sequence=3)
    assert state.gap_open()  # 9 still waits for 8
    state.shown(member_id=1, version=9, presence_sequence=3)
    assert not state.gap_open()


def test_presence_in_the_snapshot_is_skipped_and_a_late_one_handled() -> None:
    state = shown_page(sequence=3)
    assert state.triage(presence(3)) is SKIP  # in the snapshot
    assert state.triage(presence(6)) is FORWARD
    assert state.triage(presence(6)) is SKIP  # this very message again
    assert state.triage(presence(5)) is HANDLE  # older than what the page shows


def test_a_snapshot_older_than_the_page_is_not_shown() -> None:
    state = shown_page(version=5)
    assert not state.shown(member_id=1, version=4, presence_sequence=0)
    assert state.version == 5


# --- The LiveCore -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_live_task_that_dies_is_logged_counted_and_started_again(
    monkeypatch, caplog
) -> None:
    monkeypatch.setattr(supervisor, "RESTART_SECONDS", 0.01)
    core, runs = live_core(), []

    async def dies_once() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("injected")

    with caplog.at_level(logging.ERROR, logger="liveroom.live.supervisor"):
        core.tasks.supervise("probe", dies_once)
        await until(lambda: len(runs) == 2, within=5)
    assert (len(runs), core.tasks.restarts["probe"]) == (2, 1)
    assert "Live task 'probe' died (restart 1): injected" in caplog.text
    await core.aclose()


@pytest.mark.asyncio
async def test_a_live_task_asked_for_as_it_ends_is_started_again() -> None:
    """The watch ends when it sees no pages; a page that comes between that last look and the
    end being handled (a callback later) must still be watched."""
    core, runs = live_core(), []

    async def sees_nothing_to_do() -> None:
        runs.append(1)

    core.tasks.supervise("probe", sees_nothing_to_do)
    await asyncio.sleep(0)  # the task runs and ends; its end is handled a callback later
    assert core.tasks.running["probe"].done()
    core.tasks.supervise("probe", sees_nothing_to_do)
    await until(lambda: len(runs) == 2, within=5)
    await until(lambda: "probe" not in core.tasks.running, within=5)
    await core.aclose()


class BehindPage:
    """A page the watch found behind: its state, and the snapshots it was sent."""

    def __init__(self, version: int) -> None:
        self.group_name, self.room_slug, self.version = "room.lobby", "lobby", version
        self.snapshots = 0

    async def send_snapshot(self, *, rewind: bool = False) -> None:
        self.snapshots += 1


@pytest.mark.asyncio
async def test_the_watch_heals_a_missed_change_but_not_one_still_being_handed_out(
    caplog,
) -> None:
    """A busy process hands a crowd's changes out late: the pages it has not reached yet are
    not missing anything, and a snapshot each would only make it busier."""
    core = live_core()
    page = BehindPage(version=5)
    core.groups["room.lobby"] = {page}  # type: ignore[arg-type]
    outbox = Outbox(messages=[change(6)], sending=True, newest_version=6)
    core.delivery.outboxes["room.lobby"] = outbox

    core.watch.resync_still_behind([(page, 5, 6)])  # the database is at 6
    await asyncio.sleep(0)
    assert page.snapshots == 0  # 6 is here, on its way to the page

    outbox.messages, outbox.sending = [], False  # handed out, and the page still shows 5
    with caplog.at_level(logging.INFO, logger="liveroom.live.watch"):
        core.watch.resync_still_behind([(page, 5, 6)])
    await until(lambda: page.snapshots == 1, within=5)
    assert watch_lists(caplog.text) == 1  # the log line bench.arrival counts

    outbox.messages, outbox.sending = [change(6)], True  # busy, but 7 never came here
    core.watch.resync_still_behind([(page, 5, 7)])
    await until(lambda: page.snapshots == 2, within=5)
    core.groups.clear()
    await core.aclose()


@pytest.mark.asyncio
async def test_the_newest_change_taken_is_kept_per_room_and_forgotten_on_a_rewind() -> None:
    core = live_core()
    delivery = core.delivery
    delivery.gather({"type": "room.batch", "group": "room.lobby",
                     "messages": [change(8), presence(4), change(7)]})  # fmt: skip
    # Until the loop runs the delivery, the three wait in the room's outbox.
    assert delivery.on_the_way("room.lobby", 8)
    assert not delivery.on_the_way("room.lobby", 9)
    assert not delivery.on_the_way("room.other", 1)
    delivery.rewound("room.lobby")  # a restored database: its versions start lower
    assert not delivery.on_the_way("room.lobby", 2)
    await core.aclose()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_failure_delivering_to_one_page_does_not_stop_other_pages_or_later_changes(
    caplog,
) -> None:
    alice, bob = await new_member("Alice"), await new_member("Bob")
    alice_socket, bob_socket = await open_socket(alice), await open_socket(bob)
    for socket in (alice_socket, bob_socket):
        await receive_snapshot(socket)
    core = live_core()
    (alice_page,) = [
        page
        for page in core.groups[room_group("lobby")]
        if page.session_key == alice_session(alice)
    ]
    real_triage = alice_page.triage

    def fails_once(message: dict):
        alice_page.triage = real_triage
        raise RuntimeError("injected")

    alice_page.triage = fails_once
    await new_member("Carol")
    assert "Carol" in await bob_socket.receive_from()
    assert core.delivery.failed_deliveries == 1
    assert "Room messages were not delivered to one page" in caplog.text

    await new_member("Dan")  # Alice's page missed Carol: the gap brings it the whole list
    assert "Dan" in await bob_socket.receive_from()
    healed = await receive_snapshot(alice_socket)
    assert "Carol" in healed
    assert "Dan" in healed
    for socket in (alice_socket, bob_socket):
        await socket.disconnect()


def alice_session(client: Client) -> str:
    return client.cookies["sessionid"].value


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_page_still_gets_changes_long_after_the_layers_group_expiry(settings) -> None:
    # The in-memory layer (the embedded default) forgets group members after `group_expiry`.
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                    "CONFIG": {"group_expiry": 2}},
    }  # fmt: skip
    settings.LIVEROOM_WATCH_INTERVAL = 0.5
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)
    await asyncio.sleep(8)  # four expiries
    await new_member("Bob")
    # The change itself, at once: not the watch's whole list, which would heal a lost one.
    fragment = await socket.receive_from(timeout=0.5)
    assert fragment.startswith('<ul hx-swap-oob="beforeend:#members')
    assert "Bob" in fragment
    await socket.disconnect()


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_rooms_opened_and_closed_leave_nothing_behind_in_the_core() -> None:
    rooms = 3000
    sessions = await database_sync_to_async(make_members)(rooms)
    core = live_core()
    semaphore = asyncio.Semaphore(50)

    async def visit(index: int) -> None:
        async with semaphore:
            path = f"/ws/room/r{index}/"
            headers = [(b"origin", b"http://localhost"),
                       (b"cookie", f"sessionid={sessions[index]}".encode())]  # fmt: skip
            socket = WebsocketCommunicator(application, path, headers=headers)
            assert (await socket.connect())[0]
            # A leak test, not a speed test: 50 at a time queue for the readers and Redis.
            assert f"member r{index}" in await receive_snapshot(socket, within=10)
            await socket.disconnect()

    await asyncio.gather(*(visit(index) for index in range(rooms)))
    await core.tasks.wait_one_off()  # the unsubscriptions under way
    assert (core.groups, core.list_frames, core.subscribed) == ({}, {}, {})
    assert lists_module.member_lists.rooms() == []


def make_members(count: int) -> list[str]:
    """A room r<i> with one member for each i, each with a live session; their session keys."""
    sessions = []
    for _ in range(count):
        store = SessionStore()
        store.create()
        sessions.append(store.session_key)
    Room.objects.bulk_create(Room(slug=f"r{i}") for i in range(count))
    rooms = {room.slug: room for room in Room.objects.all()}
    Member.objects.bulk_create(
        Member(room=rooms[f"r{i}"], session_key=key, name=f"member r{i}")
        for i, key in enumerate(sessions)
    )
    return sessions


# --- Sessions -----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["expired", "flushed"])
async def test_a_member_whose_session_is_gone_is_refused(how: str) -> None:
    alice = await new_member("Alice")
    key = alice_session(alice)
    if how == "expired":
        await Session.objects.filter(session_key=key).aupdate(expire_date=timezone.now())
    else:
        await database_sync_to_async(alice.logout)()  # what a flush does: the session row goes
    assert await Member.objects.filter(session_key=key).aexists()  # still a member
    socket = WebsocketCommunicator(application, "/ws/room/", headers=socket_headers(alice))
    if how == "flushed":  # logout gave the client a new cookie: send the old one
        socket = WebsocketCommunicator(
            application,
            "/ws/room/",
            headers=[(b"origin", b"http://localhost"), (b"cookie", f"sessionid={key}".encode())],
        )
    assert (await socket.connect())[0]
    assert await socket.receive_output() == {"type": "websocket.close", "code": NOT_A_MEMBER}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_sessions_kept_elsewhere_than_the_database_are_checked_by_their_engine(
    settings,
) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    alice = await new_member("Alice")
    key = alice_session(alice)
    assert not await Session.objects.filter(session_key=key).aexists()  # not in the table
    socket = await open_socket(alice)
    assert "Alice" in await receive_snapshot(socket)
    await socket.disconnect()

    await database_sync_to_async(alice.logout)()  # the session goes from the cache
    headers = [(b"origin", b"http://localhost"), (b"cookie", f"sessionid={key}".encode())]
    socket = WebsocketCommunicator(application, "/ws/room/", headers=headers)
    assert (await socket.connect())[0]
    assert await socket.receive_output() == {"type": "websocket.close", "code": NOT_A_MEMBER}


@pytest.fixture
def list_renders(monkeypatch) -> list[str]:
    """The rooms whose member list is rendered from the database, one entry a render."""
    renders: list[str] = []
    render = lists_module.render_member_list
    monkeypatch.setattr(
        lists_module,
        "render_member_list",
        lambda room_id, *previous: (
            renders.append(Room.objects.get(pk=room_id).slug) or render(room_id, *previous)
        ),
    )
    return renders


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_pages_connecting_together_share_one_render_of_the_list(list_renders) -> None:
    renders = list_renders
    clients = [await new_member(f"Guest {i}") for i in range(20)]
    sockets = await asyncio.gather(*(open_socket(client) for client in clients))
    snapshots = await asyncio.gather(*(receive_snapshot(socket) for socket in sockets))
    assert all("Guest 19" in snapshot for snapshot in snapshots)
    assert renders == ["lobby"]
    for socket in sockets:
        await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_pages_connecting_together_share_their_snapshot_reads(monkeypatch) -> None:
    # A first page's read is held until thirteen more pages have asked, so they ask together.
    asked: list[str] = []
    all_asked = asyncio.Event()
    ask = SnapshotReads.read

    async def counted_ask(self, room_slug, session_key, **options):
        asked.append(session_key)
        if len(asked) == 14:
            all_asked.set()
        return await ask(self, room_slug, session_key, **options)

    reads: list[int] = []
    first_read_may_go = threading.Event()
    snapshots = snapshots_module.snapshots

    def held_snapshots(slug, wanted):
        reads.append(len(wanted))
        if len(reads) == 1:
            assert first_read_may_go.wait(timeout=10)
        return snapshots(slug, wanted)

    monkeypatch.setattr(SnapshotReads, "read", counted_ask)
    monkeypatch.setattr(snapshots_module, "snapshots", held_snapshots)
    clients = [await new_member(f"Guest {i}") for i in range(13)]
    first, alice = clients[12], clients[0]
    sockets = [await open_socket(first)]
    sockets += await asyncio.gather(*(open_socket(client) for client in [*clients[:12], alice]))
    await asyncio.wait_for(all_asked.wait(), timeout=5)
    first_read_may_go.set()
    for socket in sockets:
        assert "Guest 12" in await receive_snapshot(socket, within=5)
    assert reads == [1, 12]  # thirteen pages in one read; Alice's two pages share a snapshot
    for socket in sockets:
        await socket.disconnect()


@pytest.mark.django_db
def test_page_loads_at_one_version_render_the_list_once(list_renders, client) -> None:
    renders = list_renders
    members = [Client() for _ in range(5)]
    for number, member in enumerate(members):
        assert member.post("/room/join/", {"name": f"Guest {number}"}).status_code == 302
    pages = [member.get("/room/").content.decode() for member in members * 3]
    assert renders == ["lobby"]  # fifteen loads at version 5
    assert all(page.count("member--you") == 1 for page in pages)
    assert all(page.count('<li id="member-') == 5 for page in pages)


@pytest.mark.django_db
def test_a_new_version_renders_only_the_entries_that_changed(monkeypatch) -> None:
    rendered = []
    render = lists_module.render_entries
    monkeypatch.setattr(
        lists_module,
        "render_entries",
        lambda member: rendered.append(member.name) or render(member),
    )
    members = [Client() for _ in range(30)]
    for number, member in enumerate(members):
        assert member.post("/room/join/", {"name": f"Guest {number}"}).status_code == 302
        member.get("/room/")  # each load at a new version
    assert sorted(rendered) == sorted(f"Guest {number}" for number in range(30))  # once each
    rendered.clear()
    assert members[3].post("/room/join/", {"name": "Renamed"}).status_code == 302
    assert members[4].post("/room/leave/").status_code == 302
    page = members[0].get("/room/").content.decode()
    assert rendered == ["Renamed"]
    assert "Renamed" in page
    assert "Guest 3<" not in page
    assert "Guest 4<" not in page
    assert page.count('<li id="member-') == 29


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_socket_whose_page_is_current_gets_only_its_own_part() -> None:
    alice = await new_member("Alice")
    await new_member("Bob")
    page = (await database_sync_to_async(alice.get)("/room/")).content.decode()
    path = re.search(r'ws-connect="([^"]+)"', page)[1].replace("&amp;", "&")
    current = WebsocketCommunicator(application, path, headers=socket_headers(alice))
    assert (await current.connect())[0]
    first = await current.receive_from()
    assert first.startswith('<p id="connection"')  # its own part: no list again
    assert "2 people here" in first
    assert await current.receive_nothing(timeout=0.2)
    await current.disconnect()

    await new_member("Carol")  # the page's list is now behind
    behind = WebsocketCommunicator(application, path, headers=socket_headers(alice))
    assert (await behind.connect())[0]
    assert "Carol" in await receive_snapshot(behind)
    await behind.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_rooms_new_pages_wait_for_no_other_rooms_subscription(monkeypatch) -> None:
    alice = await new_member("Alice")
    first = await open_socket(alice)
    await receive_snapshot(first)  # the lobby's group is subscribed
    core = live_core()
    group_add = core.layer.group_add

    subscribing: list[str] = []

    async def slow_for_chess(group: str, channel: str) -> None:
        if group == room_group("chess"):
            subscribing.append(group)
            await asyncio.sleep(3)  # longer than LIVEROOM_BROADCAST_TIMEOUT
        await group_add(group, channel)

    monkeypatch.setattr(core.layer, "group_add", slow_for_chess)
    bob = Client()
    await database_sync_to_async(bob.post)("/room/chess/join/", {"name": "Bob"})
    chess = WebsocketCommunicator(application, "/ws/room/chess/", headers=socket_headers(bob))
    assert (await chess.connect())[0]
    await until(lambda: subscribing)  # now subscribing, slowly
    second = await open_socket(alice)
    assert "Alice" in await receive_snapshot(second)  # not told to retry after the wait
    assert await chess.receive_output(timeout=5) == {"type": "websocket.close", "code": 1013}
    for socket in (first, second):
        await socket.disconnect()
