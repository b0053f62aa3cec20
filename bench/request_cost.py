"""Request cost: the CPU each HTTP step of an arrival costs, in one process, without sockets.

    python -m bench.request_cost [--people 200]

Runs liveroom's ASGI application (liveroom/asgi.py) in this process, with the production
settings, on a fresh database from DATABASE_URL (or SQLite) and REDIS_URL if set, and sends it
each person's three requests of an arrival: GET the join page, POST the form, GET the room
page; then as many GET /healthz, an async view that answers "ok" (what any request costs
here: Django's handler, middleware and thread hops with nothing to do). Prints the CPU time
of this process each kind of request took on average, and (on PostgreSQL) how many of the
database pool's connections were not given back. Without daphne, Twisted and the network
these are Django's and liveroom's share of an arrival; `bench.arrival` measures the whole.
"""

import argparse
import asyncio
import os
import re
import tempfile
import time
from http.cookies import SimpleCookie
from pathlib import Path

from harness.servers import server_environment


async def request(application, method: str, path: str, cookies: dict, body: bytes = b"") -> dict:
    """One request as a browser with `cookies` sends it; the cookies it sets are kept."""
    from channels.testing import HttpCommunicator  # once main() has set Django's settings

    headers = [(b"host", b"127.0.0.1")]
    if cookies:
        headers.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    if body:
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
    response = await communicator.get_response(timeout=10)
    await communicator.wait(timeout=5)  # the request's end (its connection back to the pool)
    for name, value in response["headers"]:
        if name.lower() == b"set-cookie":
            cookies.update({k: m.value for k, m in SimpleCookie(value.decode()).items()})
    return response


async def measure(application, people: int) -> dict[str, float]:
    steps = ["GET /room/join/", "POST /room/join/", "GET /room/", "GET /healthz"]
    spent = dict.fromkeys(steps, 0.0)

    async def timed(step: str, expected: int, *args) -> dict:
        started = time.process_time()
        response = await request(application, *args)
        spent[step] += time.process_time() - started
        assert response["status"] == expected, (step, response["status"])
        return response

    for person in range(people):
        cookies: dict[str, str] = {}
        page = await timed("GET /room/join/", 200, "GET", "/room/join/", cookies)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page["body"])
        assert token is not None
        form = f"csrfmiddlewaretoken={token[1].decode()}&name=Person+{person}".encode()
        await timed("POST /room/join/", 302, "POST", "/room/join/", cookies, form)
        await timed("GET /room/", 200, "GET", "/room/", cookies)
    for _ in range(people):
        await timed("GET /healthz", 200, "GET", "/healthz", {})
    return {step: seconds / people * 1000 for step, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200)
    args = parser.parse_args()

    os.environ.update(server_environment(Path(tempfile.mkdtemp(prefix="liveroom-cost-"))))
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1"
    os.environ["LIVEROOM_PRESENCE"] = "1"  # as bench.arrival runs the server
    from liveroom.asgi import application  # Django set up with these settings

    asyncio.run(measure(application, 5))  # warm up: templates, connections, code paths
    costs, checked_out = asyncio.run(measure_then_settle(application, args.people))
    for step, milliseconds in costs.items():
        print(f"{step:<18} {milliseconds:6.2f} ms of CPU a request")
    if checked_out is not None:
        print(f"database connections the run left checked out of the pool: {checked_out}")


async def measure_then_settle(application, people: int) -> tuple[dict[str, float], int | None]:
    """`measure`, then how many more pool connections (PostgreSQL) are out than before it, once
    the last /rooms/ refresh is done: every request and what it sent after gives theirs back."""
    from django.db import connections

    from liveroom.apps import database_connections_in_use as checked_out

    if getattr(connections["default"], "pool", None) is None:
        return await measure(application, people), None
    before = checked_out()  # the warm-up's event loop may have ended in the middle of a read
    costs = await measure(application, people)
    for _ in range(50):  # the last /rooms/ refresh (at most one a second) may still be running
        if checked_out() <= before:
            break
        await asyncio.sleep(0.1)
    return costs, int(checked_out() - before)


if __name__ == "__main__":
    main()
