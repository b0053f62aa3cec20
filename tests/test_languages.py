"""Pages in the person's language: chosen by the browser or by a plain form, every page, form
error, error page and pushed piece; plurals as each language counts; right to left for Arabic;
names as typed. A change is rendered once per language its pages use, never once per page. The
catalogues are current and no template string is left unmarked."""

import asyncio
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.template.base import Lexer, TokenType
from django.template.loader import render_to_string
from django.test import Client
from django.utils import translation

from liveroom.live import announcements
from liveroom.rooms import fragments
from liveroom.testing import RoomPage, join

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def browser(language: str) -> Client:
    return Client(headers={"accept-language": language})


def html_attributes(page: str) -> tuple[str, str]:
    found = re.search(r'<html lang="([^"]+)" dir="([^"]+)">', page)
    assert found, page[:200]
    return found[1], found[2]


@pytest.mark.parametrize(
    ("accept", "lang", "direction", "words"),
    [
        ("en-GB,en;q=0.8", "en", "ltr", "Pick a name; everyone in the room will see it."),
        (
            "de-DE,de;q=0.9,en;q=0.5",
            "de",
            "ltr",
            "Wähle einen Namen; alle im Raum werden ihn sehen.",
        ),
        ("ar", "ar", "rtl", "اختر اسمًا؛ سيراه كل من في الغرفة."),
        ("fr-FR,fr;q=0.9", "en", "ltr", "Pick a name"),  # not offered: the default
    ],
)
def test_the_browser_language_decides_and_the_page_says_it(accept, lang, direction, words) -> None:
    page = browser(accept).get("/room/join/").content.decode()
    assert html_attributes(page) == (lang, direction)
    assert words in page


def test_a_plain_form_switches_the_language_and_it_stays() -> None:
    client = browser("de")
    page = client.get("/room/join/").content.decode()
    assert 'action="/language/"' in page
    assert 'name="next" type="hidden" value="/room/join/"' in page
    response = client.post("/language/", {"language": "ar", "next": "/room/join/"})
    assert (response.status_code, response["Location"]) == (302, "/room/join/")
    assert html_attributes(client.get("/room/join/").content.decode()) == ("ar", "rtl")
    assert html_attributes(client.get("/rooms/").content.decode()) == ("ar", "rtl")


def test_form_errors_and_error_pages_are_in_the_language() -> None:
    client = browser("de")
    response = client.post("/room/join/", {"name": ""})
    assert response.status_code == 400
    assert "Bitte gib einen Namen ein." in response.content.decode()
    too_long = client.post("/room/join/", {"name": "x" * 60}).content.decode()
    assert "Bitte verwende höchstens 40 Zeichen (dieser hat 60)." in too_long
    missing = client.get("/nowhere/")
    assert missing.status_code == 404
    assert "Hier gibt es nichts" in missing.content.decode()
    refused = client.get("/rooms/?name=Not+A+Slug").content.decode()
    assert "Raumnamen bestehen aus Kleinbuchstaben" in refused


@pytest.mark.parametrize(
    ("count", "words"),
    [
        (0, "لا أحد هنا"),
        (1, "شخص واحد هنا"),
        (2, "شخصان هنا"),
        (3, "3 أشخاص هنا"),
        (11, "11 شخصًا هنا"),
        (100, "100 شخص هنا"),
        (103, "103 أشخاص هنا"),
    ],
)
def test_arabic_counts_people_with_its_six_plural_forms(count: int, words: str) -> None:
    with translation.override("ar"):
        html = render_to_string("liveroom/room.html#count", {"count": count})
    assert f">{words}</p>" in html


@pytest.mark.parametrize(
    ("language", "people", "online"),
    [("en", "50,001 people here", "1,234 online"), ("de", "50.001 Personen hier", "1.234 online"),
     ("ar", "50.001 شخص هنا", "1.234 متصلًا")],
)  # fmt: skip
def test_a_crowds_counts_are_grouped_as_the_language_writes_numbers(
    language: str, people: str, online: str
) -> None:
    context = {"count": 50001, "online_count": 1234}
    with translation.override(language):
        count = render_to_string("liveroom/room.html#count", context)
        online_count = render_to_string("liveroom/room.html#online-count", context)

    assert f">{people}</p>" in count
    assert f">{online}</p>" in online_count


def test_a_name_is_never_translated_or_reordered() -> None:
    alice = join(browser("ar"), "Alice")
    join(browser("en"), "online")  # a name that is also a word of the page
    page = alice.get("/room/").content.decode()
    names = re.findall(r'<span class="member__name" dir="auto">(.*?)</span>', page)
    assert names == ["Alice", "online"]  # isolated (dir="auto"), as typed
    assert html_attributes(page) == ("ar", "rtl")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_each_page_gets_changes_in_its_language_rendered_once_a_language(
    monkeypatch,
) -> None:
    renders: list[str] = []
    render_change = fragments.render_change

    def counted(data: fragments.ChangeData) -> str:
        renders.append(translation.get_language())
        return render_change(data)

    monkeypatch.setattr(fragments, "render_change", counted)
    monkeypatch.setattr(announcements, "INTERVAL", 0.0)  # each change said with it
    pages = []
    for number, language in enumerate(["en", "de", "ar"] * 3):
        client = await sync_to_async(join)(browser(language), f"Person {number}")
        pages.append((language, await RoomPage.open(client)))
    for _, page in pages:  # every join shown, so the next change goes alone
        await page.until(lambda page: page.text("#member-count").startswith("9"))
    await asyncio.sleep(0.2)  # past the window of the last
    renders.clear()
    await sync_to_async(join)(browser("en"), "Zoë")
    shown = {
        "en": ("10 people here", "Zoë joined"),
        "de": ("10 Personen hier", "Zoë ist beigetreten"),
        "ar": ("10 أشخاص هنا", "انضمّ Zoë"),
    }
    for language, page in pages:
        await page.until(lambda page: "Zoë" in page.members())
        assert page.text("#member-count") == shown[language][0]
        said = shown[language][1]
        await page.until(lambda page, said=said: page.text("#announcement") == said, within=3)
        assert page.errors == []
    assert sorted(renders) == ["ar", "de", "en"]  # nine pages, three languages: three renders
    for _, page in pages:
        await page.close()


def test_every_template_string_is_marked_for_translation() -> None:
    templates = [*(ROOT / "templates").rglob("*.html"), *(ROOT / "examples").rglob("*.html")]
    unmarked = {
        str(path.relative_to(ROOT)): words
        for path in sorted(templates)
        if (words := unmarked_words(path.read_text()))
    }
    assert unmarked == {}


def test_the_check_finds_an_unmarked_string() -> None:
    assert unmarked_words("<p>{% translate 'Hello' %}</p>") == []
    assert unmarked_words('<p title="Greeting">{{ name }} hello</p>') == ["Greeting", "hello"]
    assert unmarked_words("{% comment %}Words here{% endcomment %}{# and here #}") == []
    assert unmarked_words("{% blocktranslate %}Hi {{ x }}{% endblocktranslate %} · liveroom") == []


@pytest.mark.skipif(not shutil.which("xgettext"), reason="needs GNU gettext (make gettext)")
def test_the_catalogues_are_current(tmp_path: Path) -> None:
    """`make messages` would change nothing: every marked string is in every catalogue, with
    no string left over, each translated, and each .mo compiled from its .po."""
    copy = tmp_path / "project"
    for part in ("liveroom", "templates", "locale", "manage.py"):
        source = ROOT / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / part)
    found = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "--all", "--no-location", "--no-obsolete"],
        cwd=copy, capture_output=True, text=True,
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "liveroom.settings"},
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    for language in [code for code, _ in settings.LANGUAGES if code != "en"]:
        committed = polib.pofile(ROOT / f"locale/{language}/LC_MESSAGES/django.po")
        current = polib.pofile(copy / f"locale/{language}/LC_MESSAGES/django.po")
        assert messages(current) == messages(committed), f"{language}: run `make messages`"
        assert committed.untranslated_entries() == [], f"{language}: untranslated strings"
        assert committed.fuzzy_entries() == [], f"{language}: fuzzy strings"
        compiled = tmp_path / f"{language}.mo"
        subprocess.run(
            ["msgfmt", "--check", "-o", compiled, committed.fpath], check=True, capture_output=True
        )
        mo = ROOT / f"locale/{language}/LC_MESSAGES/django.mo"
        assert compiled.read_bytes() == mo.read_bytes(), f"{language}: run `make messages`"


def messages(catalogue: polib.POFile) -> set[tuple[str | None, str, str]]:
    return {(entry.msgctxt, entry.msgid, entry.msgid_plural) for entry in catalogue}


# What the template check counts as words a person reads: text, and these attributes.
READ_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description", "label"}
NOT_WORDS = {"liveroom"}  # the product's name


def unmarked_words(source: str) -> list[str]:
    """The words of a template a person would read that no translation tag marks."""
    text, skip = [], None
    for token in Lexer(source).tokenize():
        if skip is not None:
            if token.token_type == TokenType.BLOCK and token.contents.split()[0] == skip:
                skip = None
            continue
        if token.token_type == TokenType.TEXT:
            text.append(token.contents)
        elif token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0]
            if name in {"blocktranslate", "blocktrans", "comment"}:
                skip = "end" + name
            text.append("0")  # a tag's output: not words of this template
        elif token.token_type == TokenType.VAR:
            text.append("0")
    words = WordCollector()
    words.feed("".join(text))
    return [word for word in words.found if word not in NOT_WORDS]


class WordCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.hidden = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden += tag in {"script", "style"}
        for name, value in attrs:
            if name in READ_ATTRIBUTES and value:
                self.add(value)

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in {"script", "style"}

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.add(data)

    def add(self, text: str) -> None:
        self.found += [word for word in re.findall(r"[^\W\d_]+", text)]
