"""Pausing live updates and turning spoken announcements off (WCAG 2.2.2): a paused page is
sent nothing until its person resumes it, then one snapshot; both choices are remembered for the
session, and work as plain forms without JavaScript."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from harness.waiting import until
from liveroom.live import controls
from liveroom.models import Member
from liveroom.rooms.membership import member_remove
from liveroom.testing import RoomPage, join, new_member
from liveroom.wire import NOT_A_MEMBER, POLICY_VIOLATION

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.asyncio
async def test_a_paused_page_gets_nothing_until_resumed_then_one_snapshot() -> None:
    alice = await new_member("Alice")
    page = await RoomPage.open(alice)
    await page.press(live="pause")
    await page.until(lambda page: "paused" in page.text("#live-status"))
    assert page.text("#connection") == "paused"  # no heartbeat comes to keep it "live"
    assert page.text("#live-label") == "Resume live updates"
    shown = len(page.messages)

    bob = await new_member("Bob")
    await new_member("Carol")
    await sync_to_async(join)(bob, "Robert")
    assert await page.socket.receive_nothing(timeout=1.5)  # not the changes, nor their words
    assert page.members() == ["Alice"]
    assert len(page.messages) == shown

    await page.press(live="resume")
    await page.until(lambda page: page.text("#live-label") == "Pause live updates")
    assert page.members() == ["Alice", "Robert", "Carol"]
    frames = page.messages[shown:]
    assert sum(frame.startswith('<ul id="members"') for frame in frames) == 1  # one list
    assert page.text("#live-status") == "Live again: 3 changes while paused."
    assert page.text("#member-count") == "3 people here"
    assert "live" in page.text("#connection")
    await sync_to_async(join)(Client(), "Dan")  # live again: changes come as they happen
    await page.until(lambda page: "Dan" in page.members())
    assert page.errors == []
    await page.close()


@pytest.mark.asyncio
async def test_pausing_is_remembered_and_a_page_opened_paused_is_sent_nothing() -> None:
    alice = await new_member("Alice")
    first = await RoomPage.open(alice)
    await first.press(live="pause")
    await first.until(lambda page: "paused" in page.text("#live-status"))
    await first.close()
    await until_remembered(alice, paused=True)

    reloaded = await RoomPage.open(alice)  # what the session said: paused
    assert "paused=1" in reloaded.select("[ws-connect]")[0].get("ws-connect")
    assert reloaded.text("#live-status").startswith("Live updates are paused")
    await new_member("Bob")
    assert await reloaded.socket.receive_nothing(timeout=1.0)
    assert reloaded.messages == []
    await reloaded.press(live="resume")
    await reloaded.until(lambda page: page.text("#live-status").startswith("Live again"))
    assert reloaded.members() == ["Alice", "Bob"]
    assert reloaded.text("#live-status") == "Live again: 1 change while paused."
    await reloaded.close()
    await until_remembered(alice, paused=False)


@pytest.mark.asyncio
async def test_a_paused_page_is_still_told_its_member_was_removed() -> None:
    alice = await new_member("Alice")
    page = await RoomPage.open(alice)
    await page.press(live="pause")
    await page.until(lambda page: "paused" in page.text("#live-status"))
    alice_id = await Member.objects.values_list("pk", flat=True).aget(name="Alice")
    await sync_to_async(member_remove)(member_id=alice_id)
    await page.until(lambda page: page.close_code == NOT_A_MEMBER, within=3)
    assert page.text("#you p") == "A moderator removed you from this room."


@pytest.mark.asyncio
async def test_spoken_announcements_turned_off_keep_the_list_live_and_silent() -> None:
    alice = await new_member("Alice")
    page = await RoomPage.open(alice)
    assert page.select("#announcement")[0].get("aria-live") == "polite"
    await page.press(spoken="off")
    await page.until(lambda page: page.text("#spoken-label") == "Turn spoken updates on")
    assert page.select("#announcement")[0].get("aria-live") == "off"
    await new_member("Bob")
    await page.until(lambda page: "Bob" in page.members())  # the list is live still
    assert page.select("#announcement")[0].get("role") is None  # no live region: not spoken
    await page.close()
    await until_remembered(alice, quiet=True)
    again = await RoomPage.open(alice)
    assert again.select("#announcement")[0].get("aria-live") == "off"
    assert "quiet=1" in again.select("[ws-connect]")[0].get("ws-connect")
    await again.close()


def test_the_buttons_work_as_plain_forms_without_javascript(client: Client) -> None:
    join(client, "Alice")
    page = client.get("/room/").content.decode()
    assert 'action="/room/live/"' in page
    assert "ws-send" in page
    response = client.post("/room/live/", {"live": "pause"})
    assert (response.status_code, response["Location"]) == (302, "/room/")
    page = client.get("/room/").content.decode()
    assert "Live updates are paused" in page
    assert "paused=1" in page
    client.post("/room/live/", {"spoken": "off"})
    assert 'aria-live="off"' in client.get("/room/").content.decode()
    client.post("/room/live/", {"live": "resume"})
    client.post("/room/live/", {"spoken": "on"})
    page = client.get("/room/").content.decode()
    assert "paused=1" not in page
    assert 'role="status" aria-live="polite"' in page


@pytest.mark.parametrize(
    "values", [{}, {"live": "stop"}, {"spoken": "loud"}, {"live": "pause", "spoken": "off"}]
)
def test_a_bad_choice_is_refused_and_changes_nothing(client: Client, values: dict) -> None:
    join(client, "Alice")
    response = client.post("/room/live/", values)
    assert response.status_code == 400
    assert "live=pause" in response.content.decode()
    assert "paused=1" not in client.get("/room/").content.decode()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "text", ['{"live": "stop"}', '["live"]', "not json", '{"live": "pause", "spoken": "off"}']
)
async def test_a_page_that_says_anything_else_is_closed(text: str) -> None:
    page = await RoomPage.open(await new_member("Alice"))
    await page.socket.send_to(text_data=text)
    await page.until(lambda page: page.close_code == POLICY_VIOLATION)


@pytest.mark.asyncio
async def test_a_page_pressing_faster_than_a_person_is_closed() -> None:
    page = await RoomPage.open(await new_member("Alice"))
    for _ in range(controls.MOST_PRESSES):
        await page.press(spoken="off")
    await page.until(lambda page: page.select("#announcement")[0].get("aria-live") == "off")
    await page.press(spoken="on")  # one more within the window
    await page.until(lambda page: page.close_code == POLICY_VIOLATION)


async def until_remembered(client: Client, **expected: bool) -> None:
    """The session says what the page chose (it is written after the page's answer)."""

    def remembered() -> bool:
        session = client.session
        return all(
            session.get(f"liveroom_{name}", False) == value for name, value in expected.items()
        )

    await until(sync_to_async(remembered), within=2)
