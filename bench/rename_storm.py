"""A rename storm: one member with thousands of pages renames again and again; do other people's
new pages still open?

    python -m bench.rename_storm                      # 3,000 pages, 5 renames 6 s apart
    python -m bench.rename_storm --pages 300 --renames 2 --apart 2

One server started the way production runs it (`python -m liveroom.server`, DATABASE_URL and
REDIS_URL from the environment, presence and heartbeats on; the socket limits per member and
per address raised so that one member can hold --pages pages from this machine, as an attacker
could across processes). The member opens --pages pages, then renames --renames times,
--apart seconds apart, through the form (five in 30 s are within the default join limits).
Meanwhile other people arrive one after another: each
loads the room page and opens its socket; a handshake or first message over 5 s is a failure.
Prints the other people's handshakes during the storm: how many, failures, p50/p99 time to the
first message, and the same before the storm for reference.
"""

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.fanout import members_joined, percentile, production_environment
from harness.servers import Daphne, Visitor

STEP_SECONDS = 5.0


async def open_page(session: aiohttp.ClientSession, base: str, cookie: str) -> tuple:
    """Load the room page and open its socket; (socket, seconds to its first message)."""
    headers = {"Cookie": cookie, "Origin": base}
    started = time.perf_counter()
    async with session.get(f"{base}/room/", headers=headers) as response:
        page = await response.text()
    path = re.search(r'ws-connect="([^"]+)"', page)[1].replace("&amp;", "&")
    socket = await session.ws_connect(
        f"{base.replace('http', 'ws', 1)}{path}", headers=headers, max_msg_size=0, heartbeat=None
    )
    message = await socket.receive(timeout=STEP_SECONDS)
    if message.type != aiohttp.WSMsgType.TEXT:
        raise RuntimeError(f"closed before its first message: {message.data}")
    return socket, time.perf_counter() - started


def cookie_of(visitor: Visitor) -> str:
    return "; ".join(f"{name}={value}" for name, value in visitor.http.cookies.items())


async def arrivals(session, base: str, people: list, until: asyncio.Event) -> tuple[list, int]:
    """Other people opening a page each, one after another, until `until` is set."""
    times, failures, sockets = [], 0, []
    for visitor, _ in people:
        if until.is_set():
            break
        try:
            socket, seconds = await asyncio.wait_for(
                open_page(session, base, cookie_of(visitor)), STEP_SECONDS * 2
            )
        except Exception:
            failures += 1
            continue
        times.append(seconds)
        sockets.append(socket)
    for socket in sockets:
        await socket.close()
    return times, failures


async def drain(socket) -> None:
    async for _ in socket:  # a page that reads, as a browser's does
        pass


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="liveroom-rename-storm-"))
    env = production_environment(work)
    env["LIVEROOM_SOCKETS_PER_MEMBER"] = str(args.pages + 10)
    env["LIVEROOM_SOCKETS_PER_ADDRESS"] = str(args.pages + 1000)  # all from this machine
    people = await members_joined(env, work, 1000)
    server = Daphne(env, work / "server.log").start()
    base = server.url
    member = Visitor()
    member.join(server, "Storm")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        opening = asyncio.Semaphore(50)

        async def one() -> aiohttp.ClientWebSocketResponse:
            async with opening:
                return (await open_page(session, base, cookie_of(member)))[0]

        pages = await asyncio.gather(*(one() for _ in range(args.pages)))
        readers = [asyncio.create_task(drain(socket)) for socket in pages]
        quiet = asyncio.Event()
        asyncio.get_running_loop().call_later(args.apart, quiet.set)
        before, before_failures = await arrivals(session, base, people[:200], quiet)
        storm_over = asyncio.Event()

        async def storm() -> None:
            for number in range(args.renames):
                response = await asyncio.to_thread(member.post_join, server, f"Storm {number}")
                assert response.status_code == 302, response.status_code
                await asyncio.sleep(args.apart)
            storm_over.set()

        storming = asyncio.create_task(storm())
        during, during_failures = await arrivals(session, base, people[200:], storm_over)
        await storming
        for task in readers:
            task.cancel()
        for socket in pages:
            await socket.close()
    server.stop()
    return {
        "pages": args.pages,
        "renames": args.renames,
        "before": summary(before, before_failures),
        "during": summary(during, during_failures),
    }


def summary(times: list[float], failures: int) -> dict:
    return {
        "handshakes": len(times) + failures,
        "failures": failures,
        "p50_s": round(percentile(times, 0.5), 3) if times else None,
        "p99_s": round(percentile(times, 0.99), 3) if times else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--renames", type=int, default=5)
    parser.add_argument("--apart", type=float, default=6.0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for when in ("before", "during"):
        figures = result[when]
        print(
            f"{when} the storm ({result['pages']} pages of one member, {result['renames']} "
            f"renames): {figures['handshakes']} other people's pages opened, "
            f"{figures['failures']} failed; first message p50/p99 "
            f"{figures['p50_s']}/{figures['p99_s']} s",
            flush=True,
        )
    if result["during"]["failures"]:
        sys.exit("some handshakes failed during the storm")


if __name__ == "__main__":
    main()
