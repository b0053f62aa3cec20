"""A room page in a test: its HTML as the view renders it, then every message its socket gets,
applied as the htmx WebSocket extension applies it (liveroom/testing/dom.py)."""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils.module_loading import import_string

from liveroom.rooms.models import Room
from liveroom.testing.dom import Document, Page


def room_url(room: str, page: str = "room") -> str:
    return Room(slug=room).url(page)


def join(client: Client, name: str, room: str = Room.DEFAULT_SLUG) -> Client:
    """`client` joins `room` as `name` through the join form (or renames itself there)."""
    response = client.post(room_url(room, "join"), {"name": name})
    if response.status_code != 302:
        raise AssertionError(f"joining {room!r} as {name!r}: {response.status_code}")
    return client


def origin() -> str:
    """An origin the socket's handshake accepts: the first plain host of ALLOWED_HOSTS."""
    hosts = [host for host in settings.ALLOWED_HOSTS if host not in {"*"} and host[0] != "."]
    return f"http://{hosts[0] if hosts else 'localhost'}"


def socket_headers(client: Client, page_origin: str | None = None) -> list[tuple[bytes, bytes]]:
    """What a browser on the page sends when it opens the socket: the origin (an allowed one,
    unless `page_origin` says) and the session cookie."""
    headers = [(b"origin", (page_origin or origin()).encode())]
    if (cookie := client.cookies.get(settings.SESSION_COOKIE_NAME)) is not None:
        jar = SimpleCookie()
        jar[settings.SESSION_COOKIE_NAME] = cookie.value
        headers.append((b"cookie", jar.output(header="", sep=";").strip().encode()))
    return headers


class RoomPage(Page):
    """One open room page. Open it with `await RoomPage.open(client)`; read it with `members()`,
    `text(selector)`, `select(selector)`; wait for what it should show with
    `await page.until(lambda page: ...)`; `await page.close()` when done."""

    def __init__(self, client: Client, html: str, socket: WebsocketCommunicator) -> None:
        super().__init__(html)
        self.client = client
        self.socket = socket
        self.messages: list[str] = []  # every message applied, in order
        self.close_code: int | None = None  # once the server closed the socket

    @classmethod
    async def open(
        cls, client: Client, room: str = Room.DEFAULT_SLUG, application: object = None
    ) -> "RoomPage":
        """Load the room page as `client` (a member) and open the socket it names, through
        the project's ASGI application (ASGI_APPLICATION unless `application` is given); the
        page is returned once it is live (it has had its first message)."""
        response = await sync_to_async(client.get)(room_url(room))
        if response.status_code != 200:
            raise AssertionError(f"the room page of {room!r}: {response.status_code} "
                                 f"{response.get('Location', '')}")  # fmt: skip
        html = response.content.decode()
        live = Document(html).select_one("[ws-connect]")
        if live is None:
            raise AssertionError("the room page names no socket (ws-connect)")
        app = application or import_string(settings.ASGI_APPLICATION)
        socket = WebsocketCommunicator(app, live.get("ws-connect"), headers=socket_headers(client))
        connected, _ = await socket.connect()
        if not connected:
            raise AssertionError("the room page's socket was refused")
        page = cls(client, html, socket)
        if "paused=1" not in (live.get("ws-connect") or ""):  # a paused page is sent nothing
            await page.until(lambda page: bool(page.messages), within=5)  # live from its first
        return page

    async def press(self, **values: str) -> None:
        """Send what the page's pause or spoken-announcement button sends over its socket
        (htmx's ws-send: the form's values as JSON), e.g. `await page.press(live="pause")`."""
        await self.socket.send_to(text_data=json.dumps(values))

    # Messages

    async def receive(self, within: float = 1) -> str | None:
        """Apply the socket's next message; None if the server closed the socket."""
        output = await self.socket.receive_output(within)
        if output["type"] == "websocket.close":
            self.close_code = output.get("code", 1000)
            return None
        text = output.get("text", "")
        self.document.apply(text)
        self.messages.append(text)
        return text

    async def until(
        self, check: Callable[["RoomPage"], bool | Awaitable[bool]], within: float = 5
    ) -> "RoomPage":
        """Apply messages until `check(page)` holds; AssertionError with what the page showed
        if it does not within `within` seconds."""
        deadline = time.monotonic() + within
        while not await _holds(check, self):
            left = deadline - time.monotonic()
            if left <= 0 or self.close_code is not None:
                raise AssertionError(
                    f"not shown within {within} s: members {self.members()}, "
                    f"errors {self.errors}, closed {self.close_code}, "
                    f"last message {self.messages[-1:] or None}"
                )
            try:
                await self.receive(within=left)
            except TimeoutError:
                continue
        return self

    async def close(self) -> None:
        if self.close_code is None:
            await self.socket.disconnect()


async def _holds(check: Callable[[RoomPage], bool | Awaitable[bool]], page: RoomPage) -> bool:
    result = check(page)
    if asyncio.iscoroutine(result):
        result = await result
    return bool(result)


# The wire, one level down: for tests of the socket's own protocol (frames, close codes).


async def new_member(name: str, room: str = Room.DEFAULT_SLUG) -> Client:
    """A new browser that has joined `room` as `name`."""
    return await sync_to_async(join)(Client(), name, room)


async def open_socket(
    client: Client,
    path: str = "/ws/room/",
    page_origin: str | None = None,
    application: object = None,
) -> WebsocketCommunicator:
    """A socket to `path` as `client`'s browser opens it (no page loaded: the first thing it
    gets is a whole snapshot, `receive_snapshot`); AssertionError if it is refused."""
    app = application or import_string(settings.ASGI_APPLICATION)
    socket = WebsocketCommunicator(app, path, headers=socket_headers(client, page_origin))
    connected, _ = await socket.connect()
    assert connected, f"the socket to {path} was refused"
    return socket


async def receive_snapshot(socket: WebsocketCommunicator, within: float = 1) -> str:
    """A snapshot as the server sends it to a socket whose page it did not render: two frames,
    the room's list, then the page's own part; both, as one string."""
    members = await socket.receive_from(timeout=within)
    assert members.startswith('<ul id="members"'), members[:100]
    return members + await socket.receive_from(timeout=within)


async def open_room_socket(
    name: str, room: str = Room.DEFAULT_SLUG
) -> tuple[Client, WebsocketCommunicator]:
    """A new member of `room` with a socket that has had its first snapshot."""
    client = await new_member(name, room)
    socket = await open_socket(client, Room(slug=room).socket_path)
    await receive_snapshot(socket)
    return client, socket
