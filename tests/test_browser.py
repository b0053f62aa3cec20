"""Two people in two browsers, against a real daphne process."""

import base64
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread

import pytest
from playwright.sync_api import Browser, Page, expect

from harness.browsers import Person, needs_chromium
from harness.servers import ROOT, Daphne, Visitor

pytestmark = [pytest.mark.browser, needs_chromium]


GRACE_SECONDS = 2


@pytest.fixture
def server(start_server, server_env) -> Daphne:
    return start_server(
        env=server_env
        | {"LIVEROOM_PRESENCE": "1", "LIVEROOM_PRESENCE_GRACE_SECONDS": str(GRACE_SECONDS)}
    )


def test_two_people_see_each_other_join_and_leave_live(
    browser: Browser, server: Daphne, tmp_path: Path
) -> None:
    alice = Person(browser, server)
    alice.join("Alice")
    expect(alice.members()).to_have_text(["Alice"])
    expect(alice.page.locator(".member--you")).to_contain_text("Alice")
    expect(alice.page.locator("#member-count")).to_have_text("1 person here")

    bob = Person(browser, server)
    bob.join("Bob")
    expect(alice.members()).to_have_text(["Alice", "Bob"])
    expect(alice.page.locator("#member-count")).to_have_text("2 people here")
    expect(bob.members()).to_have_text(["Alice", "Bob"])
    expect(bob.page.locator(".member--you")).to_contain_text("Bob")
    expect(alice.presence_of("Bob")).to_have_text("online")
    expect(bob.presence_of("Alice")).to_have_text("online")

    save_side_by_side(browser, [alice.page, bob.page], screenshot_path(tmp_path))

    bob.page.get_by_role("button", name="Leave the room").click()
    expect(bob.page).to_have_url(f"{server.url}/room/join/")
    expect(alice.members()).to_have_text(["Alice"])
    expect(alice.page.locator("#member-count")).to_have_text("1 person here")

    # The pages ran under the strict policy, and the browser reported no violation of it.
    assert "'nonce-" in alice.room_headers["content-security-policy"]
    assert alice.errors == []
    assert bob.errors == []
    alice.close()
    bob.close()


def test_a_rename_shows_on_every_page(browser: Browser, server: Daphne) -> None:
    alice = Person(browser, server)
    alice.join("Alice")
    bob = Person(browser, server)
    bob.join("Bob")

    bob.page.get_by_label("Change your name").fill("Robert")
    bob.page.get_by_role("button", name="Rename").click()
    expect(alice.members()).to_have_text(["Alice", "Robert"])
    expect(bob.page.locator("#my-name")).to_have_text("Robert")
    assert alice.errors == []
    alice.close()
    bob.close()


def test_the_page_works_with_javascript_off(browser: Browser, server: Daphne) -> None:
    alice = Person(browser, server)
    alice.join("Alice")
    carol = Person(browser, server, java_script_enabled=False)

    carol.page.goto(f"{server.url}/room/join/")
    carol.page.get_by_label("Your name").fill("Carol")
    carol.page.get_by_role("button", name="Join").click()
    expect(carol.page).to_have_url(f"{server.url}/room/")
    expect(carol.members()).to_have_text(["Alice", "Carol"])
    expect(alice.members()).to_have_text(["Alice", "Carol"])

    carol.page.get_by_role("button", name="Leave the room").click()
    expect(carol.page).to_have_url(f"{server.url}/room/join/")
    expect(alice.members()).to_have_text(["Alice"])
    alice.close()
    carol.close()


def test_a_name_that_is_too_long_gets_a_clear_message(browser: Browser, server: Daphne) -> None:
    dave = Person(browser, server)
    dave.page.goto(f"{server.url}/room/join/")
    # The maxlength attribute stops typing at 40; a crafted request is what gets past it.
    response = dave.page.request.post(
        f"{server.url}/room/join/",
        form={"name": "x" * 41},
        headers={"Referer": f"{server.url}/room/join/"},
        fail_on_status_code=False,
    )
    assert response.status == 403  # no CSRF token: refused before the form is read
    dave.page.get_by_label("Your name").fill("   ")
    dave.page.get_by_role("button", name="Join").click()
    expect(dave.page.get_by_role("alert")).to_have_text("Please enter a name.")
    dave.close()


def screenshot_path(tmp_path: Path, name: str = "two-browsers.png") -> Path:
    # `make screenshots` keeps the pictures the README shows; otherwise they are thrown away.
    if os.environ.get("LIVEROOM_UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / name
    return tmp_path / name


def save_side_by_side(browser: Browser, pages: list[Page], path: Path) -> None:
    shots = [base64.b64encode(page.screenshot()).decode() for page in pages]
    images = "".join(
        f'<figure><img src="data:image/png;base64,{shot}"><figcaption>Browser {i + 1}'
        "</figcaption></figure>"
        for i, shot in enumerate(shots)
    )
    sheet = browser.new_page(viewport={"width": 16 + 498 * len(pages), "height": 700})
    sheet.set_content(
        "<style>body{margin:0;display:flex;gap:16px;padding:16px;background:#cfd5e3;"
        "font:14px system-ui}figure{margin:0}img{display:block;border:1px solid #888;"
        "border-radius:6px}figcaption{text-align:center;padding-top:4px}</style>" + images
    )
    sheet.screenshot(path=str(path), full_page=True)
    sheet.close()
    assert path.stat().st_size > 10_000


EVIL_PAGE = """<!doctype html><title>evil</title><body><script>
const socket = new WebSocket("ws://127.0.0.1:%(port)d/ws/room/");
socket.onmessage = (event) => { document.body.dataset.leak = event.data; };
socket.onclose = (event) => { document.body.dataset.closed = String(event.code); };
</script></body>"""


@pytest.fixture
def evil_site(server: Daphne) -> Iterator[str]:
    """A page on another site (a real loopback server) that tries to open the room's socket."""
    body = (EVIL_PAGE % {"port": server.port}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=httpd.serve_forever, daemon=True).start()
    # Chromium resolves *.localhost to loopback; the host name makes it another site.
    yield f"http://evil.localhost:{httpd.server_port}/"
    httpd.shutdown()


def test_a_page_on_another_site_cannot_read_the_member_list(
    browser: Browser, server: Daphne, evil_site: str
) -> None:
    alice = Person(browser, server)
    alice.join("Alice")
    alice.page.goto(evil_site)
    expect(alice.page.locator("body")).to_have_attribute("data-closed", "1006")
    assert alice.page.locator("body").get_attribute("data-leak") is None
    assert "WSREJECT /ws/room/" in server.log()
    alice.close()


@pytest.mark.slow
def test_the_connection_indicator_says_reconnecting_until_the_server_is_back(
    browser: Browser, start_server, server_env
) -> None:
    server = start_server(env={**server_env, "LIVEROOM_HEARTBEAT_SECONDS": "5"})
    # With motion reduced: the indicator must not depend on an animation being allowed.
    alice = Person(browser, server, reduced_motion="reduce")
    alice.join("Alice")
    live = alice.page.locator("#connection .connection__live")
    reconnecting = alice.page.locator("#connection .connection__stale")
    expect(live).to_be_visible()
    expect(reconnecting).to_be_hidden()
    assert alice.errors == []  # from here on, failed reconnections are expected

    server.stop()
    expect(reconnecting).to_be_visible(timeout=25_000)  # no heartbeat for 15 s
    expect(live).to_be_hidden()

    start_server(env=server.env, port=server.port)  # back at the same address
    # htmx retries with full-jitter backoff: after 15 s of failures the next try may be up to
    # 64 s after the last one (hx-ws: a random delay below 2 ** min(retries, 6) seconds).
    expect(live).to_be_visible(timeout=70_000)
    expect(reconnecting).to_be_hidden()
    alice.close()


def test_the_rooms_page_shows_a_new_room_live(browser: Browser, server: Daphne) -> None:
    watcher = Person(browser, server)
    with watcher.page.expect_websocket() as socket_info:
        watcher.page.goto(f"{server.url}/rooms/")
    socket_info.value.expect_event("framereceived")
    expect(watcher.page.get_by_text("Nobody is in any room yet.")).to_be_visible()

    carol = Visitor()
    carol.http.get(f"{server.url}/room/chess/join/", timeout=10)
    carol.http.post(
        f"{server.url}/room/chess/join/",
        data={"name": "Carol", "csrfmiddlewaretoken": carol.http.cookies["csrftoken"]},
        timeout=10,
    )
    expect(watcher.page.locator("#room-list")).to_contain_text("room “chess”")
    expect(watcher.page.locator("#room-list")).to_contain_text("1 person")
    assert watcher.errors == []
    watcher.close()


def alice_and_bob(browser: Browser, server: Daphne) -> tuple[Person, Person]:
    """Alice and Bob, each in a browser of their own, in the room."""
    people = Person(browser, server), Person(browser, server)
    for person, name in zip(people, ["Alice", "Bob"], strict=True):
        person.join(name)
    return people


def close_without_errors(*people: Person) -> None:
    """Every page ran without an htmx or browser error; the browsers close."""
    assert [person.errors for person in people] == [[] for _ in people]
    for person in people:
        person.close()


def test_two_tabs_are_one_member_who_goes_away_only_when_both_close(
    browser: Browser, server: Daphne, tmp_path: Path
) -> None:
    alice, bob = alice_and_bob(browser, server)
    second_tab = bob.open_tab()
    expect(alice.presence_of("Bob")).to_have_text("online")
    expect(alice.page.locator("#online-count")).to_have_text("2 online")
    expect(alice.members()).to_have_text(["Alice", "Bob"])  # one entry for two tabs

    second_tab.close()
    alice.page.wait_for_timeout(GRACE_SECONDS * 1000 + 1000)
    expect(alice.presence_of("Bob")).to_have_text("online")

    bob.page.close()
    expect(alice.presence_of("Bob")).to_have_text("away", timeout=GRACE_SECONDS * 1000 + 5000)
    expect(alice.page.locator("#online-count")).to_have_text("1 online")
    expect(alice.page.locator("#announcement")).to_have_text("Bob is away")
    carol = Person(browser, server)
    carol.join("Carol")
    expect(alice.presence_of("Carol")).to_have_text("online")
    save_side_by_side(browser, [alice.page], screenshot_path(tmp_path, "presence.png"))
    assert alice.errors == []
    alice.close()
    bob.close()
    carol.close()


def test_a_member_of_one_room_is_invisible_in_another(browser: Browser, server: Daphne) -> None:
    alice = Person(browser, server)
    alice.join("Alice", room="/room/chess/")
    bob = Person(browser, server)
    bob.join("Bob", room="/room/go/")
    expect(alice.presence_of("Alice")).to_have_text("online")
    expect(bob.presence_of("Bob")).to_have_text("online")
    expect(alice.members()).to_have_text(["Alice"])
    expect(bob.members()).to_have_text(["Bob"])
    expect(alice.page.locator("#online-count")).to_have_text("1 online")
    assert alice.errors == []
    assert bob.errors == []
    alice.close()
    bob.close()


def test_a_hand_raised_shows_on_every_page_and_a_pushed_form_still_works(
    browser: Browser, server: Daphne
) -> None:
    alice, bob = alice_and_bob(browser, server)
    bob_tab = bob.open_tab()

    bob.page.get_by_role("button", name="Raise your hand").click()
    expect(alice.page.locator(".member", has_text="Bob").locator(".member__hand")).to_be_visible()
    expect(alice.page.locator("#announcement")).to_have_text("Bob raised a hand")
    # Bob's other tab got its hand form pushed (no token of its own) and still posts with one.
    pressed = bob_tab.get_by_role("button", name="Raise your hand")
    expect(pressed).to_have_attribute("aria-pressed", "true")
    pressed.click()
    expect(bob_tab).to_have_url(f"{server.url}/room/")
    expect(alice.page.locator(".member", has_text="Bob").locator(".member__hand")).to_have_count(0)
    expect(alice.page.locator("#announcement")).to_have_text("Bob lowered their hand")
    close_without_errors(alice, bob)


def test_a_tab_told_it_left_can_join_again_from_the_notice(
    browser: Browser, server: Daphne
) -> None:
    alice, bob = alice_and_bob(browser, server)
    other_tab = bob.open_tab()
    bob.page.get_by_role("button", name="Leave the room").click()
    expect(other_tab.locator("#you")).to_contain_text("You left the room from another tab.")
    # The notice's form was pushed without a token; it posts with the page's.
    other_tab.get_by_label("Your name, to join again").fill("Bobby")
    other_tab.get_by_role("button", name="Join again").click()
    expect(other_tab).to_have_url(f"{server.url}/room/")
    expect(alice.members()).to_have_text(["Alice", "Bobby"])
    close_without_errors(alice, bob)


@pytest.fixture
def crowded_server(start_server, server_env) -> Daphne:
    """A crowd of four: above three members a page lists the two most recent arrivals."""
    crowd = {"LIVEROOM_FULL_LIST_MAX": "3", "LIVEROOM_RECENT_ARRIVALS": "2"}
    return start_server(env=server_env | crowd)


def test_a_crowded_room_lists_the_recent_arrivals_and_finds_anyone_as_one_types(
    browser: Browser, crowded_server: Daphne
) -> None:
    for name in ("Bob", "Carol", "Dave"):
        Visitor().join(crowded_server, name)
    alice = Person(browser, crowded_server)
    alice.join("Alice")
    expect(alice.members()).to_have_text(["Dave", "Alice"])
    expect(alice.page.locator("#member-count")).to_have_text("4 people here")
    expect(alice.page.locator("#members-hint")).to_contain_text("2 most recent arrivals")

    alice.page.get_by_label("Find someone by name").press_sequentially("bo")
    expect(alice.page.locator("#search-results .member__name")).to_have_text(["Bob"])  # typed
    expect(alice.page).to_have_url(f"{crowded_server.url}/room/")  # no page load
    alice.page.get_by_label("Find someone by name").fill("zed")
    expect(alice.page.locator("#search-results")).to_have_text("Nobody here has zed in their name.")

    Visitor().join(crowded_server, "Erin")  # the page is still live: the window moves
    expect(alice.members()).to_have_text(["Alice", "Erin"])
    expect(alice.page.locator("#member-count")).to_have_text("5 people here")
    assert alice.errors == []
    alice.close()


def test_the_search_works_with_javascript_off(browser: Browser, crowded_server: Daphne) -> None:
    for name in ("Bob", "Carol", "Dave"):
        Visitor().join(crowded_server, name)
    alice = Person(browser, crowded_server, java_script_enabled=False)
    alice.page.goto(f"{crowded_server.url}/room/join/")
    alice.page.get_by_label("Your name").fill("Alice")
    alice.page.get_by_role("button", name="Join").click()
    alice.page.get_by_label("Find someone by name").fill("carol")
    alice.page.get_by_role("button", name="Search").click()
    expect(alice.page).to_have_url(f"{crowded_server.url}/room/?q=carol")
    expect(alice.page.locator("#search-results .member__name")).to_have_text(["Carol"])
    alice.close()
