"""Faults: Redis and PostgreSQL going away, servers dying. The database is the truth: whatever
fails, members stay as saved and every open page ends up showing the database's list."""

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
import websockets
from playwright.sync_api import Browser, expect

from harness.browsers import Person, needs_chromium
from harness.faults import PrivateRedis, TcpProxy
from harness.servers import Daphne, Visitor, read_snapshot
from harness.waiting import eventually
from liveroom.wire import SERVICE_RESTART, TRY_AGAIN_LATER

RETRY_CODES = {1006, 1011, SERVICE_RESTART, TRY_AGAIN_LATER}  # what htmx reconnects after
# What a server logs when it tells a page to retry later because Redis is gone.
REDIS_GONE_TOLD = re.compile(r"event=redis_lost|Channel layer unavailable, page asked to retry")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.kill()


def closed_code(socket) -> int:
    """Wait for the server to close `socket`; return its close code (1006 if none was sent)."""
    try:
        while True:
            socket.recv(timeout=15)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006


def reconnect(visitor: Visitor, server: Daphne, timeout: float = 20) -> tuple:
    """Reopen the room socket the way htmx does, retrying until a snapshot arrives."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while time.monotonic() < deadline:
        socket = visitor.open_socket(server).__enter__()
        try:
            return socket, read_snapshot(socket)
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            assert code in RETRY_CODES, f"closed with {code}, which htmx does not retry"
        time.sleep(delay)
        delay = min(delay * 2, 2)
    raise AssertionError("no snapshot before the deadline")


def shown_live(visitor: Visitor, server: Daphne, socket, text: str, within: float = 20):
    """Wait until `text` reaches the page of `socket`: in a message, or, if the server asks the
    page to reconnect (it does when it finds Redis was replaced, as messages may have been lost
    meanwhile), in the snapshot after reconnecting as htmx does. Returns the open socket."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if text in socket.recv(timeout=max(0.1, deadline - time.monotonic())):
                return socket
        except TimeoutError:
            break
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            assert code in RETRY_CODES, f"closed with {code}, which htmx does not retry"
            socket, snapshot = reconnect(visitor, server)
            if text in snapshot:
                return socket
    socket.close()
    raise AssertionError(f"{text!r} not shown within {within} s")


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# --- Redis -------------------------------------------------------------------------------

pytestmark = pytest.mark.services


def test_redis_down_during_a_join(server_env, start_server, private_redis) -> None:
    server = start_server(env={**server_env, "REDIS_URL": private_redis.url})
    alice, bob, carol = Visitor(), Visitor(), Visitor()
    alice.join(server, "Alice")
    with alice.open_socket(server) as socket:
        read_snapshot(socket)
        private_redis.kill()

        response, seconds = timed(lambda: bob.join(server, "Bob"))
        assert response.status_code == 302
        assert response.headers["Location"] == "/room/"
        assert seconds < 3  # the broadcast gives up instead of hanging the request
        assert "Bob" in bob.http.get(f"{server.url}/room/", timeout=10).text  # saved

        assert closed_code(socket) == TRY_AGAIN_LATER  # the page is told to come back later
    # Bob's join (version 2) was skipped once; Alice's own, sent after her response, may have
    # been in flight when Redis went.
    assert len(re.findall(r"Broadcast skipped \(member \d+ joined, version 2;", server.log())) == 1

    private_redis.start()  # back on the same port; nothing is restarted on our side
    socket, snapshot = reconnect(alice, server)
    assert "Bob" in snapshot
    carol.join(server, "Carol")
    shown_live(alice, server, socket, "Carol").close()


def test_redis_restart_sends_pages_to_reconnect(server_env, start_server, private_redis) -> None:
    server = start_server(env={**server_env, "REDIS_URL": private_redis.url})
    alice = Visitor()
    alice.join(server, "Alice")
    with alice.open_socket(server) as socket:
        read_snapshot(socket)
        private_redis.restart()
        assert closed_code(socket) in {SERVICE_RESTART, TRY_AGAIN_LATER}
    Visitor().join(server, "Bob")
    socket, snapshot = reconnect(alice, server)
    with socket:
        assert "Bob" in snapshot
    assert "Exception" not in server.log()


def test_a_blackholed_redis_does_not_hang_requests(server_env, start_server, private_redis):
    proxy = TcpProxy(private_redis.port)
    server = start_server(env={**server_env, "REDIS_URL": proxy.url_for(private_redis.url)})
    alice = Visitor()
    alice.join(server, "Alice")
    proxy.blackhole()
    response, seconds = timed(lambda: Visitor().join(server, "Bob"))
    assert response.status_code == 302
    assert seconds < 4  # broadcast timeout (2 s) plus the rate limiter's (0.5 s)
    page, seconds = timed(lambda: alice.http.get(f"{server.url}/room/", timeout=10))
    assert "Bob" in page.text
    assert seconds < 1
    proxy.close()


@needs_chromium
@pytest.mark.browser
def test_a_page_shows_who_joined_while_redis_was_down(
    browser: Browser, server_env, start_server, private_redis
) -> None:
    server = start_server(env={**server_env, "REDIS_URL": private_redis.url})
    alice = Person(browser, server)
    alice.join("Alice")
    private_redis.kill()
    Visitor().join(server, "Bob")
    # The page is told to retry later: by the watch, which finds Redis gone, or, when the page
    # lost its socket before the watch looked, by its reconnection, which cannot join the layer.
    eventually(lambda: REDIS_GONE_TOLD.search(server.log()))
    private_redis.start()
    expect(alice.members()).to_have_text(["Alice", "Bob"], timeout=20_000)
    expect(alice.page.locator("#member-count")).to_have_text("2 people here")
    alice.close()


def test_connections_leave_nothing_behind_in_redis(server_env, start_server, private_redis):
    server = start_server(env={**server_env, "REDIS_URL": private_redis.url})
    client = redis.Redis(port=private_redis.port)
    alice = Visitor()
    alice.join(server, "Alice")
    with alice.open_socket(server) as socket:
        read_snapshot(socket)
        # Pages have no channels of their own: the process's room hub, and the room's group.
        assert len(client.pubsub_channels()) == 2
    for _ in range(100):
        socket = alice.open_socket(server).__enter__()
        read_snapshot(socket)
        socket.socket.close()  # the tab vanishes: no close handshake
    eventually(lambda: len(client.pubsub_channels()) <= 1)
    # The room's group went with its last page; the hub's own channel stays with the process.
    assert len(client.pubsub_channels()) == 1
    assert client.dbsize() <= 2  # rate-limit counters only


# --- PostgreSQL --------------------------------------------------------------------------


@pytest.mark.slow
def test_database_unreachable_gets_503_then_recovers(server_env, start_server) -> None:
    database_url = server_env["DATABASE_URL"]
    proxy = TcpProxy(int(database_url.rsplit(":", 1)[1].split("/")[0]))
    server = start_server(env={**server_env, "DATABASE_URL": proxy.url_for(database_url)})
    alice = Visitor()
    alice.join(server, "Alice")

    proxy.refuse()
    page, seconds = timed(lambda: alice.http.get(f"{server.url}/room/", timeout=30))
    assert page.status_code == 503
    assert "The room is unavailable for a moment" in page.text
    assert page.headers["Retry-After"] == "5"
    assert seconds < 7
    assert "Database unavailable: OperationalError" in server.log()  # the cause, for operators
    assert alice.join(server, "Alicia").status_code == 503
    with alice.open_socket(server) as socket:
        assert closed_code(socket) == TRY_AGAIN_LATER  # the snapshot query failed: retry

    proxy.forward()
    eventually(lambda: alice.http.get(f"{server.url}/room/", timeout=30).status_code == 200, 20)
    assert Visitor().join(server, "Bob").status_code == 302
    proxy.close()


# --- Servers -----------------------------------------------------------------------------


def test_sigterm_closes_sockets_with_service_restart(start_server) -> None:
    server = start_server()
    alice = Visitor()
    alice.join(server, "Alice")
    with alice.open_socket(server) as socket:
        read_snapshot(socket)
        server.process.send_signal(signal.SIGTERM)
        assert closed_code(socket) == SERVICE_RESTART


@pytest.mark.parametrize("run", range(3))
def test_sigterm_with_requests_in_flight_lets_them_finish_and_exits(start_server, run) -> None:
    # Django runs sync middleware in a thread that waits on the event loop: a request still
    # running when the loop stops would keep that thread, and so the process, waiting forever.
    server = start_server()
    answers: list[int | str] = []
    stop = threading.Event()

    def join_and_leave(worker: int) -> None:
        visitor = Visitor()
        while not stop.is_set():
            try:
                answers.append(visitor.join(server, f"Member {worker}").status_code)
                answers.append(visitor.leave(server).status_code)
            except requests.ConnectionError as error:
                # Refused once the server stopped listening; anything else cut a request off.
                answers.append("refused" if "Connection refused" in str(error) else str(error))
                return

    workers = [threading.Thread(target=join_and_leave, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    eventually(lambda: len(answers) >= 8)  # every worker is joining and leaving
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=10)
    exited = time.monotonic() - started
    stop.set()
    for worker in workers:
        worker.join()
    assert exited < 5
    assert 302 in answers
    assert set(answers) <= {302, "refused"}  # no request cut off half way


def test_a_killed_server_pages_reconnect_to_another_and_converge(start_server) -> None:
    first, second = start_server(), start_server()
    alice = Visitor()
    alice.join(first, "Alice")
    with alice.open_socket(first) as socket:
        read_snapshot(socket)
        first.process.kill()
        assert closed_code(socket) == 1006  # abrupt: htmx reconnects
    Visitor().join(second, "Bob")
    socket, snapshot = reconnect(alice, second)
    with socket:
        assert "Alice" in snapshot
        assert "Bob" in snapshot
        Visitor().join(second, "Carol")
        assert "Carol" in socket.recv(timeout=10)


def test_a_second_process_on_the_in_memory_layer_warns(server_env, start_server) -> None:
    env = {k: v for k, v in server_env.items() if k != "REDIS_URL"}
    first, second = start_server(env=env), start_server(env=env)
    warning = "Another server process already serves this database"
    assert warning not in first.log()
    assert warning in second.log()
