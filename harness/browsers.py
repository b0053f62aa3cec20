"""People in Chromium (Debian's, driven by Playwright) using a real server."""

import shutil

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from harness.servers import Daphne

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"needs Chromium at {CHROMIUM}"
)


class Person:
    """One browser context: its own cookies, so its own session."""

    def __init__(self, browser: Browser, server: Daphne, **options):
        self.server = server
        self.context: BrowserContext = browser.new_context(
            viewport={"width": 480, "height": 640}, **options
        )
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def join(self, name: str, room: str = "/room/") -> None:
        self.page.goto(f"{self.server.url}{room}join/")
        self.page.get_by_label("Your name").fill(name)
        with (
            self.page.expect_websocket() as socket_info,
            self.page.expect_response(f"{self.server.url}{room}") as room_response,
        ):
            self.page.get_by_role("button", name="Join").click()
        self.room_headers = room_response.value.headers
        # The first frame is the snapshot: from here on the page is live.
        socket_info.value.expect_event("framereceived")
        expect(self.page).to_have_url(f"{self.server.url}{room}")

    def open_tab(self, room: str = "/room/") -> Page:
        """Another tab of the same browser (the same session) on the room page, once live."""
        tab = self.context.new_page()
        with tab.expect_websocket() as socket_info:
            tab.goto(f"{self.server.url}{room}")
        socket_info.value.expect_event("framereceived")
        return tab

    def presence_of(self, name: str):
        return self.page.locator(".member", has_text=name).locator(".presence")

    def members(self):
        return self.page.locator("#members .member__name")

    def close(self) -> None:
        self.context.close()
