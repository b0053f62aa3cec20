"""The production topology without Docker: Debian's HAProxy with deploy/haproxy.cfg (the file
compose.yaml mounts) in front of several `python -m liveroom.server` processes, and room pages
that reconnect the way the htmx ws extension does."""

import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from harness.servers import ROOT, Daphne, free_port, page_socket, stop_process
from liveroom.testing.dom import Page

CONFIG = ROOT / "deploy" / "haproxy.cfg"
DISCOVERY = re.compile(r"^    server-template .*$", re.MULTILINE)
RECONNECT_AFTER = {1006, 1011, 1012, 1013}  # what the htmx ws extension retries


def haproxy_binary() -> str:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        raise RuntimeError("The proxy tests need HAProxy: apt-get install haproxy (make haproxy)")
    return binary


class HAProxy:
    """deploy/haproxy.cfg with its one discovery line replaced by a line per server port, and a
    runtime socket the tests read the servers' states from."""

    def __init__(self, work: Path, ports: list[int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = work / "haproxy.sock"
        servers = "\n".join(
            f"    server web{number} 127.0.0.1:{port} check" for number, port in enumerate(ports, 1)
        )
        config = CONFIG.read_text()
        assert len(DISCOVERY.findall(config)) == 1, "deploy/haproxy.cfg: one server-template line"
        config = DISCOVERY.sub(servers, config)
        config = config.replace(
            "\nglobal\n", f"\nglobal\n    stats socket {self.admin} level admin\n", 1
        )
        self.config = work / "haproxy.cfg"
        self.config.write_text(config)
        self.log_path = work / "haproxy.log"
        self.env = {
            "LIVEROOM_PROXY_ADDRESS": f"127.0.0.1:{self.port}",
            "PATH": "/usr/sbin:/usr/bin",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "HAProxy":
        check = subprocess.run(
            [haproxy_binary(), "-c", "-f", str(self.config)],
            env=self.env, capture_output=True, text=True,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [haproxy_binary(), "-db", "-f", str(self.config)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.wait_until(lambda states: all(state == "UP" for state in states.values()))
        return self

    def states(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it: "UP", "DOWN", ..."""
        with socket.socket(socket.AF_UNIX) as admin:
            admin.connect(str(self.admin))
            admin.sendall(b"show stat\n")
            answer = b""
            while chunk := admin.recv(65536):
                answer += chunk
        states = {}
        for line in answer.decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "web" and fields[1].startswith("web"):
                states[fields[1]] = fields[17].split()[0]
        return states

    def wait_until(self, condition, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"HAProxy exited:\n{self.log()}")
            try:
                if condition(self.states()):
                    return
            except OSError:  # not listening on its socket yet
                pass
            time.sleep(0.1)
        raise AssertionError(f"HAProxy never got there: {self.states()}\n{self.log()}")

    def stop(self) -> None:
        stop_process(self.process, signal.SIGUSR1, timeout=5)  # HAProxy's soft stop

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def replace(server: Daphne, log: Path) -> Daphne:
    """A new server on `server`'s port once the old one has let go of it."""
    for _ in range(200):
        try:
            return Daphne(server.env, log, command=server.command, port=server.port).start()
        except RuntimeError:
            time.sleep(0.05)
    raise RuntimeError(f"port {server.port} never came free")


class LivePage:
    """A member's room page, loaded through the proxy, its socket fed into an htmx model in a
    thread; reconnects after 1006/1011/1012/1013 with full-jitter backoff, to the same URL."""

    def __init__(self, http: requests.Session, base: str) -> None:
        self.http = http
        self.base = base
        self.page = Page()
        self.codes: list[int] = []
        self.shown_away: list[str] = []  # members with pages that this page showed as away
        self.watched: set[str] = set()  # dom ids that must never show as away
        self.stopped = threading.Event()
        self.socket = None
        response = http.get(f"{base}/room/", timeout=10)
        response.raise_for_status()
        html = response.text
        self.path = re.search(r'ws-connect="([^"]+)"', html)[1].replace("&amp;", "&")
        self.member_id = re.search(r'<li id="(member-\d+)" class="member member--you"', html)[1]
        self.page.apply(re.search(r'<ul id="members".*?</ul>', html, re.DOTALL)[0])
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        attempt = 0
        while not self.stopped.is_set():
            try:
                with page_socket(self.http, self.base, self.path, max_size=None) as socket:
                    self.socket = socket
                    attempt = 0
                    code = self.read(socket)
            except (OSError, InvalidHandshake, TimeoutError):
                code = 1006
            if self.stopped.is_set() or code not in RECONNECT_AFTER:
                return
            self.codes.append(code)
            attempt += 1
            time.sleep(random.uniform(0, min(64, 2 ** (attempt - 1))))

    def read(self, socket) -> int:
        try:
            for message in socket:
                with self.lock:
                    self.page.apply(message)
                    self.shown_away += [
                        dom_id
                        for dom_id in self.watched
                        if self.page.presence().get(dom_id) == "away"
                    ]
        except ConnectionClosed:
            pass
        return socket.close_code or 1006

    def names(self) -> list[str]:
        with self.lock:
            return self.page.members()

    def close(self) -> None:
        self.stopped.set()
        if self.socket is not None:
            self.socket.close()
        self.thread.join(timeout=5)


def browser_session() -> requests.Session:
    """An HTTP client that, as a browser does, sends a request once more on a new connection
    when the kept-alive one it used was closed before any answer came (a proxy's connection to
    a process that is stopping). Refusals, errors and slow answers still count."""
    http = requests.Session()
    once = Retry(total=1, connect=1, read=1, status=0, other=0, allowed_methods=None,
                 raise_on_status=False)  # fmt: skip
    http.mount("http://", HTTPAdapter(max_retries=once))
    return http


def join(http: requests.Session, base: str, name: str) -> int:
    http.get(f"{base}/room/join/", timeout=10)
    response = http.post(
        f"{base}/room/join/",
        data={"name": name, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
        headers={"Referer": f"{base}/room/join/", "Origin": base},
        allow_redirects=False,
        timeout=10,
    )
    return response.status_code


def leave(http: requests.Session, base: str) -> int:
    response = http.post(
        f"{base}/room/leave/",
        data={"csrfmiddlewaretoken": http.cookies["csrftoken"]},
        headers={"Referer": f"{base}/room/", "Origin": base},
        allow_redirects=False,
        timeout=10,
    )
    return response.status_code


def members_in_database(env: dict[str, str]) -> list[str]:
    """The default room's members, in list order, as the servers' database has them."""
    with psycopg.connect(env["DATABASE_URL"]) as connection:
        rows = connection.execute(
            "SELECT m.name FROM liveroom_member m JOIN liveroom_room r ON r.id = m.room_id"
            " WHERE r.slug = 'lobby' ORDER BY m.joined_at, m.id"
        ).fetchall()
    return [name for (name,) in rows]


__all__ = ["ROOT", "HAProxy", "LivePage", "join", "leave", "members_in_database", "replace"]
