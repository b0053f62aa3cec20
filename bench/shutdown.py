"""Shutdown: SIGTERM to a server with N open room pages while presence changes are in flight.

    python -m bench.shutdown                      # N = 1,000 pages, 20 runs
    python -m bench.shutdown --pages 200 --runs 3

The server is started the way production runs it (`python -m liveroom.server`, DATABASE_URL and
REDIS_URL from the environment, presence and heartbeats on). N members join once; each run
starts a fresh server, opens one page per member (each reads its list), closes a tenth of them
and has members join and leave while the batch of presence changes from all those pages is
still being written, then sends SIGTERM. It prints how long the process took to exit and the
close codes the pages saw. Exits with an error if any run took 5 s or more, or left a page
without 1012.
"""

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from bench.fanout import (
    Endpoint,
    members_joined,
    open_room_socket,
    production_environment,
    read_snapshot_size,
)
from harness.servers import Daphne, Visitor

LIMIT_SECONDS = 5.0


async def close_code(socket) -> int | None:
    try:
        while True:
            await socket.recv()
    except ConnectionClosed:
        return socket.close_code


def churn(endpoint: Endpoint, count: int) -> None:
    """Members joining and leaving over HTTP while the server goes down (failures expected)."""

    def one(i: int) -> None:
        visitor = Visitor()
        try:
            visitor.join(endpoint, f"Churn {i}")
            visitor.leave(endpoint)
        except Exception:
            pass

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(count)))


def stacks(pid: int) -> str:
    """What each thread of the server is doing (py-spy, when installed)."""
    try:
        dump = subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True)
    except FileNotFoundError:
        return "(install py-spy to see where the server is)"
    return dump.stdout + dump.stderr


async def one_run(
    env: dict[str, str], work: Path, members: list, run: int, profile: bool
) -> tuple[float, Counter]:
    server = Daphne(env, work / f"server-{run}.log").start()
    endpoint = Endpoint(server.url, server)
    members = [(visitor, endpoint) for visitor, _ in members]
    limit = asyncio.Semaphore(20)  # arrivals are bench.fanout's business, not this one's

    async def open_one(visitor):
        async with limit:
            socket = await open_room_socket(visitor, endpoint)
            await read_snapshot_size(socket)
            return socket

    sockets = await asyncio.gather(*(open_one(visitor) for visitor, _ in members))
    closing = sockets[: len(sockets) // 10]
    await asyncio.gather(*(socket.close() for socket in closing))
    open_sockets = sockets[len(sockets) // 10 :]
    codes = [asyncio.create_task(close_code(socket)) for socket in open_sockets]
    churning = asyncio.create_task(asyncio.to_thread(churn, endpoint, 20))
    await asyncio.sleep(0.3)  # presence of the pages just opened and closed: being written
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    exited = await asyncio.to_thread(wait_for_exit, server, LIMIT_SECONDS)
    if not exited and profile:
        print(await asyncio.to_thread(stacks, server.process.pid), flush=True)
    exited = exited or await asyncio.to_thread(wait_for_exit, server, 30)
    seconds = time.monotonic() - started if exited else float("inf")
    seen = Counter(await asyncio.gather(*codes))
    await churning
    if not exited:
        server.process.kill()
        server.process.wait()
    return seconds, seen


def wait_for_exit(server: Daphne, timeout: float) -> bool:
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


async def run(pages: int, runs: int, profile: bool) -> list[tuple[float, Counter]]:
    work = Path(tempfile.mkdtemp(prefix="liveroom-shutdown-"))
    env = production_environment(work)
    members = await members_joined(env, work, pages)
    results = []
    for number in range(runs):
        seconds, codes = await one_run(env, work, members, number, profile)
        print(
            f"run {number + 1:>2}: exited {seconds:.2f} s after SIGTERM; pages' close codes "
            + ", ".join(f"{code}: {count}" for code, count in sorted(codes.items(), key=str)),
            flush=True,
        )
        results.append((seconds, codes))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--profile", action="store_true", help="dump the stacks of a server slower than the limit"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.pages, args.runs, args.profile))
    times = [seconds for seconds, _ in results]
    good = [s < LIMIT_SECONDS and set(codes) == {1012} for s, codes in results]
    print(
        f"{sum(good)} of {len(results)} runs exited within {LIMIT_SECONDS:.0f} s with every page "
        f"told 1012; exit time median {statistics.median(times):.2f} s, max {max(times):.2f} s"
    )
    if not all(good):
        sys.exit("a run was too slow or left a page without 1012")


if __name__ == "__main__":
    main()
