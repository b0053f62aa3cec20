"""Restart: a server with N open pages gets SIGTERM, and a replacement starts on its address.

    python -m bench.restart                  # N = 2,000 pages, 3 runs of each way to restart
    python -m bench.restart --pages 200 --runs 1 --listener held

Each page loads the room page and keeps its socket, reconnecting the way the htmx ws extension
does: only after 1006, 1011, 1012 or 1013, with full-jitter backoff (a random wait up to 1 s,
then up to 2 s, 4 s ... 64 s), to the same `ws-connect` URL. The server (`python -m
liveroom.server`, DATABASE_URL and REDIS_URL from the environment, presence and heartbeats on)
is sent SIGTERM, and a replacement starts on the same address, in one of two ways:

- `held`: the listening socket outlives the processes, as a systemd socket unit holds it (see
  docs/operations.md): each server gets it with `--fd`, and the replacement starts once the old
  process has exited, as `systemctl restart` does. Meanwhile the kernel queues the pages'
  connections.
- `bound`: each server binds the port itself; the replacement starts as soon as the old one has
  let go of it, as a supervisor that retries does. Meanwhile the pages' connections are refused
  and they back off again.

Prints how long the old process took to exit, the close codes the pages saw, and the time from
SIGTERM until every page had its list again (its own part of a snapshot: the list itself only
where the page was behind).
"""

import argparse
import asyncio
import itertools
import random
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench.fanout import members_joined, percentile, production_environment
from harness.servers import Daphne, held_listener

RECONNECT_AFTER = {1006, 1011, 1012, 1013}
OWN_PART = '<p id="connection"'  # a snapshot's own part opens with the indicator


class Page:
    def __init__(self, visitor, base: str) -> None:
        # Sent as a header: aiohttp's cookie jar keeps no cookies for an IP address.
        cookie = "; ".join(f"{name}={value}" for name, value in visitor.http.cookies.items())
        self.headers = {"Cookie": cookie, "Origin": base}
        self.base = base
        self.path = ""
        self.codes: Counter[int] = Counter()
        self.refusals: Counter[str] = Counter()  # handshakes that failed, by what the client saw
        self.restored: float | None = None  # when the list was back after the restart
        self.restart_at: float | None = None

    async def load(self, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{self.base}/room/", headers=self.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"the room page answered {response.status}")
            page = await response.text()
        self.path = re.search(r'ws-connect="([^"]+)"', page)[1].replace("&amp;", "&")

    async def live(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                socket = await session.ws_connect(
                    f"{self.base.replace('http', 'ws', 1)}{self.path}",
                    headers=self.headers,
                    heartbeat=None,
                    max_msg_size=0,
                )
            except (aiohttp.ClientError, OSError) as error:
                code = 1006  # refused, or dropped before the handshake
                self.refusals[describe(error)] += 1
            else:
                attempt = 0
                code = await self.read(socket, stop)
            if stop.is_set() or code not in RECONNECT_AFTER:
                return
            self.codes[code] += 1
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(64, 2 ** (attempt - 1))))

    async def read(self, socket, stop: asyncio.Event) -> int:
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            if message.data.startswith(OWN_PART) and self.restart_at and not self.restored:
                self.restored = time.monotonic()
            if stop.is_set():
                break
        await socket.close()
        return socket.close_code or 1006


def describe(error: Exception) -> str:
    if isinstance(error, aiohttp.WSServerHandshakeError):
        return f"handshake answered {error.status}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connection refused"
    return type(error).__name__


def start_on(env: dict, log: Path, port: int) -> Daphne:
    """A server on `port` as soon as the old one has let go of it (as a supervisor retries)."""
    for _ in range(100):
        try:
            return Daphne(env, log, port=port).start()
        except RuntimeError:  # the address is still the old process's
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never came free")


async def one_run(env: dict, work: Path, members: list, name: str, held: bool) -> dict:
    listener = held_listener() if held else None
    servers: list[Daphne] = []  # stopped however the run ends
    try:
        return await restart_under_pages(env, work, members, name, listener, servers)
    finally:
        for server in servers:
            server.stop()
        if listener:
            listener.close()


async def restart_under_pages(
    env: dict,
    work: Path,
    members: list,
    name: str,
    listener: socket.socket | None,
    servers: list[Daphne],
) -> dict:
    server = Daphne(env, work / f"server-{name}.log", listener=listener)
    servers.append(server)
    server.start()
    base = server.url
    pages = [Page(visitor, base) for visitor, _ in members]
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)  # every socket holds a connection
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        loads = asyncio.Semaphore(50)

        async def load(page: Page) -> None:
            async with loads:
                await page.load(session)

        await asyncio.gather(*(load(page) for page in pages))
        tasks = [asyncio.create_task(page.live(session, stop)) for page in pages]
        await asyncio.sleep(5 + len(pages) / 200)  # every page connected and settled
        started = time.monotonic()
        for page in pages:
            page.restart_at = started
        server.process.send_signal(signal.SIGTERM)

        async def old_exit() -> float:
            await asyncio.to_thread(server.process.wait, 30)
            return time.monotonic() - started

        exiting = asyncio.create_task(old_exit())
        next_log = work / f"server-{name}-next.log"
        if listener:  # as systemctl restart: the next process once the old one is gone
            await exiting
            replacement = Daphne(env, next_log, listener=listener)
            servers.append(replacement)
            await asyncio.to_thread(replacement.start)
        else:
            replacement = await asyncio.to_thread(start_on, env, next_log, server.port)
            servers.append(replacement)
        ready = time.monotonic() - started
        exited = await exiting
        deadline = time.monotonic() + 120
        while any(page.restored is None for page in pages) and time.monotonic() < deadline:  # noqa: ASYNC110 (polls the pages it counts)
            await asyncio.sleep(0.2)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    restored = [page.restored - started for page in pages if page.restored is not None]
    codes = sum((page.codes for page in pages), Counter())
    refusals = sum((page.refusals for page in pages), Counter())
    return {
        "old_exit_s": round(exited, 2),
        "replacement_ready_s": round(ready, 2),
        "codes": dict(sorted(codes.items())),
        "refusals": dict(refusals.most_common()),
        "restored": len(restored),
        "pages": len(pages),
        "median_s": round(statistics.median(restored), 2) if restored else None,
        "p99_s": round(percentile(restored, 0.99), 2) if restored else None,
        "last_s": round(max(restored), 2) if restored else None,
    }


LISTENERS = {"held": True, "bound": False}


async def run(pages: int, runs: int, listeners: list[str]) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="liveroom-restart-"))
    env = production_environment(work)
    members = await members_joined(env, work, pages)
    results = []
    for number, listener in itertools.product(range(runs), listeners):
        name = f"{number + 1}-{listener}"
        result = await one_run(env, work, members, name, held=LISTENERS[listener])
        print(
            f"run {number + 1}, {listener} socket: "
            f"old process exited {result['old_exit_s']} s after SIGTERM, "
            f"the replacement answered /readyz after {result['replacement_ready_s']} s; "
            f"close codes {result['codes']} (failed handshakes: {result['refusals']}); "
            f"{result['restored']} of {result['pages']} pages had "
            f"their list again, median {result['median_s']} s, p99 {result['p99_s']} s, "
            f"last {result['last_s']} s after SIGTERM",
            flush=True,
        )
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--listener",
        choices=[*LISTENERS, "both"],
        default="both",
        help="how the replacement gets the address (both: alternately, held first)",
    )
    args = parser.parse_args()
    listeners = list(LISTENERS) if args.listener == "both" else [args.listener]
    results = asyncio.run(run(args.pages, args.runs, listeners))
    if any(r["restored"] < r["pages"] or r["old_exit_s"] >= 5 for r in results):
        sys.exit("a page did not get its list back, or the old process took 5 s or more")


if __name__ == "__main__":
    main()
