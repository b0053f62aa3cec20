"""Many people joining at the same moment, against a real server and database."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from harness.servers import Visitor
from liveroom.models import Member, Room
from liveroom.rooms.membership import member_join


def test_32_concurrent_joins_are_all_saved(start_server) -> None:
    server = start_server()
    visitors = [Visitor() for _ in range(32)]

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(
            pool.map(lambda pair: pair[1].join(server, f"Guest {pair[0]}").status_code,
                     enumerate(visitors))
        )  # fmt: skip

    assert statuses == [302] * 32
    page = visitors[0].http.get(f"{server.url}/room/", timeout=10).text
    assert "32 people here" in page
    assert all(f">Guest {i}<" in page for i in range(32))
    assert "database is locked" not in server.log()


@pytest.mark.django_db(transaction=True)
def test_a_join_is_saved_while_another_thread_is_reading_the_room() -> None:
    """Room pages read in threads of their own while requests write. The test database is a file
    like the embedded default, so a write waits for nothing here; Django's in-memory one failed
    such a join at once with "database table is locked" (a 503)."""
    for number in range(3):
        member_join(room_slug="lobby", session_key=f"s{number}", name=f"Guest {number}")
    reading, written = threading.Event(), threading.Event()

    def read() -> None:
        try:
            for _ in Member.objects.order_by("pk").iterator(chunk_size=1):
                reading.set()
                written.wait(timeout=10)
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    assert reading.wait(timeout=10)
    try:
        member_join(room_slug="lobby", session_key="s3", name="Guest 3")
    finally:
        written.set()
        reader.join()
    assert Room.objects.get(slug="lobby").member_count == 4
