import asyncio
import json
import time

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from django.test import Client

from liveroom.asgi import application
from liveroom.live import announcements
from liveroom.live.messages import room_group
from liveroom.models import Member, Room
from liveroom.rooms import snapshots as snapshots_module
from liveroom.testing import Page, join, new_member, open_socket, receive_snapshot, socket_headers
from liveroom.wire import NOT_A_MEMBER, POLICY_VIOLATION, TRY_AGAIN_LATER

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

# Close codes after which the htmx ws extension reconnects.
HTMX_RETRIES = {1006, 1011, 1012, 1013}


async def member_id(name: str) -> int:
    return (await Member.objects.aget(name=name)).pk


async def test_a_member_gets_the_whole_list_on_connect() -> None:
    alice = await new_member("Alice")
    await new_member("Bob")
    socket = await open_socket(alice)
    snapshot = await receive_snapshot(socket)
    assert '<ul id="members"' in snapshot
    assert 'hx-swap-oob="true"' in snapshot
    assert snapshot.index("Alice") < snapshot.index("Bob")
    assert "member--you" in snapshot
    assert "2 people here" in snapshot
    await socket.disconnect()


async def test_a_join_posted_over_http_reaches_every_open_socket() -> None:
    alice = await new_member("Alice")
    bob = await new_member("Bob")
    sockets = [await open_socket(alice), await open_socket(alice), await open_socket(bob)]
    pages = [Page() for _ in sockets]
    for socket, page in zip(sockets, pages, strict=True):
        page.apply(await receive_snapshot(socket))

    await new_member("Carol")
    for socket, page in zip(sockets, pages, strict=True):
        page.apply(await socket.receive_from())  # one message: the join
        assert page.members() == ["Alice", "Bob", "Carol"]
        assert page.text("#member-count") == "3 people here"
        assert page.text("#announcement") == "Carol joined"
        assert page.errors == []
        await socket.disconnect()


async def test_a_leave_posted_over_http_reaches_every_open_socket() -> None:
    alice = await new_member("Alice")
    bob = await new_member("Bob")
    bob_id = await member_id("Bob")
    socket = await open_socket(alice)
    page = Page()
    page.apply(await receive_snapshot(socket))

    await sync_to_async(bob.post)("/room/leave/")
    page.apply(await socket.receive_from())
    assert page.members() == ["Alice"]
    assert page.document.by_id(f"member-{bob_id}") is None
    assert page.text("#member-count") == "1 person here"
    await socket.disconnect()


async def test_a_rename_replaces_the_member_in_place() -> None:
    alice = await new_member("Alice")
    bob = await new_member("Bob")
    bob_id = await member_id("Bob")
    socket = await open_socket(alice)
    page = Page()
    page.apply(await receive_snapshot(socket))

    await sync_to_async(join)(bob, "Robert")
    page.apply(await socket.receive_from())
    assert page.entries() == {f"member-{await member_id('Alice')}": "Alice",
                              f"member-{bob_id}": "Robert"}  # fmt: skip
    assert page.text("#announcement") == "Bob is now Robert"
    await socket.disconnect()


async def test_a_visitor_who_has_not_joined_is_closed_with_a_code_htmx_does_not_retry() -> None:
    socket = await open_socket(Client())
    output = await socket.receive_output()
    assert output == {"type": "websocket.close", "code": NOT_A_MEMBER}
    assert NOT_A_MEMBER not in HTMX_RETRIES


async def test_a_forged_session_cookie_is_refused() -> None:
    forged = Client()
    forged.cookies["sessionid"] = "x" * 32
    socket = await open_socket(forged)
    assert await socket.receive_output() == {"type": "websocket.close", "code": NOT_A_MEMBER}


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "garbage"])
async def test_a_foreign_origin_is_refused_at_the_handshake(origin: str) -> None:
    alice = await new_member("Alice")
    communicator = WebsocketCommunicator(
        application, "/ws/room/", headers=socket_headers(alice, origin)
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_a_handshake_without_origin_is_refused() -> None:
    alice = await new_member("Alice")
    headers = [h for h in socket_headers(alice) if h[0] != b"origin"]
    communicator = WebsocketCommunicator(application, "/ws/room/", headers=headers)
    connected, _ = await communicator.connect()
    assert not connected


async def test_leaving_in_another_tab_closes_this_tab_with_a_notice() -> None:
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)

    await sync_to_async(alice.post)("/room/leave/")
    notice = await socket.receive_from()
    assert '<section id="you"' in notice
    assert "You left the room from another tab." in notice
    assert await socket.receive_output() == {"type": "websocket.close", "code": NOT_A_MEMBER}


async def test_renaming_in_another_tab_sends_this_tab_its_own_part_again() -> None:
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    page = Page()
    page.apply(await receive_snapshot(socket))

    await sync_to_async(join)(alice, "Alicia")
    own_part = await socket.receive_from()  # the rename is all it lacks: no list again
    assert 'id="members"' not in own_part
    page.apply(own_part)
    assert page.text("#my-name") == "Alicia"
    assert page.text(f"#member-{await member_id('Alicia')}").startswith("Alicia (you)")
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_a_rename_reads_one_snapshot_for_all_of_the_members_pages(monkeypatch) -> None:
    reads = []
    snapshots = snapshots_module.snapshots
    monkeypatch.setattr(
        snapshots_module, "snapshots", lambda *args: reads.append(args) or snapshots(*args)
    )
    alice = await new_member("Alice")
    pages = [await open_socket(alice) for _ in range(30)]
    for page in pages:
        await receive_snapshot(page)
    reads.clear()
    await sync_to_async(join)(alice, "Alicia")
    for page in pages:
        assert "Alicia" in await page.receive_from()
    assert len(reads) == 1  # not one per page
    for page in pages:
        await page.disconnect()


async def test_a_frame_from_the_client_closes_the_socket() -> None:
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)
    await socket.send_to(text_data=json.dumps({"hello": "there"}))
    assert await socket.receive_output() == {"type": "websocket.close", "code": POLICY_VIOLATION}


async def room_event(version: int, member_id: int, html: str) -> dict:
    return {"type": "room.change", "group": "room.lobby", "version": version,
            "member_id": member_id, "left": False, "rendered": {"en": html}}  # fmt: skip


async def test_a_repeated_or_old_version_is_not_forwarded_twice() -> None:
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)
    bob = await new_member("Bob")
    first = await socket.receive_from()

    room = await Room.objects.aget(slug=Room.DEFAULT_SLUG)
    layer = get_channel_layer()
    await layer.group_send(
        room_group(room.slug), await room_event(room.version, 0, "<p>repeat</p>")
    )
    await layer.group_send(
        room_group(room.slug), await room_event(room.version - 1, 0, "<p>old</p>")
    )
    assert await socket.receive_nothing(timeout=0.3)
    assert "Bob" in first
    await sync_to_async(bob.post)("/room/leave/")
    assert 'hx-swap-oob="delete"' in await socket.receive_from()
    await socket.disconnect()


async def test_a_gap_in_versions_is_healed_with_a_fresh_list() -> None:
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)

    room = await Room.objects.aget(slug=Room.DEFAULT_SLUG)
    # A change the layer lost: the database moved two versions on, the page saw neither.
    await Member.objects.acreate(room=room, session_key="s" * 32, name="Dana")
    await Room.objects.filter(pk=room.pk).aupdate(version=room.version + 2)
    layer = get_channel_layer()
    await layer.group_send(room_group(room.slug), await room_event(room.version + 2, 0, "<p>x</p>"))
    snapshot = await receive_snapshot(socket)
    assert "Dana" in snapshot
    await socket.disconnect()


async def test_changes_published_out_of_order_reach_the_page_in_order_with_no_fresh_list() -> None:
    # Requests publish independently: the later change may reach the layer first.
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)
    room = await Room.objects.aget(slug=Room.DEFAULT_SLUG)
    await Room.objects.filter(pk=room.pk).aupdate(version=room.version + 2)  # as the two did
    layer = get_channel_layer()
    await layer.group_send(room_group(room.slug), await room_event(room.version + 2, 0, "<p>2</p>"))
    await layer.group_send(room_group(room.slug), await room_event(room.version + 1, 0, "<p>1</p>"))
    received = ""  # in one frame, or two (they may come in one window or in two)
    while "<p>2</p>" not in received:
        received += await socket.receive_from()
    assert received == "<p>1</p><p>2</p>"
    assert await socket.receive_nothing(timeout=1)  # past the gap time: no whole list
    await socket.disconnect()


async def test_changes_that_come_together_go_out_together_in_one_frame_a_window() -> None:
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)
    room = await Room.objects.aget(slug=Room.DEFAULT_SLUG)
    layer, group = get_channel_layer(), room_group(room.slug)
    await layer.group_send(group, await room_event(room.version + 1, 0, "<p>1</p>"))
    assert await socket.receive_from() == "<p>1</p>"  # a quiet room's change: at once, alone
    started = time.monotonic()
    for version in range(room.version + 2, room.version + 22):  # 20 while one goes out
        await layer.group_send(
            group, await room_event(version, 0, f"<p>{version - room.version}</p>")
        )
    frames = []
    while "<p>21</p>" not in "".join(frames):
        frames.append(await socket.receive_from())
    assert "".join(frames) == "".join(f"<p>{n}</p>" for n in range(2, 22))  # in order, each once
    assert len(frames) <= 2  # gathered: the window's frame, and at most one more
    assert time.monotonic() - started < 1
    await socket.disconnect()


async def test_every_socket_gets_every_change_in_order() -> None:
    alice = await new_member("Alice")
    sockets = [await open_socket(alice) for _ in range(5)]
    for socket in sockets:
        await receive_snapshot(socket)
    names = [f"Guest {i}" for i in range(10)]
    for name in names:
        await new_member(name)
    for socket in sockets:
        received = ""  # changes that come together may share a frame
        while not all(name in received for name in names):
            received += await socket.receive_from()
        assert sorted(names, key=received.index) == names
        await socket.disconnect()
    await asyncio.sleep(0)


async def test_each_change_is_announced_once_for_screen_readers(monkeypatch) -> None:
    monkeypatch.setattr(announcements, "INTERVAL", 0.0)  # one at a time: each is said
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    await receive_snapshot(socket)
    bob = await new_member("Bob")
    page = Page()
    page.apply(await socket.receive_from())
    assert page.text("#announcement") == "Bob joined"
    await sync_to_async(join)(bob, "Robert")
    page.apply(await socket.receive_from())
    assert page.text("#announcement") == "Bob is now Robert"
    await sync_to_async(bob.post)("/room/leave/")
    page.apply(await socket.receive_from())
    assert page.text("#announcement") == "Robert left"
    assert page.errors == []
    await socket.disconnect()


async def test_a_burst_is_said_once_a_second_summed_up_while_the_list_follows_each_change(
    monkeypatch,
) -> None:
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    page = Page()
    page.apply(await receive_snapshot(socket))
    await new_member("Bob")
    page.apply(await socket.receive_from())
    assert page.text("#announcement") == "Bob joined"  # the first, at once
    said_at = time.monotonic()
    for name in ["Carol", "Dan", "Erin"]:
        await new_member(name)
        frame = await socket.receive_from()
        assert 'id="announcement"' not in frame  # the entry now, the words later
        page.apply(frame)
    assert page.members() == ["Alice", "Bob", "Carol", "Dan", "Erin"]
    page.apply(await socket.receive_from(timeout=2))  # no change comes to carry the words
    assert time.monotonic() - said_at >= 0.9  # at most one a second
    assert page.text("#announcement") == "3 people joined"
    await asyncio.sleep(1)
    monkeypatch.setattr(announcements, "CARRY_SECONDS", 5.0)  # below, a change always carries
    for name in ["Fay", "Gus"]:  # the first after a quiet second is said at once, the next waits
        await new_member(name)
        page.apply(await socket.receive_from())
    assert page.text("#announcement") == "Fay joined"
    await asyncio.sleep(1)
    await new_member("Hal")  # a change after the second carries what waited, and its own words
    frame = await socket.receive_from()
    assert 'id="announcement"' in frame
    page.apply(frame)
    assert page.text("#announcement") == "2 people joined"
    assert page.errors == []
    await socket.disconnect()


async def test_pages_get_a_heartbeat_that_keeps_the_indicator_live(settings) -> None:
    settings.LIVEROOM_HEARTBEAT_SECONDS = 0.2
    alice = await new_member("Alice")
    socket = await open_socket(alice)
    page = Page()
    page.apply(await receive_snapshot(socket))
    heartbeat = await socket.receive_from(timeout=3)
    page.apply(heartbeat)
    assert Page(heartbeat).select("#connection")  # the indicator, again: its animation restarts
    assert page.select("#connection .connection__live")  # CSS shows it while heartbeats come
    assert page.errors == []
    await socket.disconnect()


async def test_pages_whose_shared_snapshot_read_fails_are_asked_to_retry(monkeypatch) -> None:
    def unreachable(*args):
        raise OperationalError("connection refused")

    alice, bob = await new_member("Alice"), await new_member("Bob")
    monkeypatch.setattr(snapshots_module, "snapshots", unreachable)
    sockets = await asyncio.gather(open_socket(alice), open_socket(bob), open_socket(alice))
    for socket in sockets:
        assert await socket.receive_output(timeout=2) == {
            "type": "websocket.close",
            "code": TRY_AGAIN_LATER,  # htmx reconnects after 1013
        }


async def test_a_page_socket_opens_and_closes_without_a_hop_to_a_sync_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page's handlers hold no database connection; its snapshot is read by the LiveCore's
    reader threads. Channels' own dispatch would hop to a thread before each handler (and after
    the close) to close that thread's connections: thousands of hops in an arrival."""
    alice = await new_member("Alice")
    hops: list[str] = []
    through = SyncToAsync.__call__

    async def counted(self: SyncToAsync, *args: object, **kwargs: object) -> object:
        hops.append(getattr(self.func, "__name__", repr(self.func)))
        return await through(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    socket = await open_socket(alice)
    assert "Alice" in await receive_snapshot(socket)
    await socket.disconnect()
    watch = "room_versions"  # the watch's read, for all of the process's pages at once
    assert [hop for hop in hops if hop != watch] == []
