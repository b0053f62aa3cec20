"""liveroom's daphne (liveroom/server/): each extension checked on a real server, so that one
which silently stopped applying after an upgrade fails here. The server runs tests/probe_app.py,
a bare ASGI app that reports on its own socket, started the way liveroom is."""

import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from harness.servers import ROOT, Daphne, Visitor, free_port, held_listener, read_snapshot
from harness.waiting import eventually
from liveroom.server.server import GC_YOUNG_THRESHOLD, LISTEN_BACKLOG, with_backlog


def probe_server(tmp_path: Path, listener: socket.socket | None = None, **env: str) -> Daphne:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | env
    server = Daphne(env, tmp_path / "probe.log", listener=listener)
    server.command = [*server.command, "tests.probe_app:application"]
    return server


@pytest.fixture
def probe(tmp_path: Path):
    # No bound on unsent bytes: the order test fills every buffer on purpose.
    server = probe_server(tmp_path, LIVEROOM_SOCKET_BACKLOG_BYTES="0")
    yield server.start()
    server.stop()


def connect(server: Daphne, cookie: str = "probe=none", open_timeout: float = 5, **options):
    return websockets.sync.client.connect(
        f"ws://127.0.0.1:{server.port}/",
        additional_headers={"Cookie": cookie},
        open_timeout=open_timeout,
        **options,
    )


def close_code(socket, timeout: float = 5) -> int | None:
    try:
        while True:
            socket.recv(timeout=timeout)
    except ConnectionClosed:
        return socket.close_code


def test_a_socket_keeps_no_handshake_and_no_http_producer(probe: Daphne) -> None:
    marker = uuid.uuid4().hex
    with connect(probe, cookie=f"probe={marker}") as socket:
        time.sleep(1.5)  # daphne forgets the upgraded HTTP request at its next check (every 1 s)
        socket.send("inspect")
        report = json.loads(socket.recv(timeout=5))
    assert report["raw_socket"]
    assert report["producer"] == "None"  # Twisted's HTTP channel and request let go
    assert report["holders"] == []  # no copy of the request's headers anywhere in the server


def test_frames_keep_their_order_when_the_kernel_buffer_is_full(probe: Daphne) -> None:
    count, size = 150, 64 * 1024  # 19 MiB in all: far more than the socket buffers hold
    # A client that reads only 4 frames ahead: the rest waits in the kernel, then the server.
    with connect(probe, max_queue=4, max_size=2 * size) as socket:
        socket.send(f"flood {count} {size}")
        time.sleep(1.5)  # both bursts written while nothing is read
        numbers = []
        for _ in range(2 * count):
            frame = socket.recv(timeout=10)
            assert len(frame) == size
            numbers.append(int(frame[:8]))
    assert numbers == list(range(2 * count))


def test_a_socket_that_does_not_read_is_dropped_once_its_backlog_passes_the_limit(
    tmp_path: Path,
) -> None:
    server = probe_server(tmp_path).start()  # the default limit, 1 MiB
    try:
        tiny = socket.socket()
        tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing
        tiny.connect(("127.0.0.1", server.port))
        with connect(server, sock=tiny, max_size=None) as flooded, connect(server) as other:
            flooded.send("flood 100 65536")  # 12.5 MiB for a client that never reads
            eventually(lambda: "Socket dropped" in server.log())
            other.send("close 1000")  # the process goes on serving the others
            assert close_code(other) == 1000
        assert "over the limit of 1048576 (a client that does not read)" in server.log()
        assert server.log().count("Socket dropped") == 1
    finally:
        server.stop()


def raw_request(server: Daphne, request: bytes, *, pause: float = 0) -> bytes:
    """Send `request` (a byte at a time, `pause` seconds apart, if `pause`); the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as connection:
        for byte in [request[i : i + 1] for i in range(len(request))] if pause else [request]:
            if select.select([connection], [], [], pause)[0]:
                break  # the server answered: stop sending, read it
            connection.sendall(byte)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def test_the_listen_queue_holds_a_crowd_of_reconnecting_pages(probe: Daphne) -> None:
    # For a listening socket, ss shows the queue's size as Send-Q.
    listening = subprocess.run(
        ["ss", "-ltnH", f"sport = :{probe.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert int(listening[2]) == min(LISTEN_BACKLOG, somaxconn) > 50  # Twisted's default: 50
    assert (
        with_backlog("unix:/run/liveroom.sock")
        == f"unix:/run/liveroom.sock:backlog={LISTEN_BACKLOG}"
    )
    assert with_backlog("tcp:port=80:backlog=10") == "tcp:port=80:backlog=10"  # named: kept
    assert with_backlog("fd:fileno=3") == "fd:fileno=3"  # an inherited socket: its own


def test_requests_are_taken_on_a_bounded_number_at_a_time(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = probe_server(
        tmp_path,
        LIVEROOM_REQUESTS_AT_ONCE="2",
        LIVEROOM_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
    ).start()
    address = ("127.0.0.1", server.port)
    try:
        # Open sockets (handshakes answered) and connections still sending their headers take
        # no place.
        with connect(server), connect(server), socket.create_connection(address) as trickling:
            trickling.sendall(b"GET / HTTP/1.1\r\n")
            responses = []
            for _ in "ab":  # one after the other: each is accepted on its own
                connection = http.client.HTTPConnection(*address, timeout=1)
                connection.request("GET", "/slow")
                responses.append(connection.getresponse())  # its head, at once
                connection.sock.settimeout(5)  # for the rest of the body, 2 s later
            # Two requests under way: the next connection waits in the listen queue, and is
            # served once they are done.
            with socket.create_connection(address, timeout=1) as waiting:
                waiting.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                with pytest.raises(TimeoutError):
                    waiting.recv(1024)
                assert [response.read() for response in responses] == [b"ready", b"ready"]
                waiting.settimeout(5)
                assert waiting.recv(1024).startswith(b"HTTP/1.1 200 OK\r\n")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        figures = dict(re.findall(r"^(liveroom_server_\w+) (\S+)$", metrics.read().decode(), re.M))
        assert float(figures["liveroom_server_accept_pauses_total"]) >= 1  # once, at least
        assert figures["liveroom_server_requests_under_way"] == "0.0"
    finally:
        server.stop()


def test_a_header_line_over_16_kib_gets_431(probe: Daphne) -> None:
    cookie = b"Cookie: probe=" + b"x" * 16384 + b"\r\n"
    answer = raw_request(probe, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + cookie + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_headers_that_trickle_in_get_408_after_the_deadline(tmp_path: Path) -> None:
    server = probe_server(tmp_path, LIVEROOM_HEADER_SECONDS="1").start()
    try:
        started = time.monotonic()
        answer = raw_request(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n" * 20, pause=0.1)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert time.monotonic() - started < 3
        # A kept-alive connection may idle between requests: the deadline starts with a request.
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for _ in range(2):
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"ready"
            time.sleep(1.5)
        connection.close()
    finally:
        server.stop()


@pytest.mark.parametrize("code", [1008, 1012, 1013, 4403])
def test_close_codes_reach_the_client_as_sent(probe: Daphne, code: int) -> None:
    with connect(probe) as socket:
        socket.send(f"close {code}")
        assert close_code(socket) == code


def test_sigterm_tells_every_socket_to_reconnect_and_exits(probe: Daphne) -> None:
    sockets = [connect(probe).__enter__() for _ in range(3)]
    started = time.monotonic()
    probe.process.send_signal(signal.SIGTERM)
    assert [close_code(socket) for socket in sockets] == [1012, 1012, 1012]
    probe.process.wait(timeout=5)
    assert time.monotonic() - started < 5
    assert "Draining: 3 open sockets told to reconnect (1012)" in probe.log()


def test_a_restart_on_a_held_socket_refuses_no_one(tmp_path: Path) -> None:
    """As under a systemd socket unit: the socket outlives the server (`--fd`), so a page that
    reconnects while no server runs waits in the listen queue for the replacement."""
    listener = held_listener()
    old = probe_server(tmp_path, listener).start()
    try:
        with connect(old) as page:
            old.process.send_signal(signal.SIGTERM)
            assert close_code(page) == 1012
        old.process.wait(timeout=5)
        with ThreadPoolExecutor() as pool:
            # Nothing runs: the kernel holds it (as long as the next server takes to start).
            reconnecting = pool.submit(connect, old, open_timeout=30)
            time.sleep(0.5)
            assert not reconnecting.done()
            new = probe_server(tmp_path, listener).start()
            try:
                with reconnecting.result(timeout=30) as page:
                    page.send("close 1000")
                    assert close_code(page) == 1000
            finally:
                new.stop()
    finally:
        old.stop()
        listener.close()


def test_requests_see_the_server_draining_after_sigterm(probe: Daphne) -> None:
    """What /readyz reads: 503 from the first request after SIGTERM, so a proxy that asks on a
    kept-alive connection moves traffic away."""
    before = http.client.HTTPConnection("127.0.0.1", probe.port, timeout=5)
    before.request("GET", "/status")
    assert json.loads(before.getresponse().read()) == {"draining": False}
    slow = http.client.HTTPConnection("127.0.0.1", probe.port, timeout=5)
    slow.request("GET", "/slow")
    in_flight = slow.getresponse()  # its head is out: the drain must wait for the rest
    probe.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    before.request("GET", "/status")  # the kept-alive connection, while the drain lasts
    response = before.getresponse()
    assert json.loads(response.read()) == {"draining": True}
    assert response.getheader("Connection") == "close"
    assert in_flight.read() == b"ready"  # finished, not cut
    probe.process.wait(timeout=5)
    assert "Stopped" in probe.log()


def test_metrics_are_served_on_their_own_port_and_probes_stay_out_of_the_access_log(
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    server = probe_server(tmp_path, LIVEROOM_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}").start()
    try:
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert b"process_cpu_seconds_total" in metrics.read()
        site = urllib.request.urlopen(f"{server.url}/metrics", timeout=5).read()
        assert site == b"ready"  # the site's own port knows nothing of metrics
        for path in ("/healthz", "/readyz", "/healthz", "/elsewhere"):
            urllib.request.urlopen(f"{server.url}{path}", timeout=5).read()
    finally:
        server.stop()
    log = server.log()
    assert '"GET /elsewhere" 200' in log
    assert '"GET /healthz"' not in log
    assert '"GET /readyz"' not in log


def test_a_metrics_address_that_is_not_one_stops_the_server_with_a_message() -> None:
    env = os.environ | {"LIVEROOM_METRICS_ADDRESS": "localhost:http"}
    result = subprocess.run(
        [sys.executable, "-m", "liveroom.server", "-p", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "LIVEROOM_METRICS_ADDRESS must be host:port or a port, got 'localhost:http'" in (
        result.stderr
    )


def run_python(code: str) -> str:
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_the_server_keeps_what_it_loaded_out_of_collections_and_formats_nothing_unlogged(
    probe: Daphne,
) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{probe.port}/process", timeout=5) as answer:
        process = json.loads(answer.read())
    assert process["frozen"] > 10_000  # the modules, the settings, the application
    assert process["young_threshold"] == GC_YOUNG_THRESHOLD
    assert process["configuration_formatted_by"] == "_connection_debug_format"


def test_autobahns_configuration_is_formatted_at_log_level_debug_only() -> None:
    output = run_python(
        "import txaio; txaio.use_twisted()\n"
        "from liveroom.server.server import _connection_debug_format as formatted\n"
        "print(formatted([('openHandshakeTimeout', 5)]))\n"
        "txaio.set_global_log_level('debug')\n"
        "print(formatted([('openHandshakeTimeout', 5)]))\n"
    )
    assert output.splitlines() == [
        "(formatted at log level debug)",
        "[('openHandshakeTimeout', 5)]",
    ]


def test_twisted_parses_no_post_form_daphne_would_not_read() -> None:
    from twisted.internet.testing import StringTransport
    from twisted.web import http

    from liveroom.server.http_protocol import LiveroomHTTPChannel

    seen = []

    class Recorded(http.Request):
        def process(self) -> None:
            seen.append(self.args)
            self.finish()

    channel = LiveroomHTTPChannel()
    channel.requestFactory = Recorded  # as daphne sets its WebRequest
    channel.makeConnection(StringTransport())
    channel.dataReceived(
        b"POST /room/join/?next=1 HTTP/1.1\r\nHost: a\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\n"
        b"name=Alice"
    )
    assert seen == [{b"next": [b"1"]}]  # the query's arguments; the body left as it came
    channel.connectionLost(None)


def test_twisted_formats_no_access_log_line_when_daphne_sends_its_log_nowhere() -> None:
    from daphne.http_protocol import HTTPFactory

    from liveroom.server.server import LiveroomServer

    for verbosity, formatted in [(1, False), (2, True)]:
        server = LiveroomServer(None, endpoints=["tcp:port=0"], verbosity=verbosity)
        server.http_factory = HTTPFactory(server)
        server.http_factory.startFactory()
        try:
            server.http_factory.log(object())  # Twisted's formatter would read the request
        except AttributeError:
            assert formatted
        else:
            assert not formatted
        finally:
            server.http_factory.stopFactory()


def test_untested_library_versions_get_stock_daphne_and_a_log_line() -> None:
    output = run_python(
        "import logging; logging.basicConfig()\n"
        "from liveroom.server.versions import TESTED_WITH, raw_sockets_supported\n"
        "print(raw_sockets_supported(TESTED_WITH))\n"
        "print(raw_sockets_supported(TESTED_WITH | {'twisted': '99.1.0'}))\n"
    )
    assert output.startswith("True\nFalse\n")
    assert "Raw sockets off: tested with daphne 4.2.3" in output
    assert "found daphne 4.2.3, twisted 99.1.0" in output


def test_the_installed_versions_are_the_tested_ones() -> None:
    # requirements.txt pins them; a lock upgrade that moves one fails here first.
    output = run_python(
        "from liveroom.server.versions import TESTED_WITH, installed_versions\n"
        "print(installed_versions() == TESTED_WITH)\n"
    )
    assert output.strip() == "True"


def test_importing_the_app_changes_no_library_class() -> None:
    # The extensions are subclasses, used only by `python -m liveroom.server`.
    output = run_python(
        "import sys, liveroom.asgi\n"
        "from daphne.server import Server\n"
        "from daphne.ws_protocol import WebSocketProtocol\n"
        "from twisted.internet import tcp\n"
        "print('liveroom.server' in sys.modules,\n"
        "      WebSocketProtocol.serverClose.__module__, Server.create_application.__module__,\n"
        "      tcp.Connection.write.__module__)\n"
    )
    loaded, *modules = output.split()[:4]
    assert loaded == "False"
    assert modules[:2] == ["daphne.ws_protocol", "daphne.server"]
    assert modules[2].startswith("twisted.internet.")


def test_liveroom_pages_get_the_servers_raw_socket(server_env, start_server) -> None:
    # The server and the application name the extension once (liveroom/wire.py); if they
    # drifted, pages would still work, a frame per page, and only this would tell.
    metrics_port = free_port()
    metrics_address = {"LIVEROOM_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}"}
    server = start_server(env=server_env | metrics_address)
    alice = Visitor()
    alice.join(server, "Alice")
    with alice.open_socket(server) as page:
        snapshot = read_snapshot(page)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    text = metrics.read().decode()
    figures = dict(re.findall(r'^liveroom_page_sockets_total\{kind="(\w+)"\} (\S+)$',
                              text, re.M))  # fmt: skip
    assert figures == {"raw": "1.0", "asgi": "0.0"}
    # What the raw socket wrote is counted: the snapshot's two frames, each with its header.
    written = float(re.findall(r"^liveroom_page_bytes_total (\S+)$", text, re.M)[0])
    assert len(snapshot.encode()) + 4 <= written
