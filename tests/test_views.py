import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from liveroom.models import Member, Room
from liveroom.testing import Page, join

pytestmark = pytest.mark.django_db


def member_names(html: str) -> list[str]:
    return re.findall(r'<span class="member__name"[^>]*>(.*?)</span>', html)


def test_root_redirects_to_the_room(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/room/"


def test_room_sends_a_visitor_who_has_not_joined_to_the_join_form(client: Client) -> None:
    response = client.get("/room/")
    assert response.status_code == 302
    assert response["Location"] == "/room/join/"


def test_join_form_is_a_plain_html_form(client: Client) -> None:
    response = client.get("/room/join/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<form class="card join-form" method="post" action="/room/join/"' in html
    assert 'name="name"' in html
    assert 'maxlength="40"' in html
    assert "Up to 40 characters." in html


def test_a_member_asking_for_the_join_form_is_sent_to_the_room(alice: Client) -> None:
    response = alice.get("/room/join/")
    assert response.status_code == 302
    assert response["Location"] == "/room/"


def test_joining_saves_the_member_and_redirects_to_the_room(client: Client) -> None:
    response = client.post("/room/join/", {"name": "Alice"})
    assert response.status_code == 302
    assert response["Location"] == "/room/"
    member = Member.objects.get()
    assert member.name == "Alice"
    assert member.room == Room.objects.get(slug=Room.DEFAULT_SLUG)
    assert member.joined_at is not None
    assert member.session_key == client.session.session_key


def test_the_member_id_is_not_in_any_cookie(client: Client) -> None:
    join(client, "Alice")
    member = Member.objects.get()
    for morsel in client.cookies.values():
        assert str(member.pk) != morsel.value


def test_the_room_lists_members_in_join_order_and_marks_you(alice: Client, bob: Client) -> None:
    carol = Client()
    join(carol, "Carol")
    response = bob.get("/room/")
    assert response.status_code == 200
    html = response.content.decode()
    assert member_names(html) == ["Alice", "Bob", "Carol"]
    page = Page(html)
    marked = [entry for entry in page.entries() if page.text(f"#{entry}").endswith("(you)")]
    assert marked == [f"member-{Member.objects.get(name='Bob').pk}"]
    assert "3 people here" in html
    assert 'ws-connect="/ws/room/?v=3&amp;p=0&amp;l=en"' in html  # version 3: three joins
    assert 'aria-live="polite"' in html


def test_joining_again_renames_instead_of_adding_a_second_membership(alice: Client) -> None:
    join(alice, "Alicia")
    assert list(Member.objects.values_list("name", flat=True)) == ["Alicia"]


def test_joining_again_with_the_same_name_changes_nothing(alice: Client) -> None:
    version = Room.objects.get(slug=Room.DEFAULT_SLUG).version
    join(alice, "Alice")
    assert Room.objects.get(slug=Room.DEFAULT_SLUG).version == version
    assert Member.objects.count() == 1


def test_names_are_trimmed_and_normalised_to_nfc(client: Client) -> None:
    join(client, "  Zoe\u0301  ")  # "e" + combining acute accent
    assert Member.objects.get().name == "Zo\u00e9"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Please enter a name."),
        ({"name": ""}, "Please enter a name."),
        ({"name": "   \t  "}, "Please enter a name."),
        ({"name": "x" * 41}, "Please use at most 40 characters (this has 41)."),
        ({"name": "Al\x00ice"}, "Null characters are not allowed."),
        ({"name": "Al\x07ice"}, "invisible formatting characters"),
        ({"name": "Al\u202eice"}, "invisible formatting characters"),
        ({"name": "\u200b\u200b"}, "invisible formatting characters"),
    ],
    ids=["missing", "empty", "whitespace", "too-long", "nul", "control", "bidi", "zero-width"],
)
def test_an_invalid_name_shows_the_form_again_with_a_message(
    client: Client, data: dict, message: str
) -> None:
    response = client.post("/room/join/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert 'role="alert"' in html
    assert 'aria-invalid="true"' in html
    assert not Member.objects.exists()


def test_markup_in_a_name_is_shown_as_text(client: Client) -> None:
    join(client, '<b hx-get="/x">"><img onerror=alert(1)>')
    html = client.get("/room/").content.decode()
    assert "&lt;b hx-get=&quot;/x&quot;&gt;&quot;&gt;&lt;img onerror=alert(1)&gt;" in html
    assert "<img onerror" not in html
    assert 'hx-get="/x"' not in html


def test_leaving_deletes_only_your_own_membership(alice: Client, bob: Client) -> None:
    response = bob.post("/room/leave/")
    assert response.status_code == 302
    assert response["Location"] == "/room/join/"
    assert list(Member.objects.values_list("name", flat=True)) == ["Alice"]
    assert bob.get("/room/")["Location"] == "/room/join/"


def test_leaving_when_not_a_member_is_a_harmless_redirect(client: Client, alice: Client) -> None:
    response = client.post("/room/leave/")
    assert response.status_code == 302
    assert response["Location"] == "/room/join/"
    assert Member.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/room/leave/"),
        ("put", "/room/leave/"),
        ("put", "/room/join/"),
        ("delete", "/room/join/"),
        ("post", "/room/"),
        ("post", "/"),
    ],
)
def test_other_methods_are_not_allowed(client: Client, method: str, path: str) -> None:
    assert getattr(client, method)(path).status_code == 405


def test_the_admin_lists_members(admin_client: Client, alice: Client) -> None:
    response = admin_client.get("/admin/liveroom/member/")
    assert response.status_code == 200
    assert "Alice" in response.content.decode()


def test_a_page_load_changes_nothing(settings, alice: Client, bob: Client) -> None:
    settings.LIVEROOM_IDLE_REMOVAL_SECONDS = 60
    Member.objects.filter(name="Bob").update(last_seen_at=timezone.now() - timedelta(hours=1))
    version = Room.objects.get().version
    assert alice.get("/room/").status_code == 200
    assert list(Member.objects.values_list("name", flat=True)) == ["Alice", "Bob"]
    assert Room.objects.get().version == version  # idle Bob goes with a sweep, not a GET
