"""The template contract (docs/templates.md): `manage.py check` names what a restyle broke, and
passes on one that keeps it; the worked restyle runs in Chromium."""

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from playwright.sync_api import Browser, expect

from harness.browsers import Person, needs_chromium
from harness.servers import ROOT, Daphne
from liveroom import checks

ENTRY = (ROOT / "templates/liveroom/room/member.html").read_text()
LIST = (ROOT / "templates/liveroom/room/members.html").read_text()
CARDS = ROOT / "examples/cards/templates"


@pytest.fixture
def override(settings, tmp_path: Path):
    """Put templates of a project's own first, as a project built on liveroom would."""

    def put(name: str, text: str) -> None:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
        dirs = settings.TEMPLATES[0]["DIRS"]
        settings.TEMPLATES = [settings.TEMPLATES[0] | {"DIRS": [tmp_path, *dirs]}]

    return put


def messages() -> list[str]:
    return [error.msg for error in checks.check_room_templates()]


@pytest.mark.parametrize("presence", [True, False])
def test_liveroom_keeps_its_own_contract(settings, presence: bool) -> None:
    settings.LIVEROOM_PRESENCE = presence
    assert messages() == []
    call_command("check")  # raises SystemCheckError on an error


def test_the_list_renamed_is_named_with_its_template(override) -> None:
    override("liveroom/room/members.html", LIST.replace('id="members"', 'id="people"'))
    found = messages()
    missing = "#members, which the room page (liveroom/room.html) does not have"
    assert any(missing in message and "liveroom/room.html#member-joined" in message
               for message in found), found  # fmt: skip
    with pytest.raises(SystemCheckError, match=r"liveroom\.E003"):
        call_command("check")


def test_an_entry_without_hx_swap_oob_is_named(override) -> None:
    swap = '{% if member_swap %} hx-swap-oob="{{ member_swap }}"{% endif %}'
    override("liveroom/room/member.html", ENTRY.replace(swap, ""))
    found = messages()
    named = "liveroom/room.html#member-left (liveroom/room/member.html): pushes <li id='member-2'>"
    assert any(f"{named} without hx-swap-oob" in message for message in found), found


def test_a_table_row_as_an_entry_is_named(override) -> None:
    override("liveroom/room/member.html", ENTRY.replace("<li", "<tr").replace("</li>", "</tr>"))
    found = messages()
    assert any("pushes <tr id='member-2'>, a table part the HTML parser drops" in message
               for message in found), found  # fmt: skip


def test_an_entry_with_its_ids_in_a_search_answer_is_named(override) -> None:
    override("liveroom/room/member.html", ENTRY.replace("{% if not member_found %}", "{% if 1 %}"))
    found = messages()
    repeated = "a search's answer repeats the ids member-1, member-2 of the live list"
    assert any(repeated in message for message in found), found
    with pytest.raises(SystemCheckError, match=r"liveroom\.E004"):
        call_command("check")


def test_the_worked_restyle_keeps_the_contract(override) -> None:
    for path in CARDS.rglob("*.html"):
        override(str(path.relative_to(CARDS)), path.read_text())
    assert messages() == []


@pytest.mark.browser
@needs_chromium
def test_the_worked_restyle_is_live_in_chromium(browser: Browser, start_server, server_env) -> None:
    cards_settings = {"DJANGO_SETTINGS_MODULE": "examples.cards.settings"}
    server: Daphne = start_server(env=server_env | cards_settings)
    alice = Person(browser, server)
    alice.join("Alice")
    bob = Person(browser, server)
    bob.join("Bob")
    cards = alice.page.locator("#members .card-member")
    expect(cards).to_have_count(2)
    expect(cards.locator(".card-member__initial")).to_have_text(["A", "B"])
    bob.page.get_by_role("button", name="Leave the room").click()
    expect(cards).to_have_count(1)
    assert alice.errors == []  # no oobErrorNoTarget: the restyle kept the contract
    alice.close()
    bob.close()
