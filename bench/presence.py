"""What presence costs with many pages open: server CPU, Redis commands and memory.

    python -m bench.presence [--pages 1000] [--seconds 60] [--json FILE]

Starts one daphne process the way production does (DATABASE_URL and REDIS_URL from the
environment), once with presence on and once off. Each time, --pages members join and open one
page each, all at once; it records how long until every page shows every member online (on
only). Once that has settled it measures, for --seconds (at least one renewal period, 15 s at the
default expiry): the server's CPU time, the commands Redis ran and the Redis memory presence
holds. The difference between the two runs is what presence costs. The load client runs on the
same machine.
"""

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from pathlib import Path

import redis

from bench.fanout import Endpoint, join_members, open_room_socket
from harness.servers import Daphne, empty_database, server_environment

ONLINE = re.compile(r'<p id="online-count"[^>]*>([\d,]+) online')  # grouped: 1,000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def presence_memory_bytes(client: redis.Redis, prefix: str) -> int:
    keys = client.keys(f"{prefix}:presence:*")
    return sum(client.memory_usage(key) or 0 for key in keys)


async def open_pages(members, everyone: int) -> tuple[list, float, float | None]:
    """Open every page at once; return them, the connect time and time until all show all."""
    shown = [0] * len(members)
    all_online = asyncio.Event()
    limit = asyncio.Semaphore(200)

    async def page(i: int, visitor, endpoint: Endpoint):
        async with limit:
            socket = await open_room_socket(visitor, endpoint)
        asyncio.get_running_loop().create_task(read(i, socket))
        return socket

    async def read(i: int, socket) -> None:
        async for message in socket:
            if match := ONLINE.search(message):
                shown[i] = int(match[1].replace(",", ""))
                if shown[i] == everyone and all(count == everyone for count in shown):
                    all_online.set()

    started = time.perf_counter()
    sockets = await asyncio.gather(*(page(i, *member) for i, member in enumerate(members)))
    connected = time.perf_counter() - started
    try:
        await asyncio.wait_for(all_online.wait(), timeout=120)
        settled = time.perf_counter() - started
    except TimeoutError:
        settled = None
    return sockets, connected, settled


async def measure(pages: int, seconds: float, presence: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="liveroom-presence-"))
    env = server_environment(work)
    env.pop("LIVEROOM_HEARTBEAT_SECONDS")  # production's default
    env["LIVEROOM_PRESENCE"] = "1" if presence else "0"
    empty_database(env)
    server = Daphne(env, work / "server.log").start()
    client = redis.Redis.from_url(env["REDIS_URL"])
    prefix = env["LIVEROOM_CHANNEL_PREFIX"]
    try:
        endpoint = Endpoint(server.url, server)
        members = await asyncio.to_thread(join_members, [endpoint], pages)
        sockets, connected, settled = await open_pages(members, pages if presence else -1)
        await asyncio.sleep(3)  # the last changes and snapshots
        cpu_before = cpu_seconds(server.process.pid)
        commands_before = client.info("stats")["total_commands_processed"]
        await asyncio.sleep(seconds)
        result = {
            "presence": presence,
            "pages": pages,
            "connect_all_s": round(connected, 2),
            "all_shown_online_s": round(settled, 2) if settled is not None else None,
            "server_cpu_percent": round(
                100 * (cpu_seconds(server.process.pid) - cpu_before) / seconds, 2
            ),
            "redis_commands_per_s": round(
                (client.info("stats")["total_commands_processed"] - commands_before) / seconds, 1
            ),
            "presence_redis_bytes": presence_memory_bytes(client, prefix),
        }
        for socket in sockets:
            await socket.close()
        return result
    finally:
        server.stop()
        if keys := client.keys(f"{prefix}:*"):
            client.delete(*keys)


async def run(args: argparse.Namespace) -> list[dict]:
    results = []
    for presence in (True, False):
        result = await measure(args.pages, args.seconds, presence)
        print(json.dumps(result), flush=True)
        results.append(result)
    on, off = results
    cpu = on["server_cpu_percent"] - off["server_cpu_percent"]
    commands = on["redis_commands_per_s"] - off["redis_commands_per_s"]
    print(
        f"presence at {args.pages} open pages: {cpu:+.2f} % of a core on the server, "
        f"{commands:+.1f} Redis commands/s, {on['presence_redis_bytes'] / 1024:.0f} KiB in Redis; "
        f"connecting all took {on['connect_all_s']} s (off: {off['connect_all_s']} s), and every "
        f"page showed all {args.pages} online {on['all_shown_online_s']} s after the first connect"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("bench.presence measures Redis: set REDIS_URL (and DATABASE_URL).")
    results = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
