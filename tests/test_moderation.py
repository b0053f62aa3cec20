"""One truth for every write: whoever changes a room (a browser, a moderator in the admin, the
ORM in bulk, plain SQL, a restored backup), the database bumps the room's version, and every
open page, and every page load, shows what the database says.

Both CI passes run these: on SQLite and on PostgreSQL, each with its own triggers."""

import asyncio
import uuid
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from prometheus_client import REGISTRY

from harness.htmx_model import RoomPage
from liveroom.models import Member, Room
from liveroom.rooms.membership import member_join
from liveroom.wire import NOT_A_MEMBER
from tests.conftest import new_member, open_socket, receive_snapshot

PUSHED_WITHIN = 1.0  # the goal: a moderator's change is on every page within a second


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def version() -> int:
    return Room.objects.values_list("version", flat=True).get(slug=Room.DEFAULT_SLUG)


def sql(statement: str, *params: object) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


# The rule, kept by the database for every writer


@pytest.fixture
def room(db: None) -> Room:
    member_join(room_slug=Room.DEFAULT_SLUG, session_key="a" * 32, name="Alice")
    member_join(room_slug=Room.DEFAULT_SLUG, session_key="b" * 32, name="Bob")
    return Room.objects.get(slug=Room.DEFAULT_SLUG)


def rename_and_save(room: Room) -> None:
    bob = Member.objects.get(name="Bob")
    bob.name = "Robert"
    bob.save()


WRITES: dict[str, Callable[[Room], object]] = {
    "ORM create": lambda room: Member.objects.create(room=room, session_key="c" * 32, name="C"),
    "ORM bulk_create": lambda room: Member.objects.bulk_create(
        [Member(room=room, session_key="c" * 32, name="C")]
    ),
    "ORM save of a name": rename_and_save,
    "ORM delete": lambda room: Member.objects.get(name="Bob").delete(),
    "QuerySet.update(name)": lambda room: Member.objects.filter(name="Bob").update(name="Bobby"),
    "QuerySet.delete()": lambda room: Member.objects.filter(name="Bob").delete(),
    "SQL INSERT": lambda room: sql(
        "INSERT INTO liveroom_member (room_id, session_key, name, joined_at, last_seen_at)"
        " VALUES (%s, %s, %s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        room.pk,
        "c" * 32,
        "C",
    ),
    "SQL UPDATE name": lambda room: sql(
        "UPDATE liveroom_member SET name = %s WHERE name = %s", "Bobby", "Bob"
    ),
    "SQL DELETE": lambda room: sql("DELETE FROM liveroom_member WHERE name = %s", "Bob"),
}


@pytest.mark.parametrize("write", WRITES)
def test_every_write_of_a_member_bumps_its_rooms_version(room: Room, write: str) -> None:
    before = version()
    WRITES[write](room)
    assert version() == before + 1


def test_a_bulk_write_bumps_the_version_once_a_member(room: Room) -> None:
    before = version()
    assert Member.objects.filter(room=room).update(name="Everyone") == 2
    assert version() == before + 2


def test_presence_bookkeeping_bumps_nothing(room: Room) -> None:
    before = version()
    Member.objects.filter(room=room).update(last_seen_at="2020-01-01T00:00:00Z")
    sql("UPDATE liveroom_member SET name = name")  # written, but unchanged
    assert version() == before


def test_a_member_moved_to_another_room_bumps_both(room: Room) -> None:
    member_join(room_slug="other", session_key="o" * 32, name="Olga")
    other = Room.objects.get(slug="other")
    versions = (room.version, other.version)
    Member.objects.filter(name="Bob").update(room=other)
    room.refresh_from_db()
    other.refresh_from_db()
    assert (room.version, other.version) == (versions[0] + 1, versions[1] + 1)


def test_the_domain_announces_the_version_the_database_gave(room: Room) -> None:
    sql("UPDATE liveroom_room SET version = 100")  # whatever it was, the announcement says it
    member = member_join(room_slug=Room.DEFAULT_SLUG, session_key="c" * 32, name="Carol")
    assert member.room.version == version() == 101


# Pages converge


async def read_until(
    socket: WebsocketCommunicator, page: RoomPage, done: Callable[[RoomPage], bool], within: float
) -> list[str]:
    """Apply the socket's messages to `page` until `done(page)`; the messages applied."""
    messages: list[str] = []
    async with asyncio.timeout(within):
        while not done(page):
            messages.append(await socket.receive_from(timeout=within))
            page.apply(messages[-1])
    assert not page.errors, page.errors
    return messages


async def open_page(client: Client) -> tuple[WebsocketCommunicator, RoomPage]:
    socket = await open_socket(client)
    page = RoomPage()
    page.apply(await receive_snapshot(socket))
    return socket, page


async def close_code(socket: WebsocketCommunicator, within: float = PUSHED_WITHIN) -> int:
    while True:
        output = await socket.receive_output(timeout=within)
        if output["type"] == "websocket.close":
            return output["code"]


@pytest.fixture
def moderator(transactional_db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("mod", "mod@example.com", "x" * 20))
    return client


async def member_pk(name: str) -> int:
    return (await Member.objects.aget(name=name)).pk


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
class TestModeration:
    """A moderator's change is pushed at once: the watch is slowed right down, so only a push
    can show it in time."""

    @pytest.fixture(autouse=True)
    def slow_watch(self, settings) -> None:
        settings.LIVEROOM_WATCH_INTERVAL = 60

    async def test_a_member_deleted_in_the_admin_goes_from_every_page(self, moderator) -> None:
        alice, bob = await new_member("Alice"), await new_member("Bob")
        alice_socket, alice_page = await open_page(alice)
        bob_socket, _ = await open_page(bob)
        bob_id = await member_pk("Bob")

        response = await sync_to_async(moderator.post)(
            f"/admin/liveroom/member/{bob_id}/delete/", {"post": "yes"}
        )
        assert response.status_code == 302
        await read_until(alice_socket, alice_page, lambda p: "Bob" not in p.names(), PUSHED_WITHIN)
        assert alice_page.count == "1 person here"
        assert alice_page.announcement == "A moderator removed Bob"
        notice = await bob_socket.receive_from(timeout=PUSHED_WITHIN)
        assert "A moderator removed you from this room." in notice
        assert 'href="/room/join/"' in notice  # the join form again
        assert await close_code(bob_socket) == NOT_A_MEMBER
        # A reload shows the database's list; Bob's own reload asks him to join.
        assert "Bob" not in (await sync_to_async(alice.get)("/room/")).content.decode()
        assert (await sync_to_async(bob.get)("/room/"))["Location"] == "/room/join/"
        entry = await LogEntry.objects.select_related("user").aget()
        assert (entry.user.username, entry.action_flag, entry.object_repr) == (
            "mod",
            DELETION,
            "Bob",
        )
        await alice_socket.disconnect()

    async def test_a_member_renamed_in_the_admin_is_renamed_on_every_page(self, moderator) -> None:
        alice, carol = await new_member("Alice"), await new_member("Carol")
        alice_socket, alice_page = await open_page(alice)
        carol_socket, carol_page = await open_page(carol)
        carol_id = await member_pk("Carol")

        response = await sync_to_async(moderator.post)(
            f"/admin/liveroom/member/{carol_id}/change/", {"name": "Caroline"}
        )
        assert response.status_code == 302
        await read_until(alice_socket, alice_page, lambda p: "Caroline" in p.names(), PUSHED_WITHIN)
        assert alice_page.announcement == "Carol is now Caroline"
        await read_until(carol_socket, carol_page, lambda p: p.my_name == "Caroline", PUSHED_WITHIN)
        assert "Caroline" in (await sync_to_async(alice.get)("/room/")).content.decode()
        entry = await LogEntry.objects.select_related("user").aget()
        assert entry.user.username == "mod"
        assert "Name" in entry.get_change_message()
        for socket in (alice_socket, carol_socket):
            await socket.disconnect()

    async def test_a_rename_in_the_admin_follows_the_join_forms_rules(self, moderator) -> None:
        await new_member("Alice")
        alice_id = await member_pk("Alice")
        response = await sync_to_async(moderator.post)(
            f"/admin/liveroom/member/{alice_id}/change/", {"name": "A\u202eB"}
        )
        assert response.status_code == 200
        assert "invisible formatting characters" in response.content.decode()
        assert await Member.objects.filter(name="Alice").aexists()

    async def test_bulk_removal_in_the_admin_is_live_too(self, moderator) -> None:
        alice = await new_member("Alice")
        for name in ("Bob", "Carol", "Dan"):
            await new_member(name)
        socket, page = await open_page(alice)
        ids = [await member_pk(name) for name in ("Bob", "Carol", "Dan")]

        response = await sync_to_async(moderator.post)(
            "/admin/liveroom/member/",
            {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
        )
        assert response.status_code == 302
        await read_until(socket, page, lambda p: p.names() == ["Alice"], PUSHED_WITHIN)
        assert page.count == "1 person here"
        assert await LogEntry.objects.filter(action_flag=DELETION).acount() == 3
        await socket.disconnect()

    async def test_a_room_closed_in_the_admin_tells_every_page_and_empties_it(
        self, moderator
    ) -> None:
        alice, bob = await new_member("Alice"), await new_member("Bob")
        sockets = [(await open_page(alice))[0], (await open_page(bob))[0]]
        room = await Room.objects.aget(slug=Room.DEFAULT_SLUG)

        response = await sync_to_async(moderator.post)(
            f"/admin/liveroom/room/{room.pk}/delete/", {"post": "yes"}
        )
        assert response.status_code == 302
        for socket in sockets:
            assert "This room has been closed." in await socket.receive_from(timeout=PUSHED_WITHIN)
            assert await close_code(socket) == NOT_A_MEMBER
        assert not await Member.objects.aexists()
        assert (await sync_to_async(alice.get)("/room/"))["Location"] == "/room/join/"
        assert await LogEntry.objects.filter(action_flag=DELETION, object_repr="lobby").aexists()

    async def test_members_and_rooms_are_not_added_by_hand(self, moderator) -> None:
        for path in ("/admin/liveroom/member/add/", "/admin/liveroom/room/add/"):
            assert (await sync_to_async(moderator.get)(path)).status_code == 403
        await new_member("Alice")
        form = (await sync_to_async(moderator.get)(
            f"/admin/liveroom/member/{await member_pk('Alice')}/change/"
        )).content.decode()  # fmt: skip
        assert 'name="name"' in form
        assert 'name="room"' not in form
        assert "session" not in form


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
class TestWritesOutsideTheApp:
    """Plain SQL (another service, a DBA), a restore: no message is sent, and the watch heals
    every page within LIVEROOM_WATCH_INTERVAL + 1 s; page loads show it at once."""

    INTERVAL = 0.5

    @pytest.fixture(autouse=True)
    def fast_watch(self, settings) -> None:
        settings.LIVEROOM_WATCH_INTERVAL = self.INTERVAL

    async def test_a_sql_rename_reaches_every_page_and_every_load(self) -> None:
        alice, _ = await new_member("Alice"), await new_member("Carol")
        socket, page = await open_page(alice)
        await sync_to_async(alice.get)("/room/")  # the list is cached at this version

        await sync_to_async(sql)(
            "UPDATE liveroom_member SET name = 'Caroline' WHERE name = 'Carol'"
        )
        assert "Caroline" in (await sync_to_async(alice.get)("/room/")).content.decode()
        await read_until(socket, page, lambda p: "Caroline" in p.names(), self.INTERVAL + 1)
        await socket.disconnect()

    async def test_a_sql_delete_reaches_every_page_and_the_deleted_members_own(self) -> None:
        alice, bob = await new_member("Alice"), await new_member("Bob")
        socket, page = await open_page(alice)
        bob_socket, _ = await open_page(bob)

        await sync_to_async(sql)("DELETE FROM liveroom_member WHERE name = 'Bob'")
        assert "Bob" not in (await sync_to_async(alice.get)("/room/")).content.decode()
        await read_until(socket, page, lambda p: p.names() == ["Alice"], self.INTERVAL + 1)
        assert "You are no longer in this room." in await bob_socket.receive_from(
            timeout=self.INTERVAL + 1
        )
        assert await close_code(bob_socket) == NOT_A_MEMBER
        # Joining again shows Bob once, not twice.
        await sync_to_async(bob.post)("/room/join/", {"name": "Bob"})
        await read_until(socket, page, lambda p: "Bob" in p.names(), PUSHED_WITHIN)
        assert page.names() == ["Alice", "Bob"]
        await socket.disconnect()

    async def test_a_restored_database_takes_the_pages_back_with_it(self) -> None:
        alice, _ = await new_member("Alice"), await new_member("Bob")
        socket, page = await open_page(alice)
        backup = await sync_to_async(version)()
        await new_member("Carol")  # after the backup
        await read_until(socket, page, lambda p: "Carol" in p.names(), PUSHED_WITHIN)

        def restore() -> None:  # the rows and the version as they were at the backup
            sql("DELETE FROM liveroom_member WHERE name = 'Carol'")
            sql("UPDATE liveroom_room SET version = %s", backup)

        await sync_to_async(restore)()
        await read_until(socket, page, lambda p: "Carol" not in p.names(), self.INTERVAL + 1)
        assert page.names() == ["Alice", "Bob"]
        assert "Carol" not in (await sync_to_async(alice.get)("/room/")).content.decode()
        # Changes after the restore reach the page, at the versions the database gives them.
        await new_member("Dana")
        await read_until(socket, page, lambda p: "Dana" in p.names(), PUSHED_WITHIN)
        await socket.disconnect()

    async def test_a_room_deleted_with_sql_closes_its_pages(self) -> None:
        alice = await new_member("Alice")
        socket, _ = await open_page(alice)

        def delete_room() -> None:
            sql("DELETE FROM liveroom_member")
            sql("DELETE FROM liveroom_room")

        await sync_to_async(delete_room)()
        assert "This room has been closed." in await socket.receive_from(timeout=self.INTERVAL + 1)
        assert await close_code(socket, within=1) == NOT_A_MEMBER


# The admin's sign-in, now the door to moderation


@pytest.fixture
def staff(db: None) -> tuple[str, str]:
    username, password = f"mod-{uuid.uuid4().hex[:8]}", "correct horse battery staple"
    User.objects.create_superuser(username, "mod@example.com", password)
    return username, password


def sign_in(username: str, password: str, address: str) -> HttpResponse:
    client = Client(REMOTE_ADDR=address)
    return client.post("/admin/login/", {"username": username, "password": password})


def a_new_address() -> str:
    return f"client-{uuid.uuid4().hex}"  # never reused: counters outlive a test


def test_the_right_password_signs_in(staff: tuple[str, str]) -> None:
    assert sign_in(*staff, a_new_address()).status_code == 302


def test_ten_wrong_passwords_for_an_account_lock_it_for_a_while(
    staff: tuple[str, str], caplog
) -> None:
    username, password = staff
    failures = sample("liveroom_admin_login_failures_total")
    refused = sample("liveroom_admin_logins_refused_total")
    for _ in range(10):  # from ten addresses: the account's own limit
        assert sign_in(username, "guess", a_new_address()).status_code == 200
    response = sign_in(username, password, a_new_address())  # right, but too late
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 2 * 60 + 1  # until the failures are a minute old
    assert "too many failed sign-ins" in response.content.decode()
    assert sample("liveroom_admin_login_failures_total") == failures + 10
    assert sample("liveroom_admin_logins_refused_total") == refused + 1
    assert any(r.getMessage().startswith("Admin sign-in refused") for r in caplog.records)


def test_ten_wrong_passwords_from_an_address_lock_it_for_a_while(staff: tuple[str, str]) -> None:
    address = a_new_address()
    for attempt in range(10):  # ten accounts: the address's own limit
        assert sign_in(f"nobody-{attempt}", "guess", address).status_code == 200
    assert sign_in(*staff, address).status_code == 429
    assert sign_in(*staff, a_new_address()).status_code == 302  # others are not locked out
