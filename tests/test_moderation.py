"""One truth for every write: whoever changes a room (a browser, a moderator in the admin, the
ORM in bulk, plain SQL, a restored backup), the database bumps the room's version, and every
open page, and every page load, shows what the database says.

Both CI passes run these: on SQLite and on PostgreSQL, each with its own triggers."""

import uuid
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from prometheus_client import REGISTRY

from liveroom.live import announcements
from liveroom.models import Member, Room
from liveroom.rooms.membership import member_join
from liveroom.testing import Page, RoomPage, join
from liveroom.wire import NOT_A_MEMBER

PUSHED_WITHIN = 1.0  # the goal: a moderator's change is on every page within a second
# Its words may wait for the room's next announcement (at most one a second).
SAID_WITHIN = PUSHED_WITHIN + announcements.INTERVAL


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


async def closed(page: RoomPage, within: float = PUSHED_WITHIN) -> int | None:
    """The code the server closed `page` with, once it has."""
    await page.until(lambda page: page.close_code is not None, within)
    return page.close_code


@pytest.fixture
def moderator(transactional_db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("mod", "mod@example.com", "x" * 20))
    return client


async def member_pk(name: str) -> int:
    return (await Member.objects.aget(name=name)).pk


async def reload_shows(page: RoomPage) -> list[str]:
    """The names a reload of `page` shows."""
    return Page((await sync_to_async(page.client.get)("/room/")).content.decode()).members()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
class TestModeration:
    """A moderator's change is pushed at once: the watch is slowed right down, so only a push
    can show it in time."""

    @pytest.fixture(autouse=True)
    def slow_watch(self, settings) -> None:
        settings.LIVEROOM_WATCH_INTERVAL = 60

    async def test_a_member_deleted_in_the_admin_goes_from_every_page(
        self, moderator, room_page
    ) -> None:
        alice, bob = await room_page("Alice"), await room_page("Bob")
        await alice.until(lambda page: page.members() == ["Alice", "Bob"])

        url = f"/admin/liveroom/member/{await member_pk('Bob')}/delete/"
        assert (await sync_to_async(moderator.post)(url, {"post": "yes"})).status_code == 302
        await alice.until(lambda page: page.members() == ["Alice"], PUSHED_WITHIN)
        assert alice.text("#member-count") == "1 person here"
        await alice.until(
            lambda page: page.text("#announcement") == "A moderator removed Bob", SAID_WITHIN
        )
        assert await closed(bob) == NOT_A_MEMBER
        assert bob.text("#you").startswith("A moderator removed you from this room.")
        # The join form again, with the page's CSRF token (a push has none of its own).
        assert bob.select('#you form[action="/room/join/"] input[name="name"]')
        assert bob.select('input[form="rejoin-form"][name="csrfmiddlewaretoken"]')
        # A reload shows the database's list; Bob's own reload asks him to join.
        assert await reload_shows(alice) == ["Alice"]
        assert (await sync_to_async(bob.client.get)("/room/"))["Location"] == "/room/join/"
        entry = await LogEntry.objects.select_related("user").aget()
        logged = (entry.user.username, entry.action_flag, entry.object_repr)
        assert logged == ("mod", DELETION, "Bob")
        assert alice.errors == bob.errors == []

    async def test_a_member_renamed_in_the_admin_is_renamed_on_every_page(
        self, moderator, room_page
    ) -> None:
        alice, carol = await room_page("Alice"), await room_page("Carol")
        await alice.until(lambda page: "Carol" in page.members())

        url = f"/admin/liveroom/member/{await member_pk('Carol')}/change/"
        response = await sync_to_async(moderator.post)(url, {"name": "Caroline"})
        assert response.status_code == 302
        await alice.until(lambda page: "Caroline" in page.members(), PUSHED_WITHIN)
        await alice.until(
            lambda page: page.text("#announcement") == "Carol is now Caroline", SAID_WITHIN
        )
        await carol.until(lambda page: page.text("#my-name") == "Caroline", PUSHED_WITHIN)
        assert "Caroline" in await reload_shows(alice)
        entry = await LogEntry.objects.select_related("user").aget()
        assert entry.user.username == "mod"
        assert "Name" in entry.get_change_message()

    async def test_a_rename_in_the_admin_follows_the_join_forms_rules(
        self, moderator, room_page
    ) -> None:
        await room_page("Alice")
        url = f"/admin/liveroom/member/{await member_pk('Alice')}/change/"
        response = await sync_to_async(moderator.post)(url, {"name": "A\u202eB"})
        assert response.status_code == 200
        assert "invisible formatting characters" in response.content.decode()
        assert await Member.objects.filter(name="Alice").aexists()

    async def test_bulk_removal_in_the_admin_is_live_too(self, moderator, room_page) -> None:
        alice = await room_page("Alice")
        for name in ("Bob", "Carol", "Dan"):
            await room_page(name)
        await alice.until(lambda page: len(page.members()) == 4)
        ids = [await member_pk(name) for name in ("Bob", "Carol", "Dan")]

        response = await sync_to_async(moderator.post)(
            "/admin/liveroom/member/",
            {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
        )
        assert response.status_code == 302
        await alice.until(lambda page: page.members() == ["Alice"], PUSHED_WITHIN)
        assert alice.text("#member-count") == "1 person here"
        assert await LogEntry.objects.filter(action_flag=DELETION).acount() == 3

    async def test_a_room_closed_in_the_admin_tells_every_page_and_empties_it(
        self, moderator, room_page
    ) -> None:
        pages = [await room_page("Alice"), await room_page("Bob")]
        room = await Room.objects.aget(slug=Room.DEFAULT_SLUG)

        url = f"/admin/liveroom/room/{room.pk}/delete/"
        assert (await sync_to_async(moderator.post)(url, {"post": "yes"})).status_code == 302
        for page in pages:
            assert await closed(page) == NOT_A_MEMBER
            assert page.text("#you").startswith("This room has been closed.")
        assert not await Member.objects.aexists()
        assert (await sync_to_async(pages[0].client.get)("/room/"))["Location"] == "/room/join/"
        assert await LogEntry.objects.filter(action_flag=DELETION, object_repr="lobby").aexists()

    async def test_members_and_rooms_are_not_added_by_hand(self, moderator, room_page) -> None:
        for path in ("/admin/liveroom/member/add/", "/admin/liveroom/room/add/"):
            assert (await sync_to_async(moderator.get)(path)).status_code == 403
        await room_page("Alice")
        url = f"/admin/liveroom/member/{await member_pk('Alice')}/change/"
        form = (await sync_to_async(moderator.get)(url)).content.decode()
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

    async def test_a_sql_rename_reaches_every_page_and_every_load(self, room_page) -> None:
        alice = await room_page("Alice")
        await room_page("Carol")
        await alice.until(lambda page: "Carol" in page.members())
        await reload_shows(alice)  # the list is cached at this version

        rename = "UPDATE liveroom_member SET name = 'Caroline' WHERE name = 'Carol'"
        await sync_to_async(sql)(rename)
        assert await reload_shows(alice) == ["Alice", "Caroline"]
        await alice.until(lambda page: "Caroline" in page.members(), self.INTERVAL + 1)

    async def test_a_sql_delete_reaches_every_page_and_the_deleted_members_own(
        self, room_page
    ) -> None:
        alice, bob = await room_page("Alice"), await room_page("Bob")
        await alice.until(lambda page: "Bob" in page.members())

        await sync_to_async(sql)("DELETE FROM liveroom_member WHERE name = 'Bob'")
        assert await reload_shows(alice) == ["Alice"]
        await alice.until(lambda page: page.members() == ["Alice"], self.INTERVAL + 1)
        assert await closed(bob, self.INTERVAL + 1) == NOT_A_MEMBER
        assert bob.text("#you").startswith("You are no longer in this room.")
        # Joining again shows Bob once, not twice.
        await sync_to_async(join)(bob.client, "Bob")
        await alice.until(lambda page: "Bob" in page.members(), PUSHED_WITHIN)
        assert alice.members() == ["Alice", "Bob"]

    async def test_a_restored_database_takes_the_pages_back_with_it(self, room_page) -> None:
        alice = await room_page("Alice")
        await room_page("Bob")
        backup = await sync_to_async(version)()
        await room_page("Carol")  # after the backup
        await alice.until(lambda page: "Carol" in page.members(), PUSHED_WITHIN)

        def restore() -> None:  # the rows and the version as they were at the backup
            sql("DELETE FROM liveroom_member WHERE name = 'Carol'")
            sql("UPDATE liveroom_room SET version = %s", backup)

        await sync_to_async(restore)()
        await alice.until(lambda page: page.members() == ["Alice", "Bob"], self.INTERVAL + 1)
        assert await reload_shows(alice) == ["Alice", "Bob"]
        # Changes after the restore reach the page, at the versions the database gives them.
        await room_page("Dana")
        await alice.until(lambda page: "Dana" in page.members(), PUSHED_WITHIN)

    async def test_a_room_deleted_with_sql_closes_its_pages(self, room_page) -> None:
        alice = await room_page("Alice")

        def delete_room() -> None:
            sql("DELETE FROM liveroom_member")
            sql("DELETE FROM liveroom_room")

        await sync_to_async(delete_room)()
        assert await closed(alice, self.INTERVAL + 1) == NOT_A_MEMBER
        assert alice.text("#you").startswith("This room has been closed."), alice.messages


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
