"""Raising a hand: a plain form, a ✋ on every open page, announced, kept across reloads and
healed like any change. Built on the member seam (liveroom/rooms/shown.py), with no change to
the live transport."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import Client

from liveroom.models import Member, Room
from liveroom.testing import Page, join, new_member, open_socket, receive_snapshot

pytestmark = pytest.mark.django_db


def hands(html: str) -> int:
    return html.count('class="member__hand"')


def test_raising_a_hand_shows_on_the_page_after_the_post(alice: Client, bob: Client) -> None:
    response = bob.post("/room/hand/", {"raised": "1"})
    assert (response.status_code, response["Location"]) == (302, "/room/")
    page = alice.get("/room/").content.decode()  # from the cached list, re-read for Bob
    assert hands(page) == 1
    assert Member.objects.get(name="Bob").hand_raised
    bob.post("/room/hand/", {"raised": "0"})
    assert hands(alice.get("/room/").content.decode()) == 0


def test_the_hand_form_works_without_javascript_and_says_its_state(alice: Client) -> None:
    page = alice.get("/room/").content.decode()
    assert 'action="/room/hand/"' in page
    assert 'aria-pressed="false"' in page
    assert 'form="hand-form"' in page  # the token the form takes, outside it
    alice.post("/room/hand/", {"raised": "1"})
    assert 'aria-pressed="true"' in alice.get("/room/").content.decode()


@pytest.mark.parametrize("value", ["", "2", "yes"])
def test_a_bad_value_is_refused_and_changes_nothing(alice: Client, value: str) -> None:
    version = Room.objects.get().version
    response = alice.post("/room/hand/", {"raised": value})
    assert response.status_code == 400
    assert Room.objects.get().version == version


def test_a_visitor_who_is_not_a_member_is_sent_to_the_join_form(client: Client) -> None:
    join(Client(), "Alice")
    response = client.post("/room/hand/", {"raised": "1"})
    assert (response.status_code, response["Location"]) == (302, "/room/join/")


@pytest.mark.parametrize("field", Member.SHOWN_FIELDS)
def test_a_change_of_any_shown_field_in_sql_bumps_the_room(alice: Client, field: str) -> None:
    # The triggers name every field pages show: a field added without them would never heal.
    version = Room.objects.get().version
    value = {"name": "'Alicia'", "hand_raised": "TRUE"}[field]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE liveroom_member SET {field} = {value}")
    assert Room.objects.get().version == version + 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_every_page_shows_the_hand_and_hears_it(settings) -> None:
    settings.LIVEROOM_PRESENCE = True
    alice, bob = await new_member("Alice"), await new_member("Bob")
    alice_socket = await open_socket(alice)
    page = Page()
    page.apply(await receive_snapshot(alice_socket))
    bob_socket = await open_socket(bob)
    await receive_snapshot(bob_socket)
    while page.presence_of("Bob") != "online":
        page.apply(await alice_socket.receive_from(timeout=5))

    await sync_to_async(bob.post)("/room/hand/", {"raised": "1"})
    messages = []
    while page.text("#announcement") != "Bob raised a hand":
        messages.append(await alice_socket.receive_from(timeout=2))
        page.apply(messages[-1])
    assert sum(hands(message) for message in messages) == 1  # one entry swapped, with its hand
    assert page.presence_of("Bob") == "online"  # an entry re-rendered keeps its presence
    own = ""
    while "hand-form" not in own:  # Bob's own page: its form, pressed
        own = await bob_socket.receive_from(timeout=2)
    assert 'aria-pressed="true"' in own
    assert page.errors == []
    for socket in (alice_socket, bob_socket):
        await socket.disconnect()
