"""Two daphne processes sharing PostgreSQL and Redis act as one room."""

import time

import pytest

from harness.servers import Visitor, read_snapshot

pytestmark = pytest.mark.services


def test_a_socket_on_one_process_sees_changes_posted_to_another(start_server) -> None:
    first, second = start_server(), start_server()
    alice, bob = Visitor(), Visitor()
    assert alice.join(first, "Alice").status_code == 302

    with alice.open_socket(first) as socket:
        snapshot = read_snapshot(socket)
        assert "Alice" in snapshot
        assert "Bob" not in snapshot

        assert bob.join(second, "Bob").status_code == 302
        joined = socket.recv(timeout=10)
        assert "Bob" in joined
        assert "2 people here" in joined

        assert bob.leave(second).status_code == 302
        left = socket.recv(timeout=10)
        assert 'hx-swap-oob="delete"' in left
        assert "1 person here" in left


def read_until(socket, text: str, timeout: float) -> float:
    """Read messages until one contains `text`; return the seconds that took."""
    started = time.monotonic()
    while text not in socket.recv(timeout=max(0.01, started + timeout - time.monotonic())):
        pass
    return time.monotonic() - started


def test_the_members_of_a_process_that_died_go_away_within_the_expiry(
    server_env, start_server
) -> None:
    expiry = 4
    env = server_env | {
        "LIVEROOM_PRESENCE": "1",
        "LIVEROOM_PRESENCE_GRACE_SECONDS": "0.5",
        "LIVEROOM_PRESENCE_EXPIRY_SECONDS": str(expiry),
    }
    survivor, doomed = start_server(env=env), start_server(env=env)
    alice, bob = Visitor(), Visitor()
    alice.join(survivor, "Alice")
    bob.join(doomed, "Bob")

    with alice.open_socket(survivor) as alice_socket, bob.open_socket(doomed):
        read_snapshot(alice_socket)
        read_until(alice_socket, "2 online", timeout=10)
        doomed.process.kill()  # no goodbye: its sockets and presence just stop
        seconds = read_until(alice_socket, "<bdi>Bob</bdi> is away", timeout=expiry + 5)
    assert seconds <= expiry + 0.5
