"""The production topology, here without Docker: HAProxy (Debian's, with deploy/haproxy.cfg)
in front of several daphne processes sharing PostgreSQL and Redis, as compose.yaml runs them."""

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.proxy import (
    HAProxy,
    LivePage,
    browser_session,
    join,
    leave,
    members_in_database,
    replace,
)
from harness.servers import Daphne, compose_web_command, empty_database, free_port
from harness.waiting import eventually
from tests.conftest import delete_keys

pytestmark = pytest.mark.services


@pytest.fixture
def env(server_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Production's presence and heartbeats, on an empty database, with Redis keys of its own."""
    env = dict(server_env, LIVEROOM_CHANNEL_PREFIX="e2e-" + uuid.uuid4().hex[:8])
    env.pop("LIVEROOM_PRESENCE")
    env.pop("LIVEROOM_HEARTBEAT_SECONDS")
    empty_database(env)
    yield env
    delete_keys(env["REDIS_URL"], env["LIVEROOM_CHANNEL_PREFIX"])


class Site:
    def __init__(self, env: dict[str, str], work: Path, processes: int) -> None:
        self.env = env
        self.work = work
        self.servers = [self.web(number) for number in range(1, processes + 1)]
        self.proxy = HAProxy(work, [server.port for server in self.servers]).start()
        self.pages: list[LivePage] = []

    def web(self, number: int) -> Daphne:
        """A process started with compose.yaml's command."""
        port = free_port()
        log = self.work / f"web{number}.log"
        return Daphne(self.env, log, command=compose_web_command(port), port=port).start()

    def open_pages(self, count: int) -> list[LivePage]:
        for number in range(count):
            http = requests.Session()
            assert join(http, self.proxy.url, f"Reader {number}") == 302
            self.pages.append(LivePage(http, self.proxy.url))
        everyone = {page.member_id for page in self.pages}
        for page in self.pages:
            page.watched = everyone
        eventually(lambda: all(page.names() == self.names() for page in self.pages), 20)
        eventually(lambda: all(self.all_online(page) for page in self.pages), 20)
        for page in self.pages:  # from here on, nobody with a page open may show as away
            with page.lock:
                page.shown_away.clear()
        return self.pages

    def all_online(self, page: LivePage) -> bool:
        return all(page.page.presence().get(member) == "online" for member in page.watched)

    def names(self) -> list[str]:
        return members_in_database(self.env)

    def close(self) -> None:
        for page in self.pages:
            page.close()
        self.proxy.stop()
        for server in self.servers:
            server.stop()


@pytest.fixture
def site(env: dict[str, str], tmp_path: Path) -> Iterator:
    sites: list[Site] = []

    def start(processes: int) -> Site:
        sites.append(Site(env, tmp_path, processes))
        return sites[-1]

    yield start
    for started in sites:
        started.close()


class Churn:
    """Members joining and leaving through the proxy, one after another, in a thread."""

    def __init__(self, base: str, people: int = 4) -> None:
        self.base = base
        self.people = [browser_session() for _ in range(people)]
        self.statuses: list[int | str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        round_ = 0
        while not self.stopped.is_set():
            for number, http in enumerate(self.people):
                try:
                    if round_ % 2 == 0:
                        self.statuses.append(join(http, self.base, f"Visitor {number}"))
                    else:
                        self.statuses.append(leave(http, self.base))
                except requests.RequestException as error:  # what failed, and how, if one does
                    self.statuses.append(f"{type(error).__name__}: {error}"[:300])
            round_ += 1

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


def converged(site: Site) -> bool:
    names = site.names()
    return all(page.names() == names for page in site.pages)


def test_a_rolling_restart_loses_no_request_and_shows_nobody_away(site) -> None:
    live = site(3)
    pages = live.open_pages(12)
    churn = Churn(live.proxy.url)
    for number, server in enumerate(list(live.servers)):
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=10)
        live.servers[number] = replace(server, live.work / f"web{number + 1}-next.log")
        name = f"web{number + 1}"
        live.proxy.wait_until(lambda states, name=name: states[name] == "UP")
    after_restarts = len(churn.statuses)
    eventually(lambda: len(churn.statuses) >= after_restarts + 10)  # changes after them, too
    churn.stop()
    assert len(churn.statuses) > 20
    assert set(churn.statuses) == {302}, churn.statuses
    eventually(lambda: converged(live), 15)
    assert all(page.page.errors == [] for page in pages)
    assert [page.shown_away for page in pages] == [[] for _ in pages]
    assert any(1012 in page.codes for page in pages)  # they were restarted under the pages


def test_pages_of_a_process_killed_outright_reconnect_through_the_proxy(site) -> None:
    live = site(2)
    pages = live.open_pages(10)
    live.servers[0].process.kill()
    live.servers[0].process.wait()
    live.proxy.wait_until(lambda states: states["web1"] == "DOWN")
    assert join(requests.Session(), live.proxy.url, "After the crash") == 302
    eventually(lambda: converged(live), 20)
    assert "After the crash" in pages[0].names()
    assert any(1006 in page.codes for page in pages)  # some were on the killed one
    assert all(page.page.errors == [] for page in pages)


def test_a_draining_process_gets_no_new_requests_or_sockets(site) -> None:
    live = site(2)
    pages = live.open_pages(10)
    failures: list[str] = []
    stopped = threading.Event()

    def load_pages() -> None:
        http = requests.Session()
        assert join(http, live.proxy.url, "Loader") == 302
        while not stopped.is_set():
            try:
                status = http.get(f"{live.proxy.url}/room/", timeout=10).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            if status != 200:
                failures.append(str(status))

    loader = threading.Thread(target=load_pages, daemon=True)
    loader.start()
    time.sleep(0.5)
    live.servers[0].process.send_signal(signal.SIGTERM)
    live.servers[0].process.wait(timeout=10)
    eventually(lambda: all(page.socket.state.name == "OPEN" for page in pages), 15)
    stopped.set()
    loader.join(timeout=10)
    assert failures == []
    moved = [page for page in pages if page.codes]
    assert moved  # leastconn spread the pages over both
    # Told to reconnect once, and the reconnect went to the other process at the first try.
    assert all(page.codes == [1012] for page in moved), [page.codes for page in moved]
    assert converged(live)


def test_the_app_sees_the_clients_address_not_one_the_client_made_up(site) -> None:
    live = site(1)
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    assert requests.get(f"{live.proxy.url}/room/join/", headers=spoofed, timeout=5).ok
    live.servers[0].stop()  # its access log is complete
    log = live.servers[0].log()
    assert "127.0.0.1:" in log.split('"GET /room/join/" 200')[0].splitlines()[-1]
    assert "203.0.113.9" not in log
