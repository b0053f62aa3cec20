"""Two daphne processes sharing PostgreSQL and Redis act as one room."""

import pytest

from tests.servers import Visitor

pytestmark = pytest.mark.services


def test_a_socket_on_one_process_sees_changes_posted_to_another(start_server) -> None:
    first, second = start_server(), start_server()
    alice, bob = Visitor(), Visitor()
    assert alice.join(first, "Alice").status_code == 302

    with alice.open_socket(first) as socket:
        snapshot = socket.recv(timeout=10)
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
