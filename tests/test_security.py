"""Hostile input, hostile pages and careless users: each gets a clear answer, nobody gets in."""

import base64
import configparser
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from ruamel.yaml import YAML

from harness.servers import ROOT, SERVER_COMMAND, Visitor, read_snapshot
from liveroom.asgi import application
from liveroom.models import Member
from liveroom.server.server import LISTEN_BACKLOG
from liveroom.testing import (
    join,
    new_member,
    open_room_socket,
    open_socket,
    receive_snapshot,
    socket_headers,
)
from liveroom.wire import POLICY_VIOLATION

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    '<b hx-get="/x" hx-trigger="load">x</b>',
]


# --- Forms -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["missing", "bad"])
def test_a_form_without_a_valid_csrf_token_is_refused(token: str | None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/room/join/")
    data = (
        {"name": "Mallory"} if token is None else {"name": "Mallory", "csrfmiddlewaretoken": token}
    )
    response = client.post("/room/join/", data)
    assert response.status_code == 403
    assert "That form could not be accepted" in response.content.decode()
    assert not Member.objects.exists()


@pytest.mark.django_db
def test_a_huge_form_body_is_refused_by_django_limits(client: Client) -> None:
    response = client.post(
        "/room/join/", {"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}
    )
    assert response.status_code == 400
    assert "Nothing was changed." in response.content.decode()
    assert not Member.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_markup_in_a_name_is_text_in_the_page_and_in_every_fragment(name: str) -> None:
    _, socket = await open_room_socket("Alice")

    mallory = Client()
    await sync_to_async(join)(mallory, name)
    joined = await socket.receive_from()
    await sync_to_async(join)(mallory, name + "!")
    renamed = await socket.receive_from()
    page = (await sync_to_async(mallory.get)("/room/")).content.decode()
    await socket.disconnect()

    for html in (joined, renamed, page):
        assert "<script>alert" not in html
        assert "<img" not in html
        assert 'hx-get="/x"' not in html  # the name's attribute, as markup
        assert "&lt;" in html


@pytest.mark.django_db
def test_session_cookie_is_http_only_and_same_site_lax(client: Client) -> None:
    join(client, "Alice")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_double_submit_from_one_session_keeps_one_membership(start_server) -> None:
    server = start_server()
    alice = Visitor()
    assert alice.join(server, "Alice").status_code == 302
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda i: alice.join(server, f"Alice {i % 2}").status_code,
                                 range(10)))  # fmt: skip
    assert statuses == [302] * 10
    page = alice.http.get(f"{server.url}/room/", timeout=10).text
    assert "1 person here" in page
    assert "Traceback" not in server.log()


# --- Rate limits -------------------------------------------------------------------------


@pytest.mark.django_db
def test_joins_over_the_session_limit_get_429_and_change_nothing(settings) -> None:
    settings.RATE_LIMIT_PER_SESSION = (3, 3600)  # an hour: no window ends mid-test
    client = Client(REMOTE_ADDR="198.51.100.1")
    for name in ("Alice", "Alicia", "Ali"):
        join(client, name)
    response = client.post("/room/join/", {"name": "Al"})
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 3601
    assert "Please try again in" in response.content.decode()
    assert Member.objects.get().name == "Ali"
    assert client.post("/room/leave/").status_code == 429
    assert Member.objects.exists()


@pytest.mark.django_db
def test_joins_over_the_address_limit_get_429(settings) -> None:
    settings.RATE_LIMIT_PER_ADDRESS = (2, 3600)
    # Counters outlive a run in Redis: addresses of this run's own.
    address, other_address = (f"2001:db8::{secrets.token_hex(2)}:{i}" for i in (1, 2))
    join(Client(REMOTE_ADDR=address), "Alice")
    join(Client(REMOTE_ADDR=address), "Bob")
    response = Client(REMOTE_ADDR=address).post("/room/join/", {"name": "Carol"})
    assert response.status_code == 429
    assert Client(REMOTE_ADDR=other_address).post("/room/join/", {"name": "Dan"}).status_code == 302
    assert sorted(Member.objects.values_list("name", flat=True)) == ["Alice", "Bob", "Dan"]


@pytest.mark.services
def test_the_rate_limit_holds_across_server_processes(server_env, start_server) -> None:
    env = {**server_env, "RATE_LIMIT_PER_SESSION": "4/3600",
           "LIVEROOM_CHANNEL_PREFIX": "ratelimit-" + secrets.token_hex(4)}  # fmt: skip
    first, second = start_server(env=env), start_server(env=env)
    alice = Visitor()
    statuses = [alice.join(server, f"Alice {i}").status_code
                for i, server in enumerate([first, second] * 3)]  # fmt: skip
    assert statuses == [302, 302, 302, 302, 429, 429]


# --- The WebSocket -----------------------------------------------------------------------


def test_a_frame_over_the_size_limit_is_closed_with_1009(start_server) -> None:
    server = start_server()
    alice = Visitor()
    alice.join(server, "Alice")
    with alice.open_socket(server) as socket:
        read_snapshot(socket)
        socket.send("x" * 65536)
        # Closed at once with "message too big"; the frame never reaches the app.
        with pytest.raises(websockets.ConnectionClosed):
            socket.recv(timeout=10)
    assert socket.close_code == 1009
    assert "Exception inside application" not in server.log()


class RawSocket:
    """A WebSocket client that sends whatever frames it is told to, valid or not."""

    def __init__(self, server, visitor: Visitor) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        cookie = "; ".join(f"{name}={value}" for name, value in visitor.http.cookies.items())
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall(
            f"GET /ws/room/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\nCookie: {cookie}\r\n\r\n"
            .encode()
        )  # fmt: skip
        self.received = b""
        while b"\r\n\r\n" not in self.received:
            self.received += self.sock.recv(65536)
        assert self.received.startswith(b"HTTP/1.1 101"), self.received[:100]

    def send_frame(self, payload: bytes, *, opcode: int = 1, fin: bool = True) -> None:
        mask = secrets.token_bytes(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        assert len(payload) < 126
        self.sock.sendall(bytes([fin << 7 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close_code(self) -> int:
        """The code of the server's close frame (the frames before it are skipped)."""
        data = self.received.split(b"\r\n\r\n", 1)[1]
        while True:
            while len(data) < 2 or len(data) < header_and_length(data)[0]:
                chunk = self.sock.recv(65536)
                assert chunk, "the connection ended without a close frame"
                data += chunk
            size, length = header_and_length(data)
            if data[0] & 0x0F == 8:
                return int.from_bytes(data[size - length : size - length + 2])
            data = data[size:]


def header_and_length(data: bytes) -> tuple[int, int]:
    """(the whole frame's size, its payload's length) of the server frame `data` starts with."""
    length = data[1] & 0x7F
    if length == 126:
        return (4 + int.from_bytes(data[2:4]) if len(data) >= 4 else 4), int.from_bytes(data[2:4])
    if length == 127:
        return (10 + int.from_bytes(data[2:10]) if len(data) >= 10 else 10), int.from_bytes(
            data[2:10]
        )
    return 2 + length, length


def test_sockets_to_unknown_paths_are_refused_without_a_traceback(start_server) -> None:
    server = start_server()
    for path in ["/ws/nope/", "/ws/room/a/b/c/", "/anything"] * 30:
        with pytest.raises(websockets.InvalidStatus) as refused:
            websockets.sync.client.connect(f"ws://127.0.0.1:{server.port}{path}", origin=server.url)
        assert refused.value.response.status_code == 403
    log = server.log()
    assert "Traceback" not in log
    assert "No route found" not in log
    assert log.count("to unknown paths") == 1  # one line a minute, however many
    assert "Refused 1 socket(s) to unknown paths in the last minute, e.g. '/ws/nope/'" in log


def test_invalid_utf8_in_a_text_frame_is_closed_with_1007(start_server) -> None:
    server = start_server()
    alice = Visitor()
    alice.join(server, "Alice")
    raw = RawSocket(server, alice)
    raw.send_frame(b"\xff\xfe not text")
    assert raw.close_code() == 1007


def test_a_client_trickling_message_fragments_is_closed_at_the_first(start_server) -> None:
    """A page never sends: a first fragment that never completes closes the socket as a whole
    message does (it would otherwise count as activity forever, and nothing would read)."""
    server = start_server()
    alice = Visitor()
    alice.join(server, "Alice")
    raw = RawSocket(server, alice)
    raw.send_frame(b"", fin=False)
    assert raw.close_code() == POLICY_VIOLATION


def test_a_snapshot_bigger_than_a_client_frame_reaches_the_page(start_server) -> None:
    server = start_server()
    for i in range(60):
        Visitor().join(server, f"Guest number {i}")
    alice = Visitor()
    alice.join(server, "Alice")
    with alice.open_socket(server) as socket:
        snapshot = read_snapshot(socket)
    assert len(snapshot.encode()) > 4096
    assert "61 people here" in snapshot


def send_until_closed(socket) -> None:
    # A burst the kernel takes at once, then a read: a client that went on writing after the
    # server's close frame could be reset before it read it (1006, not 1008).
    for _ in range(100):
        socket.send("spam")
    socket.recv(timeout=10)


def test_a_flood_of_frames_closes_that_socket_and_spares_the_others(start_server) -> None:
    server = start_server()
    alice, mallory = Visitor(), Visitor()
    alice.join(server, "Alice")
    mallory.join(server, "Mallory")
    with alice.open_socket(server) as watcher, mallory.open_socket(server) as flooder:
        read_snapshot(watcher)
        read_snapshot(flooder)
        with pytest.raises(websockets.ConnectionClosed):
            send_until_closed(flooder)
        assert flooder.close_code == POLICY_VIOLATION

        started = time.monotonic()
        Visitor().join(server, "Bob")
        assert "Bob" in watcher.recv(timeout=10)
        assert time.monotonic() - started < 5


def test_every_start_command_is_the_projects_own_with_its_limits() -> None:
    # The limits live in liveroom/server/__main__.py; everything that starts a server uses it.
    assert "-m liveroom.server" in (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", "")
    docker_command = json.loads(re.search(r"^CMD (.*)$", dockerfile, re.MULTILINE)[1])
    compose_command = YAML(typ="safe").load((ROOT / "compose.yaml").read_text())["services"]["web"][
        "command"
    ]
    systemd = unit("liveroom.service")
    systemd_command = systemd["Service"]["ExecStart"].split()
    systemd_command[0] = "python"  # the virtualenv's
    for command in (docker_command, compose_command, systemd_command):
        assert tuple(command[:3]) == SERVER_COMMAND
        assert "daphne" not in command
    # systemd hands the socket of liveroom.socket to the server as file descriptor 3, with the
    # listen queue the server gives itself when it binds.
    assert systemd_command[3:] == ["--fd", "3"]
    assert systemd["Unit"]["Requires"] == "liveroom.socket"
    assert int(unit("liveroom.socket")["Socket"]["Backlog"]) == LISTEN_BACKLOG


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string((ROOT / "deploy" / "systemd" / name).read_text())
    return parser


# --- Production settings -----------------------------------------------------------------

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "room.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://room.example.com",
    "HTTPS": "1",
    "HSTS_PRELOAD": "1",
}


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "liveroom.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=environment, capture_output=True, text=True,
    )  # fmt: skip


def test_the_deploy_check_passes_with_production_settings() -> None:
    result = deploy_check(**PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deploy_check_fails_when_https_is_not_configured() -> None:
    result = deploy_check(**{**PRODUCTION, "HTTPS": "0"})
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stdout + result.stderr


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy(alice: Client) -> None:
    response = alice.get("/room/")
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)[1]
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    html = response.content.decode()
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts
    assert all(f'nonce="{nonce}"' in tag for tag in scripts)
    assert '"allowEval": false' in html
    assert '"includeIndicatorStyles": false' in html
    assert '"allowScriptTags": false' in html


# --- Sockets per member and per address --------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_member_over_the_socket_limit_is_refused_and_logged_once(settings, caplog) -> None:
    settings.LIVEROOM_SOCKETS_PER_MEMBER = 3
    alice, first = await open_room_socket("Alice")
    others = [await open_socket(alice) for _ in range(2)]
    for page in others:
        await receive_snapshot(page)
    refused = [await open_socket(alice) for _ in range(2)]  # the 4th and 5th
    for page in refused:
        assert await page.receive_output() == {"type": "websocket.close", "code": 1008}
    assert caplog.text.count("Socket refused: member") == 1
    _, bob = await open_room_socket("Bob")  # someone else is not affected
    await first.disconnect()  # one of Alice's closes: she may open another
    again = await open_socket(alice)
    await receive_snapshot(again)
    for page in [*others, bob, again]:
        await page.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_address_over_the_socket_limit_is_refused(settings) -> None:
    settings.LIVEROOM_SOCKETS_PER_ADDRESS = 2
    members = [await new_member(f"Guest {number}") for number in range(3)]

    async def from_address(client: Client, address: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(
            application, "/ws/room/", headers=socket_headers(client)
        )
        communicator.scope["client"] = (address, 50000)
        assert (await communicator.connect())[0]
        return communicator

    shared = [await from_address(client, "203.0.113.7") for client in members]
    assert (await shared[2].receive_output())["code"] == 1008
    for page in shared[:2]:
        await receive_snapshot(page)
    elsewhere = await from_address(members[2], "198.51.100.1")
    await receive_snapshot(elsewhere)
    for page in [*shared[:2], elsewhere]:
        await page.disconnect()
