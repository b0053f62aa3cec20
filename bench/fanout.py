"""Fan-out: how fast a change reaches every open room page, and what each page costs.

    python -m bench.fanout                # N = 100, 1,000, 5,000 on one daphne; 10,000 on two
    python -m bench.fanout --sizes 1000 --events 20
    python -m bench.fanout --smoke        # N = 20, a few events (run by the test suite)
    python -m bench.fanout --url http://host:8000 --sizes 500   # a server already running
    python -m bench.fanout --sizes 1000 --languages en --languages en,de,ar --rounds 3

Servers are started the way production runs them (daphne, DATABASE_URL and REDIS_URL from the
environment), on this machine; so is the load client, which shares the same cores. For each N:
N members join over HTTP, each with its own session, and open one socket each, read from the
moment it has its snapshot; once every page has it and the room has settled (no news for 2 s:
presence comes in batches), a probe member joins and leaves `--events` times, each change sent
`--gap` seconds after every page has the one before (0.25 s: longer than a window of gathering,
liveroom/live/delivery.py, so each change comes to a quiet room; 0.05 s makes a room that
changes about ten times a second, and its changes wait for the window). For every change it
records, per socket, the time from sending the POST to receiving the fragment that shows it,
and the servers' CPU time. The client sets its own objects aside from Python's collector while
it measures, so its pauses are not counted as the server's. With `--languages`, the pages are
spread over the languages given (page i in language i mod n, as its socket's `l=` says); each
set of languages given is a run of its own, and `--rounds` repeats the whole plan, alternating,
so the runs compared share the machine's weather.
"""

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import websockets
from websockets.asyncio.client import connect

from harness.servers import Daphne, Visitor, empty_database, server_environment

PROBE = re.compile(r"probe-(\d+)-(\d+)")
# The probe's own entry deleted (a join in a crowded room deletes another's: the one it pushed
# out of the window of recent arrivals).
PROBE_LEFT = re.compile(r'hx-swap-oob="delete"><span class="member__name"[^>]*>probe-(\d+)-(\d+)<')


@dataclass
class Config:
    name: str
    languages: tuple[str, ...] = ("en",)


@dataclass
class Result:
    config: str
    members: int
    servers: int
    events: int
    gap_s: float  # from a change reaching every page to the next change
    socket_p50_ms: float
    socket_p99_ms: float
    last_socket_median_ms: float
    last_socket_p99_ms: float
    last_socket_max_ms: float
    lost: int
    post_p50_ms: float
    post_p99_ms: float
    post_max_ms: float
    bytes_per_socket_per_event: float
    server_kib_per_socket: float | None
    server_cpu_ms_per_event: float | None
    connect_all_s: float
    settle_s: float
    pages_dropped: int
    snapshot_bytes: int
    resyncs: int
    last_socket_each_ms: list[float]  # per change, in order
    post_each_ms: list[float]  # per change, in order


class Endpoint:
    """Where members join and connect: a server started here, or one given by URL."""

    def __init__(self, url: str, server: Daphne | None = None) -> None:
        self.url = url.rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])
        self.server = server

    def cpu_seconds(self) -> float | None:
        """User and system CPU time the server process has used so far."""
        if self.server is None:
            return None
        fields = Path(f"/proc/{self.server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def resident_kib(self) -> int | None:
        if self.server is None:
            return None
        status = Path(f"/proc/{self.server.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status)[1])


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with `fraction` of the values at or below it (so p99
    of fewer than 100 values is their maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else float("nan")


class Page:
    """One open room page: a socket and the times at which changes reached it."""

    def __init__(self, socket, run: int, arrivals: dict) -> None:
        self.socket = socket
        self.run = run
        self.arrivals = arrivals
        self.bytes_after_snapshot = 0
        self.resyncs = 0  # whole lists received after the first
        self.last_news = time.perf_counter()  # when anything but a heartbeat last came

    async def read(self) -> None:
        try:
            async for message in self.socket:
                now = time.perf_counter()
                if message.startswith(('<p id="connection"', '<p id="announcement"')):
                    continue  # the heartbeat; a burst's words, said a second later
                self.last_news = now
                if message.startswith('<p id="online-count"'):
                    continue  # a presence change, not a membership change
                self.bytes_after_snapshot += len(message)
                self.resyncs += message.startswith('<ul id="members"')
                left = {(int(m[1]), int(m[2])) for m in PROBE_LEFT.finditer(message)}
                for match in PROBE.finditer(message):
                    if int(match[1]) == self.run:
                        event = (int(match[1]), int(match[2]))
                        kind = "left" if event in left else "joined"
                        self.arrivals.setdefault((int(match[2]), kind), []).append(now)
                        break
        except websockets.ConnectionClosed:
            pass


async def settle(pages: list[Page], quiet: float = 2, limit: float = 60) -> float:
    """Wait until the pages have had no news for `quiet` seconds (presence of the pages that
    just connected comes in batches); return how long that took after the last connect."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        await asyncio.sleep(0.25)
        latest = max(page.last_news for page in pages)
        if time.perf_counter() - latest >= quiet:
            return latest - started if latest > started else 0.0
    return limit


def timed(call, *args):
    """Call, and note when it returned: in this thread, not when this loop gets round to it
    (it is busy reading every page's copy of the change)."""
    result = call(*args)
    return result, time.perf_counter()


def join_members(endpoints: list[Endpoint], count: int) -> list[tuple[Visitor, Endpoint]]:
    def join(i: int) -> tuple[Visitor, Endpoint]:
        visitor, endpoint = Visitor(), endpoints[i % len(endpoints)]
        response = visitor.join(endpoint, f"Member {i}")
        if response.status_code != 302:
            raise RuntimeError(f"join {i} answered {response.status_code}")
        visitor.http.close()  # keep the cookies, not 10,000 idle HTTP connections
        return visitor, endpoint

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(join, range(count)))


async def open_room_socket(visitor: Visitor, endpoint: Endpoint, language: str = "en"):
    """The member's room page socket, as a browser opens it (no compression, no pings), for a
    page in `language`."""
    cookie = "; ".join(f"{k}={v}" for k, v in visitor.http.cookies.items())
    return await connect(
        f"ws://127.0.0.1:{endpoint.port}/ws/room/?l={language}",
        origin=endpoint.url,
        additional_headers={"Cookie": cookie},
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=120,
        close_timeout=2,
    )


async def read_snapshot_size(socket) -> int:
    """Under daphne a snapshot is two messages: the room's list, then the page's own part."""
    members = await asyncio.wait_for(socket.recv(), 120)
    return len(members) + len(await asyncio.wait_for(socket.recv(), 120))


async def open_pages(
    members, run: int, arrivals: dict, at_once: int, languages: tuple[str, ...] = ("en",)
) -> tuple[list[Page], list[asyncio.Task], float, int]:
    limit = asyncio.Semaphore(at_once)
    snapshot_sizes, readers = [], []

    async def open_one(visitor: Visitor, endpoint: Endpoint, language: str) -> Page:
        async with limit:
            socket = await open_room_socket(visitor, endpoint, language)
            snapshot_sizes.append(await read_snapshot_size(socket))
        page = Page(socket, run, arrivals)
        # A page reads from the moment it has its list, as a browser does: one left unread
        # stops answering the server's pings and is dropped.
        readers.append(asyncio.create_task(page.read()))
        return page

    started = time.perf_counter()
    pages = await asyncio.gather(
        *(
            open_one(visitor, endpoint, languages[i % len(languages)])
            for i, (visitor, endpoint) in enumerate(members)
        )
    )
    return list(pages), readers, time.perf_counter() - started, max(snapshot_sizes)


async def measure(
    endpoints: list[Endpoint], config: Config, size: int, events: int, at_once: int, gap: float
) -> Result:
    run = int(time.time())
    arrivals: dict[tuple[int, str], list[float]] = {}
    members = await asyncio.to_thread(join_members, endpoints, size)
    rss_before = [endpoint.resident_kib() for endpoint in endpoints]
    pages, readers, connect_seconds, snapshot_bytes = await open_pages(
        members, run, arrivals, at_once, config.languages
    )
    settle_seconds = await settle(pages)
    # This client's own collector would stop it reading for tens of milliseconds at a time
    # once it holds thousands of sockets: set what it has aside, so pauses are the server's.
    gc.collect()
    gc.freeze()
    rss_after = [endpoint.resident_kib() for endpoint in endpoints]

    probe, probe_endpoint = Visitor(), endpoints[0]
    await asyncio.to_thread(probe.http.get, f"{probe_endpoint.url}/room/join/", timeout=10)
    socket_latencies, last_socket, post_latencies, lost = [], [], [], 0
    cpu_before = [endpoint.cpu_seconds() for endpoint in endpoints]
    for event in range(events):
        for kind in ("joined", "left"):
            sent = time.perf_counter()
            if kind == "joined":
                response, answered = await asyncio.to_thread(
                    timed, probe.post_join, probe_endpoint, f"probe-{run}-{event}"
                )
            else:
                response, answered = await asyncio.to_thread(timed, probe.leave, probe_endpoint)
            post_latencies.append(answered - sent)
            if response.status_code != 302:
                raise RuntimeError(f"probe {kind} answered {response.status_code}")
            deadline = time.perf_counter() + 10
            # Arrivals are timestamped as they are read; this loop only decides when to move on.
            while len(arrivals.get((event, kind), [])) < size and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            times = arrivals.get((event, kind), [])
            lost += size - len(times)
            socket_latencies += [arrival - sent for arrival in times]
            if times:
                last_socket.append(max(times) - sent)
            await asyncio.sleep(gap)

    dropped = sum(reader.done() for reader in readers)  # closed by the server
    cpu_after = [endpoint.cpu_seconds() for endpoint in endpoints]
    server_cpu = None
    if None not in cpu_before:
        server_cpu = (sum(cpu_after) - sum(cpu_before)) / (2 * events)
    for page in pages:
        await page.socket.close()
    gc.unfreeze()
    await asyncio.gather(*readers, return_exceptions=True)
    bytes_per_event = statistics.mean(page.bytes_after_snapshot for page in pages) / (2 * events)
    server_kib = None
    if None not in rss_before:
        server_kib = (sum(rss_after) - sum(rss_before)) / size
    ms = 1000
    return Result(
        config=config.name,
        members=size,
        servers=len(endpoints),
        events=2 * events,
        gap_s=gap,
        socket_p50_ms=percentile(socket_latencies, 0.5) * ms,
        socket_p99_ms=percentile(socket_latencies, 0.99) * ms,
        last_socket_median_ms=statistics.median(last_socket) * ms if last_socket else float("nan"),
        last_socket_p99_ms=percentile(last_socket, 0.99) * ms,
        last_socket_max_ms=max(last_socket) * ms if last_socket else float("nan"),
        lost=lost,
        post_p50_ms=percentile(post_latencies, 0.5) * ms,
        post_p99_ms=percentile(post_latencies, 0.99) * ms,
        post_max_ms=max(post_latencies) * ms,
        bytes_per_socket_per_event=bytes_per_event,
        server_kib_per_socket=server_kib,
        server_cpu_ms_per_event=None if server_cpu is None else server_cpu * ms,
        connect_all_s=connect_seconds,
        settle_s=settle_seconds,
        pages_dropped=dropped,
        snapshot_bytes=snapshot_bytes,
        resyncs=sum(page.resyncs for page in pages),
        last_socket_each_ms=[round(seconds * ms, 1) for seconds in last_socket],
        post_each_ms=[round(seconds * ms, 1) for seconds in post_latencies],
    )


def production_environment(work: Path) -> dict[str, str]:
    """The test servers' environment with production's defaults (heartbeats and presence on),
    on an empty database."""
    env = server_environment(work)
    env.pop("LIVEROOM_HEARTBEAT_SECONDS")
    env.pop("LIVEROOM_PRESENCE")
    empty_database(env)
    return env


async def members_joined(env: dict[str, str], work: Path, count: int) -> list:
    """`count` members joined through a server of their own, stopped after."""
    joiner = Daphne(env, work / "joins.log").start()
    try:
        return await asyncio.to_thread(join_members, [Endpoint(joiner.url, joiner)], count)
    finally:
        joiner.stop()


def start_servers(work: Path, config: Config, count: int) -> tuple[list[Endpoint], list[Daphne]]:
    env = production_environment(work)
    servers = [Daphne(env, work / f"server-{i}.log").start() for i in range(count)]
    return [Endpoint(server.url, server) for server in servers], servers


def print_result(result: Result) -> None:
    kib = "-" if result.server_kib_per_socket is None else f"{result.server_kib_per_socket:.1f}"
    cpu = "-" if result.server_cpu_ms_per_event is None else f"{result.server_cpu_ms_per_event:.0f}"
    print(
        f"{result.config:<22} N={result.members:<6} servers={result.servers} gap {result.gap_s} s "
        f"socket p50/p99 {result.socket_p50_ms:7.1f}/{result.socket_p99_ms:7.1f} ms  "
        f"last socket median/p99/max {result.last_socket_median_ms:7.1f}/"
        f"{result.last_socket_p99_ms:7.1f}/{result.last_socket_max_ms:7.1f} ms  "
        f"lost {result.lost}  POST p50/p99/max {result.post_p50_ms:5.1f}/"
        f"{result.post_p99_ms:5.1f}/{result.post_max_ms:5.1f} ms  "
        f"{result.bytes_per_socket_per_event:.0f} B/socket/event  {kib} KiB/socket  "
        f"server CPU {cpu} ms/event  "
        f"connect all {result.connect_all_s:.1f} s  settled {result.settle_s:.1f} s later  "
        f"snapshot {result.snapshot_bytes} B  resyncs {result.resyncs}  "
        f"pages dropped {result.pages_dropped}",
        flush=True,
    )


async def run(args: argparse.Namespace) -> list[Result]:
    plan: list[tuple[Config, int, int]]
    if args.smoke:
        plan = [(Config("smoke", ("en", "de", "ar")), 20, 1)]  # pages in three languages
    else:
        sizes = args.sizes or [100, 1000, 5000, 10000]
        configs = [
            Config("liveroom " + "+".join(languages), languages)
            for languages in (args.languages or [("en",)])
        ] if args.languages else [Config("liveroom")]  # fmt: skip
        plan = [
            (config, size, 2 if size >= 10000 else 1)
            for _ in range(args.rounds)
            for size in sizes
            for config in configs
        ]
    if args.url:
        plan = [(config, size, 1) for config, size, _ in plan]

    results = []
    for config, size, server_count in plan:
        work = Path(tempfile.mkdtemp(prefix="liveroom-fanout-"))
        if args.url:
            endpoints, servers = [Endpoint(args.url)], []
        else:
            endpoints, servers = start_servers(work, config, server_count)
        try:
            result = await measure(
                endpoints, config, size, args.events, args.connect_at_once, args.gap
            )
        finally:
            for server in servers:
                server.stop()
        print_result(result)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda text: [int(n) for n in text.split(",")])
    parser.add_argument(
        "--events", type=int, default=50,
        help="joins (and as many leaves): 100 changes give a p99 that is not just the maximum",
    )  # fmt: skip
    parser.add_argument(
        "--gap", type=float, default=0.25,
        help="seconds from a change reaching every page to the next change",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--url", help="measure a running server instead of starting one")
    parser.add_argument(
        "--connect-at-once", type=int, default=200, help="socket handshakes in flight at a time"
    )
    parser.add_argument(
        "--languages", action="append", type=lambda text: tuple(text.split(",")),
        help="the pages' languages, e.g. en,de,ar; give it again for another run to compare",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="times to run the whole plan")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.smoke:
        args.events = 3
    results = asyncio.run(run(args))
    machine = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "layer_url": "redis" if os.environ.get("REDIS_URL") else "in-memory",
        "database": "postgresql" if os.environ.get("DATABASE_URL") else "sqlite",
        "client": "same machine, same cores as the servers",
    }
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "results": [asdict(r) for r in results]}, indent=2)
            + "\n"
        )
    if any(result.lost for result in results):
        sys.exit("deliveries were lost")


if __name__ == "__main__":
    main()
