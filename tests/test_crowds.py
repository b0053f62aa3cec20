"""Crowded rooms (docs/crowds.md): above LIVEROOM_FULL_LIST_MAX members every page lists the same
window of recent arrivals, with the count and a search; changes move the window on every page at
once. The limits are made small here: a "crowd" of four."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from liveroom.live import delivery
from liveroom.live.delivery import superseded_left_out
from liveroom.live.messages import CHANGE_EVENT, PRESENCE_EVENT
from liveroom.live.windows import window_in_place
from liveroom.models import Member, Room
from liveroom.rooms import crowds
from liveroom.rooms import member_lists as member_lists_module
from liveroom.rooms.member_lists import MemberList, Window, member_lists
from liveroom.rooms.membership import member_join, member_leave
from liveroom.testing import Page, join
from liveroom.testing.page import room_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def small_crowds(settings) -> None:
    settings.LIVEROOM_FULL_LIST_MAX = 3
    settings.LIVEROOM_RECENT_ARRIVALS = 2


def members_join(*names: str, room: str = "big") -> list[Client]:
    return [join(Client(), name, room) for name in names]


def test_a_room_up_to_the_limit_lists_everyone() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol")
    page = Page(alice.get(room_url("big")).content.decode())
    assert page.members() == ["Alice", "Bob", "Carol"]
    assert page.text("#members-hint") == ""
    assert page.text(".member--you .member__name") == "Alice"  # her own entry is marked


def test_a_crowded_page_lists_the_recent_arrivals_the_count_and_its_member() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol", "Dave", "Erin")
    response = alice.get(room_url("big"))
    page = Page(response.content.decode())
    assert page.members() == ["Dave", "Erin"]  # the last two to join, in the order they came
    assert page.text("#member-count") == "5 people here"
    assert page.text("#members-hint") == (
        "The 2 most recent arrivals are listed. Search to find anyone else."
    )
    assert page.text("#my-name") == "Alice"  # Alice is not listed, but is herself
    assert page.select("#member-search")


def test_a_crowded_page_reads_a_bounded_window_of_members() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol", "Dave", "Erin")
    with CaptureQueriesContext(connection) as queries:
        assert alice.get(room_url("big")).status_code == 200
    member_reads = [query["sql"] for query in queries if 'FROM "liveroom_member"' in query["sql"]]
    assert member_reads
    # Each read of the members is either one member (the session's) or an index range with a
    # limit; none reads the whole room.
    for sql in member_reads:
        assert "LIMIT" in sql, sql


def test_a_crowded_room_listed_again_reads_its_window_alone() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol", "Dave", "Erin")
    assert alice.get(room_url("big")).status_code == 200  # the list kept at this version
    members_join("Frank")
    with CaptureQueriesContext(connection) as queries:
        page = Page(alice.get(room_url("big")).content.decode())
    assert page.members() == ["Erin", "Frank"]
    window_reads = [query["sql"] for query in queries if "room__member_count" in query["sql"]]
    assert len(window_reads) == 1, window_reads
    assert window_reads[0].endswith("LIMIT 2")


def test_a_page_loaded_once_the_crowd_has_gone_lists_everyone_again() -> None:
    alice, _, _, dave, erin = members_join("Alice", "Bob", "Carol", "Dave", "Erin")
    assert Page(alice.get(room_url("big")).content.decode()).members() == ["Dave", "Erin"]
    for client in (dave, erin):
        assert client.post(room_url("big", "leave")).status_code == 302
    page = Page(alice.get(room_url("big")).content.decode())
    assert page.members() == ["Alice", "Bob", "Carol"]
    assert page.text("#member-count") == "3 people here"


def test_search_finds_anyone_by_part_of_a_name_in_any_case() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol", "Dave", "Erin", "Caroline")
    page = Page(alice.get(room_url("big"), {"q": "CAROL"}).content.decode())
    found = [" ".join(entry.itertext()).split()[0] for entry in page.select(".members--found li")]
    assert found == ["Carol", "Caroline"]
    assert not page.select("#search-results [id]")  # the ids stay the live list's
    assert page.text("#search-results").startswith("2 members found")
    assert page.document.by_id("member-search").get("value") == "CAROL"  # kept in the form


def test_search_as_one_types_answers_with_the_results_alone() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol", "Dave", "Erin")
    response = alice.get(room_url("big"), {"q": "bo"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="search-results"')
    assert "Bob" in html
    assert 'id="members"' not in html


def test_search_says_when_nobody_matches_and_isolates_what_was_asked() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol", "Dave")
    page = Page(alice.get(room_url("big"), {"q": "<b>zed"}).content.decode())
    assert page.text("#search-results") == "Nobody here has <b>zed in their name."
    assert page.select("#search-results bdi")


def test_a_search_too_long_for_any_name_is_refused_with_a_reason() -> None:
    alice, *_ = members_join("Alice", "Bob", "Carol", "Dave")
    response = alice.get(room_url("big"), {"q": "x" * (Member.NAME_MAX_LENGTH + 1)})
    assert response.status_code == 400
    assert "at most 40 characters" in Page(response.content.decode()).text("#search-results")


def test_search_shows_a_bounded_number_and_asks_for_more_of_the_name(monkeypatch) -> None:
    monkeypatch.setattr(crowds, "SEARCH_RESULTS", 2)
    alice, *_ = members_join("Alice", "Ann", "Anna", "Annie", "Bob")
    page = Page(alice.get(room_url("big"), {"q": "an"}).content.decode())
    assert len(page.select(".members--found li")) == 2
    assert "type more of the name" in page.text("#search-results")


def test_a_non_member_cannot_search_a_room() -> None:
    members_join("Alice", "Bob", "Carol", "Dave")
    response = Client().get(room_url("big"), {"q": "a"})
    assert response.status_code == 302


@pytest.mark.asyncio
async def test_a_join_in_a_crowded_room_moves_the_window_on_every_page(room_page) -> None:
    await sync_to_async(members_join)("Bob", "Carol", "Dave")
    alice = await room_page("Alice", room="big")
    assert alice.members() == ["Dave", "Alice"]
    await sync_to_async(members_join)("Erin")
    await alice.until(lambda page: page.members() == ["Alice", "Erin"])
    assert alice.text("#member-count") == "5 people here"
    assert alice.text("#announcement") == "Erin joined"
    assert 'id="members"' not in alice.messages[-1]  # the change, not the list again
    assert alice.errors == []


@pytest.mark.asyncio
async def test_a_leave_from_the_window_brings_back_the_arrival_before(room_page) -> None:
    clients = await sync_to_async(members_join)("Bob", "Carol", "Dave", "Erin")
    alice = await room_page("Alice", room="big")
    assert alice.members() == ["Erin", "Alice"]
    erin = clients[-1]
    await sync_to_async(erin.post)(room_url("big", "leave"))
    await alice.until(lambda page: page.members() == ["Dave", "Alice"])
    assert alice.text("#member-count") == "4 people here"
    assert alice.errors == []


@pytest.mark.asyncio
async def test_a_leave_of_someone_not_listed_changes_only_the_count(room_page) -> None:
    clients = await sync_to_async(members_join)("Bob", "Carol", "Dave", "Erin")
    alice = await room_page("Alice", room="big")
    bob = clients[0]
    await sync_to_async(bob.post)(room_url("big", "leave"))
    await alice.until(lambda page: page.text("#member-count") == "4 people here")
    assert alice.members() == ["Erin", "Alice"]
    assert alice.errors == []  # nothing was sent to delete: Bob was not listed


@pytest.mark.asyncio
async def test_the_crowd_comes_and_goes_on_an_open_page(room_page) -> None:
    clients = await sync_to_async(members_join)("Bob", "Carol")
    alice = await room_page("Alice", room="big")
    assert alice.members() == ["Bob", "Carol", "Alice"]
    dave = (await sync_to_async(members_join)("Dave"))[0]  # four: crowded
    await alice.until(lambda page: page.members() == ["Alice", "Dave"])
    assert "most recent arrivals" in alice.text("#members-hint")
    await sync_to_async(dave.post)(room_url("big", "leave"))  # three: everyone again
    await alice.until(lambda page: page.members() == ["Bob", "Carol", "Alice"])
    assert alice.text("#members-hint") == ""
    await sync_to_async(member_leave)(room_slug="big", session_key=clients[0].session.session_key)
    await alice.until(lambda page: page.members() == ["Carol", "Alice"])
    assert alice.errors == []


@pytest.fixture
def long_windows(monkeypatch) -> None:
    """Changes that come within a second of one going out are gathered (a burst, on any
    machine)."""
    monkeypatch.setattr(delivery, "WINDOW_SECONDS", 1.0)


def joined_separately(page) -> bool:
    return any("beforeend:#members" in message for message in page.messages)


@pytest.mark.asyncio
async def test_a_burst_in_a_crowded_room_is_sent_as_the_window_it_leaves(
    room_page, long_windows
) -> None:
    alice, seen = await burst_on_a_crowded_page(room_page)  # Erin: at once, as the change
    assert joined_separately(alice)
    await sync_to_async(members_join)("Frank", "Grace", "Heidi", "Ivan")  # gathered
    await alice.until(lambda page: page.members() == ["Heidi", "Ivan"])
    # Gathered (on a slow machine the first may go alone, and the words in a frame of their
    # own): the gathered ones went as the window, with its count, no entry added on its own.
    burst = alice.messages[seen:]
    windows = [message for message in burst if 'id="members"' in message]
    assert len(windows) == 1
    assert "beforeend:#members" not in windows[0]
    assert 'id="member-count"' in windows[0]
    assert len(burst) < 4  # fewer frames than joins
    assert alice.text("#member-count") == "9 people here"
    assert alice.errors == []


async def burst_on_a_crowded_page(room_page):
    """Alice's page of a crowded room, shown "Alice", "Erin"; the messages it had so far."""
    await sync_to_async(members_join)("Bob", "Carol", "Dave")
    alice = await room_page("Alice", room="big")
    await sync_to_async(members_join)("Erin")
    await alice.until(lambda page: page.members() == ["Alice", "Erin"])
    return alice, len(alice.messages)


@pytest.mark.asyncio
async def test_a_burst_whose_list_cannot_be_brought_up_is_sent_change_by_change(
    room_page, long_windows, monkeypatch, caplog
) -> None:
    def fails(*args, **kwargs) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(member_lists_module, "advance_lists", fails)
    alice, seen = await burst_on_a_crowded_page(room_page)
    await sync_to_async(members_join)("Frank", "Grace", "Heidi", "Ivan")
    await alice.until(lambda page: page.members() == ["Heidi", "Ivan"])
    assert all('id="members"' not in message for message in alice.messages[seen:])
    assert alice.text("#member-count") == "9 people here"
    assert "not brought up to its changes" in caplog.text
    assert alice.errors == []


@pytest.mark.asyncio
async def test_a_list_kept_behind_its_changes_is_read_again_for_the_next_burst(
    room_page, long_windows
) -> None:
    alice, seen = await burst_on_a_crowded_page(room_page)
    member_lists.clear()  # as when the process let it go (LIVEROOM_CACHED_ROOMS)
    await sync_to_async(members_join)("Frank", "Grace", "Heidi", "Ivan")
    await alice.until(lambda page: page.members() == ["Heidi", "Ivan"])
    assert all('id="members"' not in message for message in alice.messages[seen:])
    seen = len(alice.messages)
    await sync_to_async(members_join)("Judy", "Ken", "Liam", "Mia")
    await alice.until(lambda page: page.members() == ["Liam", "Mia"])
    # Read again meanwhile, then brought up: this burst goes as the window.
    assert any('id="members"' in message for message in alice.messages[seen:])
    assert alice.text("#member-count") == "13 people here"
    assert alice.errors == []


def entry(member_id: int, name: str, hand_raised: bool = False) -> dict:
    return {"id": member_id, "name": name, "hand_raised": hand_raised}


def joined(member: dict, count: int, dropped: int | None = None, **more) -> dict:
    return {"change": "joined", "member": member, "count": count, "dropped": dropped} | more


def test_a_kept_list_is_brought_up_to_changes_as_a_page_applies_them() -> None:
    listed = [entry(1, "Ann"), entry(2, "Ben")]
    start = MemberList(room_id=1, version=10, count=2, shown={}, language="en").advanced(
        [(11, {"change": "joined", "member": entry(2, "Ben"), "count": 5, "listed": listed})]
    )
    assert start is not None
    assert (list(start.shown), start.count) == ([1, 2], 5)
    before = dict(start.entries())
    moved = start.advanced([
        (11, {"change": "joined", "member": entry(2, "Ben"), "count": 5}),  # shown already
        (12, joined(entry(3, "Cy"), 6, dropped=1)),
        (13, {"change": "updated", "member": entry(2, "Ben", True), "count": 6}),
        (14, joined(entry(4, "Di"), 7, unlisted=True)),  # joined "earlier" than the window
        (15, {"change": "left", "member": entry(3, "Cy"), "count": 6, "entering": entry(1, "Ann")}),
    ])  # fmt: skip
    assert moved is not None
    assert (moved.version, moved.count) == (15, 6)
    assert list(moved.shown) == [1, 2]  # Ann back at the top
    assert moved.rendered == {1: before[1]}  # Ben's hand changed: his entry is made again
    assert "✋" in dict(moved.entries())[2][0]
    assert "✋" not in before[2][0]
    assert start.advanced([(13, joined(entry(5, "Ed"), 6))]) is None  # 12 is missing
    assert start.advanced([]) is start


def change(version: int, listed: bool, count: int = 4) -> dict:
    data = {"change": "joined", "listed": [] if listed else None, "count": count}
    return {"type": CHANGE_EVENT, "version": version, "data": data}


def test_a_window_stands_for_changes_only_when_crowded_more_than_half_of_it_and_new_enough(
    settings,
) -> None:
    settings.LIVEROOM_RECENT_ARRIVALS = 4  # more than 2 changes are worth the window
    window = Window(version=5, html={"en": "<ul id=members></ul>"})
    presence = {"type": PRESENCE_EVENT, "sequence": 1, "data": {}}
    burst = [change(3, False), change(4, False), change(5, False), presence]
    assert window_in_place(burst, window, "en") == "<ul id=members></ul>"
    assert window_in_place(burst[1:], window, "en") is None  # two: one by one is shorter
    assert window_in_place([*burst, change(6, False)], window, "en") is None  # older than 6
    assert window_in_place(burst, window, "fr") is None  # not rendered in this language
    uncrowded = [change(3, False), change(4, False), change(5, False, count=3)]
    assert window_in_place(uncrowded, window, "en") is None


def test_a_whole_list_in_a_frame_leaves_out_the_changes_it_already_shows() -> None:
    presence = {"type": PRESENCE_EVENT, "sequence": 1, "data": {}}
    messages = [change(1, False), change(2, True), change(3, False), change(4, True), presence]
    assert superseded_left_out(messages) == messages[3:]
    incremental = [change(1, False), change(2, False), presence]
    assert superseded_left_out(incremental) == incremental


def test_the_database_keeps_each_rooms_member_count_whoever_writes() -> None:
    members_join("Alice", "Bob", room="a")
    members_join("Carol", room="b")
    Member.objects.filter(name="Bob").update(room=Room.objects.get(slug="b"))  # moved
    Member.objects.filter(name="Alice").delete()
    Member.objects.filter(name="Carol").update(hand_raised=True)  # not a move
    assert dict(Room.objects.values_list("slug", "member_count")) == {"a": 0, "b": 2}


@pytest.mark.parametrize("room", ["small", "big"])
def test_a_join_reads_the_rooms_version_with_the_window_in_one_statement(room: str) -> None:
    members_join("Alice", "Bob", room="small")  # up to the limit: listed whole
    members_join("Alice", "Bob", "Carol", "Dave", room="big")  # crowded
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:  # not what
        member_join(room_slug=room, session_key="e" * 32, name="Erin")  # the commit starts

    reads = [query["sql"] for query in queries if query["sql"].startswith("SELECT")]
    # The room, locked; whether the session is a member already; then, after the insert, the
    # room's version and count with its newest members (the window's move, when crowded).
    assert len(reads) == 3, reads
    assert '"liveroom_room"."version"' in reads[-1]
    assert "LIMIT 3" in reads[-1]
