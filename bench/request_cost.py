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

Each kind of request's line also says where its CPU went: the thread time of the outermost
call into Django's template engine (every template rendered, fragments included), into the
database (statements compiled and run, transactions, the pool's connection taken and given
back; building a queryset is not counted here) and into Redis (commands and pipelines of the
rate limits, the cache and presence), in any thread while the request is under way (one at a
time; what a request sends after its response may fall in the next one's, as in its total);
the rest is everything else (Django's handler and middleware, the view's own code, the
thread hop, this process's test client). Timing those calls adds two clock readings each.
"""

import argparse
import asyncio
import functools
import os
import re
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

from harness.servers import server_environment

PARTS = ("templates", "database", "Redis")


class Under:
    """The CPU seconds of the request under way, by part (None between measured requests)."""

    spent: defaultdict[str, float] | None = None


INSIDE = threading.local()  # `part`: the part a thread is timing now (calls within it are its)


def account(owner: type, name: str, part: str) -> None:
    """Count the thread time of `owner.name` to `part` when it is the outermost timed call."""
    original: Callable = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        spent = Under.spent
        if spent is None or getattr(INSIDE, "part", None) is not None:
            return original(*args, **kwargs)
        INSIDE.part = part
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[part] += time.thread_time() - started
            INSIDE.part = None

    setattr(owner, name, timed)


def account_parts() -> None:
    """Time the template engine, the database and Redis (once Django is set up)."""
    import redis.client
    from django.db import connections
    from django.db.backends.utils import CursorWrapper
    from django.db.models.sql import compiler
    from django.template.base import Template

    account(Template, "render", "templates")
    for compiler_class in vars(compiler).values():
        if isinstance(compiler_class, type) and "execute_sql" in vars(compiler_class):
            account(compiler_class, "execute_sql", "database")
    for name in ("execute", "executemany"):  # statements that no compiler makes
        account(CursorWrapper, name, "database")
    for name in ("ensure_connection", "set_autocommit", "commit", "rollback", "close",
                 "_savepoint", "_savepoint_commit", "_savepoint_rollback"):  # fmt: skip
        account(type(connections["default"]), name, "database")
    account(redis.client.Redis, "execute_command", "Redis")
    account(redis.client.Pipeline, "execute", "Redis")


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


Costs = dict[str, dict[str, float]]  # ms of CPU a request, by kind: "all", and by part


async def measure(application, people: int) -> Costs:
    steps = ["GET /room/join/", "POST /room/join/", "GET /room/", "GET /healthz"]
    spent: dict[str, defaultdict[str, float]] = {step: defaultdict(float) for step in steps}

    async def timed(step: str, expected: int, *args) -> dict:
        Under.spent = spent[step]
        started = time.process_time()
        try:
            response = await request(application, *args)
        finally:
            spent[step]["all"] += time.process_time() - started
            Under.spent = None
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
    return {
        step: {part: seconds / people * 1000 for part, seconds in parts.items()}
        for step, parts in spent.items()
    }


def cost_line(step: str, costs: dict[str, float]) -> str:
    parts = {part: costs.get(part, 0.0) for part in PARTS}
    rest = costs["all"] - sum(parts.values())
    where = ", ".join(f"{part} {milliseconds:.2f}" for part, milliseconds in parts.items())
    return f"{step:<18} {costs['all']:6.2f} ms of CPU a request ({where}, the rest {rest:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200)
    args = parser.parse_args()

    os.environ.update(server_environment(Path(tempfile.mkdtemp(prefix="liveroom-cost-"))))
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1"
    os.environ["LIVEROOM_PRESENCE"] = "1"  # as bench.arrival runs the server
    from liveroom.asgi import application  # Django set up with these settings

    account_parts()
    asyncio.run(measure(application, 5))  # warm up: templates, connections, code paths
    costs, checked_out = asyncio.run(measure_then_settle(application, args.people))
    for step, step_costs in costs.items():
        print(cost_line(step, step_costs))
    if checked_out is not None:
        print(f"database connections the run left checked out of the pool: {checked_out}")


async def measure_then_settle(application, people: int) -> tuple[Costs, int | None]:
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
