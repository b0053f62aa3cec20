"""Everyone can use it, checked in Chromium against a real server: axe-core (WCAG 2.2 A and AA,
and axe's best practices) on every page a person can reach, in each language, light and dark,
wide and narrow; keyboard alone for every action; pausing in a real browser; right to left; no
sideways scrolling at 320 px (a 640 px window at 200 % zoom)."""

import re
from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.utils import translation
from playwright.sync_api import Browser, BrowserContext, Page, expect

from harness.browsers import needs_chromium
from harness.servers import Daphne, Visitor

pytestmark = [pytest.mark.browser, needs_chromium]

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]
SCREENS = {
    "light, 1024 px": {"color_scheme": "light", "viewport": {"width": 1024, "height": 768}},
    "dark, 1024 px": {"color_scheme": "dark", "viewport": {"width": 1024, "height": 768}},
    "light, 360 px": {"color_scheme": "light", "viewport": {"width": 360, "height": 740}},
    "dark, 360 px": {"color_scheme": "dark", "viewport": {"width": 360, "height": 740}},
}
# What a second person's arrival shows, by language: the live change axe looks at.
ARRIVED = {"en": "2 people here", "de": "2 Personen hier", "ar": "شخصان هنا"}


@pytest.fixture
def server(start_server, server_env) -> Daphne:
    return start_server(env=server_env | {"LIVEROOM_PRESENCE": "1"})


def open_context(browser: Browser, language: str, **options) -> BrowserContext:
    # axe is injected by evaluating its source, which the pages' CSP would refuse.
    return browser.new_context(
        extra_http_headers={"Accept-Language": language}, bypass_csp=True, **options
    )


def axe_violations(page: Page, where: str) -> dict[str, str]:
    results = Axe().run(
        page,
        options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]},
    )
    if results.violations_count == 0:
        return {}
    return {where: results.generate_report()}


def join_as(page: Page, server: Daphne, name: str) -> None:
    """Join through the form, whatever its language; back once the page is live."""
    page.goto(f"{server.url}/room/join/")
    page.locator("#id_name").fill(name)
    with page.expect_websocket() as socket_info:
        page.locator(".join-form button[type=submit]").click()
    socket_info.value.expect_event("framereceived")


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "de", "ar"])
def test_axe_finds_nothing_on_any_page_in_any_scheme_or_width(
    browser: Browser, server: Daphne, language: str
) -> None:
    found: dict[str, str] = {}
    for number, (screen, options) in enumerate(SCREENS.items()):
        context = open_context(browser, language, **options)
        page = context.new_page()
        page.goto(f"{server.url}/room/join/")
        found |= axe_violations(page, f"join form ({screen})")
        page.locator(".join-form button[type=submit]").click()  # no name: an error
        expect(page.locator(".field__error")).to_be_visible()
        found |= axe_violations(page, f"join form with an error ({screen})")

        join_as(page, server, f"Person {number}")
        visitor = Visitor()
        visitor.join(server, f"Visitor {number}")  # a live change on the open page
        expect(page.locator("#member-count")).to_have_text(ARRIVED[language])
        found |= axe_violations(page, f"room after a live change ({screen})")
        page.locator("#live-button").click()
        expect(page.locator("#live-status")).to_have_class(re.compile("live-status--paused"))
        found |= axe_violations(page, f"room, paused ({screen})")
        page.locator("#live-button").click()
        expect(page.locator("#live-status")).not_to_have_class(re.compile("paused"))  # resumed
        visitor.leave(server)

        page.goto(f"{server.url}/rooms/")
        found |= axe_violations(page, f"rooms ({screen})")
        page.goto(f"{server.url}/nowhere/")
        found |= axe_violations(page, f"not found ({screen})")
        page.goto(f"{server.url}/room/")  # leaves: the next screen's room starts empty
        with page.expect_navigation():
            page.locator(".button--leave").click()
        context.close()
    assert found == {}, "\n".join(f"{where}:\n{report}" for where, report in found.items())


@pytest.mark.parametrize("language", ["en", "de", "ar"])
def test_axe_finds_nothing_on_the_error_pages(
    browser: Browser, start_server, server_env, language: str
) -> None:
    # One join and one more change a minute: the second post is refused (429).
    server = start_server(env=server_env | {"RATE_LIMIT_PER_SESSION": "1/60"})
    found: dict[str, str] = {}
    for screen, options in SCREENS.items():
        context = open_context(browser, language, **options)
        page = context.new_page()
        page.goto(f"{server.url}/room/join/")
        context.clear_cookies()  # the form's token no longer matches: 403
        page.locator("#id_name").fill("Bob")
        page.locator(".join-form button[type=submit]").click()
        expect(page.locator("main a.button")).to_have_attribute("href", "/room/join/")
        found |= axe_violations(page, f"403 CSRF ({screen})")

        join_as(page, server, "Alice")
        page.locator("#rename-name").fill("Alicia")
        page.locator(".rename-form button").click()  # the session's second change: 429
        expect(page.locator("h1")).not_to_have_text(re.compile("Alice"))
        found |= axe_violations(page, f"429 ({screen})")

        for status in (500, 503):  # the database or the code failing: served as they would be
            serve(page, f"{server.url}/failing/", status, error_page(status, language))
            page.goto(f"{server.url}/failing/")
            found |= axe_violations(page, f"{status} ({screen})")
            page.unroute(f"{server.url}/failing/")
        context.close()
    assert found == {}, "\n".join(f"{where}:\n{report}" for where, report in found.items())


@pytest.mark.parametrize("language", ["en", "de", "ar"])
def test_axe_finds_nothing_on_a_crowded_room_and_its_search(
    browser: Browser, start_server, server_env, language: str
) -> None:
    crowd = {
        "LIVEROOM_FULL_LIST_MAX": "3",
        "LIVEROOM_RECENT_ARRIVALS": "2",
        "LIVEROOM_PRESENCE": "1",
    }
    server = start_server(env=server_env | crowd)
    for name in ("Bob", "Carol", "Dave"):
        Visitor().join(server, name)
    found: dict[str, str] = {}
    for screen, options in SCREENS.items():
        context = open_context(browser, language, **options)
        page = context.new_page()
        join_as(page, server, "Alice")
        expect(page.locator("#members-hint")).not_to_be_empty()
        found |= axe_violations(page, f"crowded room ({screen})")
        page.locator("#member-search").press_sequentially("o")
        expect(page.locator("#search-results .member__name").first).to_be_visible()
        found |= axe_violations(page, f"crowded room, searched ({screen})")
        page.goto(f"{server.url}/room/?q={'x' * 41}")  # longer than any name: refused
        expect(page.locator("#search-results .form-error")).to_be_visible()
        found |= axe_violations(page, f"crowded room, search refused ({screen})")
        page.goto(f"{server.url}/room/")
        with page.expect_navigation():
            page.locator(".button--leave").click()
        context.close()
    assert found == {}, "\n".join(f"{where}:\n{report}" for where, report in found.items())


def serve(page: Page, url: str, status: int, html: str) -> None:
    page.route(url, lambda route: route.fulfill(status=status, body=html, content_type="text/html"))


def error_page(status: int, language: str) -> str:
    """The page Django serves when the code fails (500) or the database is out of reach (503),
    rendered as the server renders it."""
    request = RequestFactory().get("/failing/", headers={"accept-language": language})
    with translation.override(language):
        return render_to_string(f"{status}.html", request=request if status == 503 else None)


def test_the_axe_check_reports_what_it_finds(browser: Browser, server: Daphne) -> None:
    context = open_context(browser, "en")
    page = context.new_page()
    page.goto(f"{server.url}/rooms/")
    assert axe_violations(page, "rooms") == {}
    page.evaluate("document.querySelector('#room-name').removeAttribute('id')")  # its label's
    page.evaluate("document.documentElement.removeAttribute('lang')")
    found = axe_violations(page, "rooms, broken")
    assert "html-has-lang" in found["rooms, broken"]
    assert "label" in found["rooms, broken"]
    context.close()


@pytest.mark.parametrize("language", ["en", "ar"])
def test_nothing_scrolls_sideways_at_320_px(
    browser: Browser, server: Daphne, language: str
) -> None:
    context = open_context(browser, language, viewport={"width": 320, "height": 640})
    page = context.new_page()
    wide: list[str] = []
    join_as(page, server, "A name long enough to wrap on a narrow screen, surely")
    Visitor().join(server, "Bob")
    page.locator("#hand-form button").click()
    for path in ["/room/", "/room/join/", "/rooms/", "/nowhere/"]:
        page.goto(f"{server.url}{path}")
        if page.evaluate("document.documentElement.scrollWidth > innerWidth"):
            wide.append(path)
    assert wide == []
    context.close()


def test_arabic_pages_run_right_to_left_and_names_keep_their_order(
    browser: Browser, server: Daphne
) -> None:
    context = open_context(browser, "ar", viewport={"width": 800, "height": 700})
    page = context.new_page()
    join_as(page, server, "Alice Smith")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    entry = page.locator(".member--you")
    name, presence = entry.locator(".member__name"), entry.locator(".presence")
    expect(presence).to_have_text("متصل")
    # Mirrored: the name starts at the right, its presence sits at the left.
    assert presence.bounding_box()["x"] < name.bounding_box()["x"]
    expect(name).to_have_text("Alice Smith")
    assert name.evaluate("element => getComputedStyle(element).direction") == "ltr"
    context.close()


def test_the_language_form_switches_with_no_javascript_needed(
    browser: Browser, server: Daphne
) -> None:
    context = browser.new_context(java_script_enabled=False, extra_http_headers={})
    page = context.new_page()
    page.goto(f"{server.url}/rooms/")
    expect(page.locator("h1")).to_have_text("All rooms")
    page.locator("#language").select_option("de")
    page.locator(".language-form button").click()
    expect(page.locator("h1")).to_have_text("Alle Räume")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    context.close()


@pytest.fixture
def keyboard_person(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == []
    context.close()


def tab_to(page: Page, selector: str, most: int = 40) -> None:
    """Press Tab until `selector` has focus, and check that the focus shows."""
    target = page.locator(selector)
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            outline = target.evaluate("element => getComputedStyle(element).outlineStyle")
            assert outline != "none", f"{selector} has focus with no visible outline"
            return
    raise AssertionError(f"{selector} is not reached with Tab")


def test_every_action_works_from_the_keyboard_alone(keyboard_person: Page, server: Daphne) -> None:
    page = keyboard_person
    page.goto(f"{server.url}/room/join/")
    expect(page.locator("#id_name")).to_be_focused()  # the form's field, at once
    page.keyboard.type("Kay")
    with page.expect_websocket() as socket_info:
        page.keyboard.press("Enter")
    socket_info.value.expect_event("framereceived")
    expect(page.locator("#my-name")).to_have_text("Kay")

    tab_to(page, "#rename-name")
    page.keyboard.press("Control+A")
    page.keyboard.type("Kai")
    page.keyboard.press("Enter")
    expect(page.locator("#my-name")).to_have_text("Kai")

    tab_to(page, "#hand-form button")
    page.keyboard.press("Enter")
    expect(page.locator(".member--you .member__hand")).to_be_visible()

    tab_to(page, "#live-button")
    page.keyboard.press("Enter")
    expect(page.locator("#live-status")).to_contain_text("paused")
    expect(page.locator("#live-button")).to_be_focused()  # its label changed, not the button
    page.keyboard.press("Enter")
    expect(page.locator("#live-status")).to_contain_text("Live again")

    tab_to(page, "#spoken-button")
    page.keyboard.press("Space")
    expect(page.locator("#announcement")).to_have_attribute("aria-live", "off")
    Visitor().join(server, "Zed")  # a change arrives: the list never takes the focus
    expect(page.locator("#members .member__name").last).to_have_text("Zed")
    expect(page.locator("#spoken-button")).to_be_focused()

    tab_to(page, ".button--leave")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.url}/room/join/")


def test_a_paused_page_gets_no_frame_until_resumed_then_one_snapshot(
    browser: Browser, server: Daphne
) -> None:
    context = browser.new_context()
    page = context.new_page()
    frames: list[str] = []
    page.on(
        "websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame))
    )
    join_as(page, server, "Alice")
    page.locator("#live-button").click()
    expect(page.locator("#live-status")).to_contain_text("paused")
    page.wait_for_timeout(300)  # the answer to the press is in
    before = len(frames)

    bob, carol = Visitor(), Visitor()
    bob.join(server, "Bob")
    carol.join(server, "Carol")
    carol.leave(server)
    page.wait_for_timeout(2000)
    assert len(frames) == before  # not a change, a presence, a word or a heartbeat
    expect(page.locator("#members .member__name")).to_have_text(["Alice"])

    page.locator("#live-button").click()
    expect(page.locator("#live-status")).to_have_text("Live again: 3 changes while paused.")
    expect(page.locator("#members .member__name")).to_have_text(["Alice", "Bob"])
    lists = [frame for frame in frames[before:] if frame.startswith('<ul id="members"')]
    assert len(lists) == 1  # one snapshot
    expect(page.locator("#connection .connection__live")).to_be_visible()
    context.close()
