import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import Client
from playwright.sync_api import Browser, sync_playwright
from redis import Redis

from harness.browsers import CHROMIUM, CHROMIUM_ARGS
from harness.servers import Daphne, empty_database, server_environment
from liveroom.rooms.member_lists import member_lists
from liveroom.testing import join

# liveroom's own tests use its public test client and fixtures (docs/testing.md), as a project
# built on it would; installed, liveroom registers them itself (the pytest11 entry point).
pytest_plugins = ["liveroom.testing.plugin"]

USES_SERVICES = bool(os.environ.get("DATABASE_URL")) and bool(os.environ.get("REDIS_URL"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    for item in items:
        if "services" in item.keywords and not USES_SERVICES:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI sets LIVEROOM_NO_SKIPS=1: a skipped test there is a test that did not prove anything.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("LIVEROOM_NO_SKIPS") == "1" and skipped:
        reporter.write_line(f"LIVEROOM_NO_SKIPS=1 but {skipped} test(s) were skipped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def async_codes_connections_closed(django_db_setup: None) -> Iterator[None]:
    """Django's async ORM (`aexists`, `acreate` ...) and `sync_to_async` outside a request run
    on asgiref's one shared thread, whose database connection nothing closes; PostgreSQL
    refuses to drop the test database while it is open."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(autouse=True)
def fresh_process_state(settings) -> Iterator[None]:
    """Each test starts with nobody online (a new key prefix: new presence stores), and no
    cached lists. (Its event loop is new: so is its LiveCore.)"""
    settings.LIVEROOM_KEY_PREFIX = prefix = "test-" + uuid.uuid4().hex[:8]
    member_lists.clear()  # ids start again from 1 in each test's database
    yield
    if settings.REDIS_URL:
        delete_keys(settings.REDIS_URL, prefix)


def delete_keys(redis_url: str, prefix: str) -> None:
    with Redis.from_url(redis_url) as redis:
        if keys := redis.keys(f"{prefix}:*"):
            redis.delete(*keys)


@pytest.fixture
def alice(db: None) -> Client:
    return join(Client(), "Alice")


@pytest.fixture
def bob(db: None) -> Client:
    return join(Client(), "Bob")


# Per module, not per session: Playwright's sync API keeps an event loop running in this thread
# until it stops, and async tests cannot start while it does.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return server_environment(tmp_path_factory.mktemp("servers"))


CALL_FAILED = pytest.StashKey[bool]()
LOG_LINES_SHOWN = 150  # of each server's log, when a test that started servers fails


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def start_server(
    server_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator:
    """Starts real daphne processes on free ports, on an empty database; stops them after.
    If the test fails, the end of each server's log is shown with it."""
    empty_database(server_env)  # which restarts ids: a new member may have an old one's id
    servers: list[Daphne] = []
    # So this test's servers share nothing in Redis (presence, messages) with earlier ones.
    session_prefix = server_env["LIVEROOM_CHANNEL_PREFIX"]
    test_prefix = "e2e-" + uuid.uuid4().hex[:8]

    def start(*extra_args: str, env: dict[str, str] | None = None, **options) -> Daphne:
        env = env or server_env
        if env.get("LIVEROOM_CHANNEL_PREFIX") == session_prefix:
            env = env | {"LIVEROOM_CHANNEL_PREFIX": test_prefix}
        server = Daphne(env, tmp_path / f"server-{len(servers)}.log", extra_args, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
    if request.node.stash.get(CALL_FAILED, False):
        for number, server in enumerate(servers):
            lines = server.log().splitlines()[-LOG_LINES_SHOWN:]
            print(f"--- the end of server {number}'s log ---", *lines, sep="\n")
    if redis_url := server_env.get("REDIS_URL"):
        delete_keys(redis_url, test_prefix)
    crashes = [server.log() for server in servers if "Exception inside application" in server.log()]
    assert not crashes, "a consumer or view crashed:\n" + "\n".join(crashes)
