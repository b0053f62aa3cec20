"""What an operator relies on, in process: the probes, the metrics, the log lines, hashed
static files. (The probes and metrics port on a real daphne: tests/test_server.py; behind a real
proxy: tests/test_proxy.py.)"""

import io
import json
import logging
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.db import OperationalError, connection
from django.test import override_settings
from prometheus_client import REGISTRY

from harness.servers import ROOT, free_port
from liveroom import health
from liveroom.logs import JsonFormatter, PlainFormatter
from liveroom.testing import open_room_socket, open_socket
from liveroom.wire import STATUS_EXTENSION


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_healthz_answers_without_the_database(client) -> None:
    response = client.get("/healthz")  # no django_db mark: any query would raise
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_is_ready_when_the_database_answers(client) -> None:
    response = client.get("/readyz")
    assert (response.status_code, response.content) == (200, b"ready\n")


@pytest.mark.django_db
def test_readyz_says_503_and_why_when_the_database_does_not_answer(client, monkeypatch) -> None:
    def refuse() -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "select_one", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert b"database: OperationalError connection refused" in response.content


@pytest.mark.django_db
def test_readyz_says_503_when_redis_does_not_answer(client) -> None:
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):  # nobody there
        response = client.get("/readyz")
    assert response.status_code == 503
    assert b"redis: ConnectionError" in response.content


@pytest.mark.asyncio
async def test_readyz_says_503_while_the_server_drains() -> None:
    async def readyz(status: SimpleNamespace) -> tuple[int, bytes]:
        scope = {
            "type": "http", "method": "GET", "path": "/readyz", "query_string": b"",
            "headers": [(b"host", b"localhost")], "extensions": {STATUS_EXTENSION: status},
        }  # fmt: skip
        response = await health.readyz(ASGIRequest(scope, io.BytesIO()))
        return response.status_code, response.content

    # What liveroom's daphne puts in each HTTP scope (tests/test_server.py checks it does).
    assert await readyz(SimpleNamespace(draining=True)) == (503, b"draining\n")


def test_probes_are_not_redirected_to_https(settings, client) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/room/join/").status_code == 301


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_metrics_count_pages_changes_deliveries_and_snapshots() -> None:
    pages = sample("liveroom_open_pages", kind="room")
    published = sample("liveroom_changes_published_total", what="room.change")
    delivered = sample("liveroom_delivery_seconds_count")
    lists = sample("liveroom_snapshots_sent_total", kind="list")
    written = sample("liveroom_page_bytes_total")
    _, alice = await open_room_socket("Alice")
    assert sample("liveroom_open_pages", kind="room") == pages + 1
    assert sample("liveroom_snapshots_sent_total", kind="list") == lists + 1
    _, bob = await open_room_socket("Bob")  # Alice's page gets the join
    joined = await alice.receive_from()
    assert "<bdi>Bob</bdi> joined" in joined
    # Every frame written to a page is counted, its header too: Alice's join among them.
    assert sample("liveroom_page_bytes_total") >= written + len(joined.encode()) + 2
    assert sample("liveroom_changes_published_total", what="room.change") >= published + 1
    assert sample("liveroom_delivery_seconds_count") >= delivered + 1
    await alice.disconnect()
    await bob.disconnect()
    assert sample("liveroom_open_pages", kind="room") == pages


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_database_pools_connections_in_use_are_a_metric() -> None:
    taken, give_back = threading.Event(), threading.Event()

    def hold_a_connection() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        taken.set()
        give_back.wait(timeout=10)
        connection.close()  # back to the pool

    before = sample("liveroom_database_connections_in_use")
    holder = threading.Thread(target=hold_a_connection)
    holder.start()
    assert taken.wait(timeout=10)
    assert sample("liveroom_database_connections_in_use") == before + 1
    give_back.set()
    holder.join()
    assert sample("liveroom_database_connections_in_use") == before


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_closes_are_counted_by_code(client) -> None:
    refused = sample("liveroom_sockets_closed_total", code="4403")
    socket = await open_socket(client)  # not a member
    assert (await socket.receive_output())["code"] == 4403
    assert sample("liveroom_sockets_closed_total", code="4403") == refused + 1


def record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "liveroom.test", "levelname": "INFO", "msg": message})
    record.__dict__.update(extra)
    return record


def test_json_logs_are_one_object_a_line_with_the_events_fields() -> None:
    line = JsonFormatter().format(record("Draining", event="draining", sockets=3))
    fields = json.loads(line)
    assert fields["message"] == "Draining"
    assert fields["level"] == "INFO"
    assert fields["logger"] == "liveroom.test"
    assert (fields["event"], fields["sockets"]) == ("draining", 3)
    assert fields["time"].endswith("+00:00")
    assert "\n" not in line


def test_plain_logs_show_an_events_fields_after_its_message() -> None:
    line = PlainFormatter().format(record("Draining", event="draining", sockets=3))
    assert line.endswith("liveroom.test: Draining [event=draining sockets=3]")


def test_log_format_json_switches_the_servers_lines_to_json() -> None:
    code = "import django, logging; django.setup(); logging.getLogger('x').info('hi')"
    env = {"LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert json.loads(result.stderr.strip().splitlines()[-1])["message"] == "hi"
    bad = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env | {"LOG_FORMAT": "xml"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert 'LOG_FORMAT must be "plain" or "json", got \'xml\'' in bad.stderr
