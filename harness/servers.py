"""Real daphne processes for end-to-end tests, each on its own loopback port."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests
import websockets.sync.client
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def held_listener(backlog: int = 4096) -> socket.socket:
    """A listening socket on a free loopback port, held as systemd holds an activated socket:
    each server started on it (`Daphne(..., listener=...)`) gets it with `--fd`, and between
    one server and the next the kernel queues the connections that arrive."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    return listener


def fresh_postgres_url(database_url: str, name: str) -> str:
    """Create (or recreate) database `name` on the server of `database_url`; return its URL."""
    parts = urlsplit(database_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def server_environment(tmp_dir: Path) -> dict[str, str]:
    """Production-like settings for servers under test, on a database of their own."""
    env = dict(os.environ)
    env.update(
        DEBUG="0",
        DJANGO_SETTINGS_MODULE="liveroom.settings",  # the real settings, not the tests'
        PYTHONUNBUFFERED="1",  # server logs reach the file as they happen
        MALLOC_ARENA_MAX="2",  # as the Dockerfile and `make run` start daphne
        SECRET_KEY="end-to-end-tests-" + uuid.uuid4().hex,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LIVEROOM_HEARTBEAT_SECONDS="0",  # see tests/settings.py
        LIVEROOM_PRESENCE="0",  # likewise
        # Every test server of a run shares one Redis and posts from 127.0.0.1: no limit in the
        # way (tests/test_security.py checks the limits).
        RATE_LIMIT_PER_SESSION="1000000/60",
        RATE_LIMIT_PER_ADDRESS="1000000/60",
        LIVEROOM_SOCKETS_PER_ADDRESS="1000000",  # thousands of pages, all from 127.0.0.1
        # Keep these servers' messages apart from any other user of the same Redis.
        LIVEROOM_CHANNEL_PREFIX="e2e-" + uuid.uuid4().hex[:8],
    )
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        env["DATABASE_URL"] = fresh_postgres_url(database_url, "liveroom_e2e")
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp_dir / 'e2e.sqlite3'}"
    manage(env, "migrate", "--no-input", "-v", "0")
    return env


def empty_database(env: dict[str, str]) -> None:
    manage(env, "flush", "--no-input")


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


# How `make run`, the Dockerfile and compose.yaml start the server (tests/test_security.py checks).
SERVER_COMMAND = ("python", "-m", "liveroom.server")


def load_compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def executable(command: list[str]) -> list[str]:
    # The image puts python and daphne on PATH; here they are this virtualenv's.
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return [sys.executable, "-m", command[0], *command[1:]]


def compose_web_command(port: int) -> list[str]:
    """compose.yaml's `web` command, on a loopback port of this machine."""
    command = [str(part) for part in load_compose()["services"]["web"]["command"]]
    bind, listen = command.index("-b"), command.index("-p")
    command[bind + 1], command[listen + 1] = "127.0.0.1", str(port)
    return executable(command)


class Daphne:
    """One server process of liveroom.asgi:application; by default `python -m liveroom.server`
    on a free port, or on `listener` (see held_listener) when given."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        extra_args: tuple[str, ...] = (),
        command: list[str] | None = None,
        port: int | None = None,
        listener: socket.socket | None = None,
    ):
        self.env = env
        self.port = listener.getsockname()[1] if listener else port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        if listener:
            address, self.inherited = ["--fd", str(listener.fileno())], (listener.fileno(),)
        else:
            address, self.inherited = ["-b", "127.0.0.1", "-p", str(self.port)], ()
        self.command = command or [sys.executable, *SERVER_COMMAND[1:], *address, *extra_args]
        self.process: subprocess.Popen | None = None

    def start(self) -> "Daphne":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=self.inherited,
            )
        self.wait_until_ready()
        return self

    def wait_until_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or busy: ask again
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_process(process: subprocess.Popen | None, stop_signal: int, timeout: float) -> None:
    """Ask `process` to stop with `stop_signal`; kill it if it has not within `timeout` s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Visitor:
    """Someone using the room over plain HTTP and a WebSocket, as a browser would."""

    def __init__(self) -> None:
        self.http = requests.Session()

    def join(self, server: Daphne, name: str) -> requests.Response:
        self.http.get(f"{server.url}/room/join/", timeout=10)  # for the CSRF cookie
        return self.post_join(server, name)

    def post_join(self, server: Daphne, name: str) -> requests.Response:
        return self.http.post(
            f"{server.url}/room/join/",
            data={"name": name, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            allow_redirects=False,
            timeout=10,
        )

    def leave(self, server: Daphne) -> requests.Response:
        return self.http.post(
            f"{server.url}/room/leave/",
            data={"csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            allow_redirects=False,
            timeout=10,
        )

    def open_socket(self, server: Daphne):
        """The room page's socket; read_snapshot(socket) first."""
        return page_socket(self.http, server.url, "/ws/room/")


def page_socket(http: requests.Session, base: str, path: str, open_timeout: float = 10, **options):
    """A socket to `path` as the browser with `http`'s cookies opens it from a page at `base`."""
    cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
    return websockets.sync.client.connect(
        f"{base.replace('http', 'ws', 1)}{path}",
        origin=base,
        additional_headers={"Cookie": cookie},
        open_timeout=open_timeout,
        **options,
    )


def read_snapshot(socket, timeout: float = 10) -> str:
    """A page's snapshot as daphne sends it: the room's list, then the page's own part."""
    members = socket.recv(timeout=timeout)
    assert members.startswith('<ul id="members"'), members[:100]
    return members + socket.recv(timeout=timeout)
