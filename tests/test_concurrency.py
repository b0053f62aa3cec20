"""Many people joining at the same moment, against a real server and database."""

from concurrent.futures import ThreadPoolExecutor

from harness.servers import Visitor


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
