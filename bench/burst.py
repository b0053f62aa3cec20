"""A burst of joins seen from an open page: how many frames the page gets (and their bytes), how
many in its busiest second, when it shows everyone, and how many broadcasts the server skipped.

    python -m bench.burst                           # 2,000 joins, 100 at a time, one process
    python -m bench.burst --joins 50 --at-once 10   # as the test suite runs it
    python -m bench.burst --no-page                 # nobody has the room open
    python -m bench.burst --no-page --joins 3000 --rooms 3000 --leave   # a room each, left again

One person joins and keeps the room page's socket open (as a browser does, reading every frame
from its first); then `--joins` people join through the form, `--at-once` at a time, each with
a session of its own (the join page, then the post). The page's frames are timestamped as they
are read; the count it shows is read from each frame's `#member-count`. liveroom is started the
way production runs it (`python -m liveroom.server`, DATABASE_URL and REDIS_URL from the
environment, presence and heartbeats on, join limits lifted), on the machine the load client
shares. "Broadcasts skipped" counts the server log's `broadcast_skipped` lines.

With `--no-page` nobody watches: the changes are published all the same (to a group nobody here
listens to), and only the skipped broadcasts and the CPU are counted. With `--rooms N` person i
joins room `burst-<i mod N>` instead of the default room (the page watches `burst-0`); with
`--leave` each leaves again once joined, through the room page's leave form.
"""

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from bench.arrival import Failure, cpu_seconds, expect, post_form, socket_path
from bench.fanout import production_environment
from harness.servers import Daphne

COUNT = re.compile(r'id="member-count"[^>]*>([\d,]+)')  # grouped: 2,001
QUIET_SECONDS = 3  # after the last join, how long the page may take to show everyone


@dataclass
class Result:
    joins: int
    at_once: int
    rooms: int
    page_open: bool
    joined: int
    left: int
    failures: int
    joins_s: float  # from the first join sent to the last answered
    frames: int
    most_frames_in_a_second: int
    kib: float  # what the page's frames carried, heartbeats aside
    shown_all_after_last_join_s: float | None  # None: it never showed everyone
    broadcasts_skipped: int
    server_cpu_s: float


class OpenPage:
    """The page that watches: every frame's arrival time and the count it shows."""

    def __init__(self) -> None:
        self.frames: list[float] = []
        self.sizes: list[int] = []  # each frame's bytes
        self.count = 0
        self.counted_at = 0.0

    async def open(self, base: str, session: aiohttp.ClientSession, room: str) -> None:
        await join(base, session, "Watcher", room)
        async with session.get(f"{base}{room}") as response:
            expect(response.status, 200, "room page")
            page = await response.text()
        self.socket = await session.ws_connect(
            f"{base.replace('http', 'ws', 1)}{socket_path(page)}",
            headers={"Origin": base}, heartbeat=None, max_msg_size=0,
        )  # fmt: skip
        self.reading = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            if message.data.startswith('<p id="connection"'):
                continue  # the heartbeat
            self.frames.append(now)
            self.sizes.append(len(message.data.encode()))
            if counts := COUNT.findall(message.data):
                self.count, self.counted_at = int(counts[-1].replace(",", "")), now

    async def close(self) -> None:
        await self.socket.close()
        await asyncio.gather(self.reading, return_exceptions=True)


def room_path(number: int, rooms: int) -> str:
    """The room person `number` joins: the default room, or one of `rooms`."""
    return "/room/" if rooms == 1 else f"/room/burst-{number % rooms}/"


async def join(base: str, session: aiohttp.ClientSession, name: str, room: str = "/room/") -> None:
    await post_form(base, session, f"{room}join/", f"{room}join/", {"name": name}, "join")


async def leave(base: str, session: aiohttp.ClientSession, room: str) -> None:
    await post_form(base, session, room, f"{room}leave/", {}, "leave")  # its form: the room page's


def most_in_a_second(times: list[float]) -> int:
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


async def measure(base: str, pid: int, log: Path, args: argparse.Namespace) -> Result:
    timeout = aiohttp.ClientTimeout(total=30)
    jar = aiohttp.CookieJar(unsafe=True)
    page = OpenPage()
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as watcher_session:
        if not args.no_page:
            await page.open(base, watcher_session, room_path(0, args.rooms))
            await asyncio.sleep(1)  # its snapshot and its own presence are in
        first_frame = len(page.frames)
        cpu_before = cpu_seconds(pid)
        limit = asyncio.Semaphore(args.at_once)
        joined = left = watched_joined = 0  # watched: in the room the page has open

        async def one(number: int) -> None:
            nonlocal joined, left, watched_joined
            room = room_path(number, args.rooms)
            async with (
                limit,
                aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout
                ) as session,
            ):
                try:
                    await join(base, session, f"Person {number}", room)
                    joined += 1
                    watched_joined += room == room_path(0, args.rooms)
                    if args.leave:
                        await leave(base, session, room)
                        left += 1
                except (Failure, aiohttp.ClientError, TimeoutError):
                    pass

        started = time.perf_counter()
        await asyncio.gather(*(one(number) for number in range(args.joins)))
        last_join = time.perf_counter()
        everyone = 1 + (0 if args.leave else watched_joined)  # the page's own member too
        # The page reads on its own; this only decides when to stop waiting.
        while page.count < everyone and time.perf_counter() - last_join < QUIET_SECONDS:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # what the burst still sends (its last words)
        cpu = cpu_seconds(pid) - cpu_before
        if not args.no_page:
            await page.close()
    frames = page.frames[first_frame:]
    failures = args.joins - joined + (joined - left if args.leave else 0)
    shown = page.counted_at - last_join if page.count == everyone else None
    return Result(
        joins=args.joins,
        at_once=args.at_once,
        rooms=args.rooms,
        page_open=not args.no_page,
        joined=joined,
        left=left,
        failures=failures,
        joins_s=round(last_join - started, 2),
        frames=len(frames),
        kib=round(sum(page.sizes[first_frame:]) / 1024, 1),
        most_frames_in_a_second=most_in_a_second(frames),
        shown_all_after_last_join_s=None if shown is None else round(max(0.0, shown), 3),
        broadcasts_skipped=(await asyncio.to_thread(log.read_text)).count("broadcast_skipped"),
        server_cpu_s=round(cpu, 2),
    )


def print_result(result: Result) -> None:
    shown = result.shown_all_after_last_join_s
    rooms = f" in {result.rooms} rooms" if result.rooms > 1 else ""
    left = f", {result.left} left again" if result.left else ""
    if result.page_open:
        seen = (
            f"the open page got {result.frames} frames ({result.kib:,.0f} KiB), at most "
            f"{result.most_frames_in_a_second} in a second, and showed everyone "
            f"{'never' if shown is None else f'{shown:.2f} s after the last join'}"
        )
    else:
        seen = "no page open"
    print(
        f"burst of {result.joins}{rooms}, {result.at_once} at a time: {result.joined} joined"
        f"{left} ({result.failures} failed) in {result.joins_s:.1f} s; {seen}; "
        f"broadcasts skipped {result.broadcasts_skipped}; server CPU {result.server_cpu_s:.1f} s",
        flush=True,
    )


async def run(args: argparse.Namespace) -> Result:
    work = Path(tempfile.mkdtemp(prefix="liveroom-burst-"))
    env = production_environment(work)
    server = Daphne(env, work / "server.log").start()
    try:
        return await measure(server.url, server.process.pid, work / "server.log", args)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=2000)
    parser.add_argument("--at-once", type=int, default=100)
    parser.add_argument("--no-page", action="store_true", help="nobody has the room open")
    parser.add_argument("--rooms", type=int, default=1, help="spread the joins over this many")
    parser.add_argument("--leave", action="store_true", help="each leaves again once joined")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "result": asdict(result)}, indent=2))


if __name__ == "__main__":
    main()
