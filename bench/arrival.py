"""Arrival: N people arrive, C at a time, each as a browser does.

    python -m bench.arrival                              # N = 1,000, C = 50, one process
    python -m bench.arrival --people 5000 --at-once 100 --servers 2
    python -m bench.arrival --people 20 --at-once 5           # as the test suite runs it

Each person GETs the join page, POSTs the form, follows the redirect to the room page, opens
the room socket (with the page's cookies and Origin) and waits for its first message; the
socket then stays open, as the page's would. Any error, a status other than the expected one,
or a step over 30 s counts as a failure. The same arrival runs against bench/bare_room.py, a
bare single-process server with the same contract, in the same invocation, so the ratio holds
on a noisy machine. liveroom is started the way production runs it (`python -m
liveroom.server`, DATABASE_URL and REDIS_URL from the environment, presence and heartbeats on,
join limits lifted); the load client shares the machine's cores.

Prints per-arrival p50/p99, the time until all arrived, failures, the server's CPU time, the
bytes each person received and, for liveroom, how many whole lists its watch sent to pages it
took for behind (from the servers' logs: an arrival misses no change, so any it sends is work a
busy server made for itself) and what it wrote to pages' sockets (each process's
`liveroom_page_bytes_total`; a person here reads only their page's first message, and what comes
after waits in the socket's buffers). Then where that CPU went, from /proc: the event loop's
thread (daphne, Twisted, the live core) and the other threads (Django's requests, the database
pool), the part of it that was the kernel's, and how often the threads were switched out
(waiting for the database, and for each other's turn with Python's interpreter lock).

`--set NAME=VALUE` gives liveroom's servers a setting (say `--set LIVEROOM_PRESENCE=0`), to
see what a part of liveroom costs by turning it off. With `--floor`, the same arrival also runs
against bench/floor.py on liveroom's server: the stack liveroom runs on (daphne, Django with
liveroom's settings and middleware, Channels) with an application that does nothing of its
own; it prints that floor's CPU as a share of liveroom's.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from subprocess import Popen

import aiohttp
from yarl import URL

from bench.fanout import production_environment
from harness.servers import ROOT, Daphne, free_port

STEP_SECONDS = 30
FLOOR = "bench.floor:application"
PAGE_BYTES = re.compile(r"^liveroom_page_bytes_total (\S+)$", re.M)
WATCH_LISTS = re.compile(r"(\d+) pages missed a change; sending them the whole list")


@dataclass
class Result:
    server: str
    people: int
    at_once: int
    processes: int
    arrived: int
    failures: int
    p50_s: float
    p99_s: float
    max_s: float
    all_arrived_s: float
    server_cpu_s: float
    kib_per_person: float
    failure_kinds: dict[str, int] = field(default_factory=dict)
    watch_lists: int | None = None  # whole lists the watch sent (liveroom only)
    sent_to_pages_mib: float | None = None  # frames written to pages' sockets (liveroom only)
    threads: "Threads | None" = None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    user, system = cpu_times(f"/proc/{pid}/stat")
    return user + system


def cpu_times(stat_path: str) -> tuple[float, float]:
    """User and system CPU seconds of a process or thread, from its /proc stat."""
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Threads:
    """Where servers' CPU went between two readings: the event loop's thread (the main one)
    and the rest, the kernel's part of it, and how many times their threads were switched out
    (of the threads alive at the second reading)."""

    event_loop_cpu_s: float = 0.0
    other_threads_cpu_s: float = 0.0
    system_cpu_s: float = 0.0
    context_switches: int = 0


def thread_readings(pid: int) -> dict[str, float]:
    """One server's counters: its main thread's CPU, the process's CPU and system time, and
    each thread's context switches (by thread id)."""
    readings = {"main": sum(cpu_times(f"/proc/{pid}/task/{pid}/stat"))}
    readings["user"], readings["system"] = cpu_times(f"/proc/{pid}/stat")
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            status = (task / "status").read_text()
            readings[f"switches {task.name}"] = sum(
                int(line.split()[1]) for line in status.splitlines()
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
            )  # fmt: skip
    return readings


def threads_between(before: list[dict[str, float]], after: list[dict[str, float]]) -> Threads:
    threads = Threads()
    for start, end in zip(before, after, strict=True):
        loop = end["main"] - start["main"]
        total = end["user"] + end["system"] - start["user"] - start["system"]
        threads.event_loop_cpu_s += loop
        threads.other_threads_cpu_s += max(0.0, total - loop)  # (to the clock's tick)
        threads.system_cpu_s += end["system"] - start["system"]
        threads.context_switches += int(sum(
            count - start.get(name, 0) for name, count in end.items() if name.startswith("switches")
        ))  # fmt: skip
    for name in ("event_loop_cpu_s", "other_threads_cpu_s", "system_cpu_s"):
        setattr(threads, name, round(getattr(threads, name), 2))
    return threads


class Person:
    def __init__(self, number: int, base: str) -> None:
        self.number = number
        self.base = base
        self.received = 0
        self.session: aiohttp.ClientSession | None = None
        self.socket: aiohttp.ClientWebSocketResponse | None = None

    async def arrive(self) -> None:
        """The four steps; raises on anything a browser would show as broken."""
        timeout = aiohttp.ClientTimeout(total=STEP_SECONDS)
        self.session = session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout
        )
        form = {"name": f"Person {self.number}"}
        received, location = await post_form(
            self.base, session, "/room/join/", "/room/join/", form, "join"
        )
        self.received += received
        async with session.get(f"{self.base}{location}") as response:
            expect(response.status, 200, "room page")
            page = await response.text()
            self.received += len(page)
        path = socket_path(page)
        self.socket = await session.ws_connect(
            f"{self.base.replace('http', 'ws', 1)}{path}",
            headers={"Origin": self.base},
            autoping=True,
            heartbeat=None,
            max_msg_size=0,
        )
        message = await self.socket.receive(timeout=STEP_SECONDS)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise Failure(f"socket closed before its first message ({message.data})")
        self.received += len(message.data)

    async def leave(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.session is not None:
            await self.session.close()


class Failure(Exception):
    pass


async def post_form(
    base: str, session: aiohttp.ClientSession, page: str, action: str, fields: dict, step: str
) -> tuple[int, str]:
    """GET the `page` the form is on, then POST the form to `action` as a browser does; the
    bytes the page had, and where the answer (a 302) sends the browser."""
    async with session.get(f"{base}{page}") as response:
        expect(response.status, 200, f"{step} page")
        received = len(await response.read())
    token = session.cookie_jar.filter_cookies(URL(base)).get("csrftoken")
    form = {**fields, "csrfmiddlewaretoken": token.value if token else ""}
    headers = {"Referer": f"{base}{page}", "Origin": base}
    async with session.post(
        f"{base}{action}", data=form, headers=headers, allow_redirects=False
    ) as response:
        expect(response.status, 302, step)
        return received, response.headers["Location"]


def expect(status: int, wanted: int, step: str) -> None:
    if status != wanted:
        raise Failure(f"{step} answered {status}")


def socket_path(page: str) -> str:
    start = page.index("ws-connect=") + len("ws-connect=")
    quote = page[start]
    if quote in "\"'":
        return page[start + 1 : page.index(quote, start + 1)].replace("&amp;", "&")
    return page[start:].split(">", 1)[0].split()[0]


async def arrive_all(bases: list[str], people: int, at_once: int) -> tuple[list, dict, float, int]:
    limit = asyncio.Semaphore(at_once)
    times, failures, received = [], {}, 0
    persons = [Person(i, bases[i % len(bases)]) for i in range(people)]

    async def one(person: Person) -> None:
        nonlocal received
        async with limit:
            started = time.perf_counter()
            try:
                await person.arrive()
            except Exception as error:
                kind = str(error) if isinstance(error, Failure) else type(error).__name__
                failures[kind] = failures.get(kind, 0) + 1
                return
            times.append(time.perf_counter() - started)
            received += person.received

    started = time.perf_counter()
    await asyncio.gather(*(one(person) for person in persons))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(person.leave() for person in persons), return_exceptions=True)
    return times, failures, elapsed, received


async def measure(
    name: str,
    bases: list[str],
    pids: list[int],
    people: int,
    at_once: int,
    metrics: list[str] | None = None,
) -> Result:
    """The arrival against servers at `bases`; with the `metrics` addresses of liveroom's
    servers, what they wrote to pages too."""
    written = await pages_written(metrics) if metrics else 0
    before = [thread_readings(pid) for pid in pids]
    times, failures, elapsed, received = await arrive_all(bases, people, at_once)
    after = [thread_readings(pid) for pid in pids]
    if metrics:
        written = await pages_written(metrics) - written
    cpu = sum(end["user"] + end["system"] - start["user"] - start["system"]
              for start, end in zip(before, after, strict=True))  # fmt: skip
    threads = threads_between(before, after)
    return Result(
        server=name,
        people=people,
        at_once=at_once,
        processes=len(pids),
        arrived=len(times),
        failures=sum(failures.values()),
        p50_s=round(percentile(times, 0.5), 3),
        p99_s=round(percentile(times, 0.99), 3),
        max_s=round(max(times, default=float("nan")), 3),
        all_arrived_s=round(elapsed, 2),
        server_cpu_s=round(cpu, 2),
        kib_per_person=round(received / max(1, len(times)) / 1024, 1),
        failure_kinds=failures,
        threads=threads,
        sent_to_pages_mib=round(written / 2**20, 3) if metrics else None,
    )


async def pages_written(metrics: list[str]) -> int:
    """The bytes liveroom's servers have written to pages' sockets so far (each process's
    `liveroom_page_bytes_total`)."""
    total = 0
    async with aiohttp.ClientSession() as session:
        for address in metrics:
            async with session.get(f"http://{address}/metrics") as response:
                text = await response.text()
            total += int(float(PAGE_BYTES.findall(text)[0]))
    return total


def print_result(result: Result) -> None:
    print(
        f"{result.server:<9} N={result.people} C={result.at_once} processes={result.processes}: "
        f"arrived {result.arrived}, failures {result.failures}"
        f"{' ' + json.dumps(result.failure_kinds) if result.failure_kinds else ''}; "
        f"arrival p50/p99/max {result.p50_s:.2f}/{result.p99_s:.2f}/{result.max_s:.2f} s; "
        f"all arrived after {result.all_arrived_s:.1f} s; server CPU {result.server_cpu_s:.1f} s; "
        f"{result.kib_per_person:.1f} KiB a person"
        + ("" if result.watch_lists is None else f"; watch's whole lists {result.watch_lists}")
        + (
            ""
            if result.sent_to_pages_mib is None
            else f"; {result.sent_to_pages_mib:,.1f} MiB written to pages"
        ),
        flush=True,
    )
    if (threads := result.threads) is not None:
        print(
            f"{'':<9} where: event loop {threads.event_loop_cpu_s:.1f} s, other threads "
            f"{threads.other_threads_cpu_s:.1f} s; the kernel's part {threads.system_cpu_s:.1f} s; "
            f"threads switched out {threads.context_switches:,} times",
            flush=True,
        )


async def run_liveroom(
    people: int, at_once: int, processes: int, settings: dict[str, str] | None = None
) -> Result:
    work = Path(tempfile.mkdtemp(prefix="liveroom-arrival-"))
    env = production_environment(work) | (settings or {})
    metrics = [f"127.0.0.1:{free_port()}" for _ in range(processes)]
    servers = [
        Daphne(env | {"LIVEROOM_METRICS_ADDRESS": address}, work / f"server-{i}.log").start()
        for i, address in enumerate(metrics)
    ]
    try:
        result = await measure(
            "liveroom",
            [server.url for server in servers],
            [server.process.pid for server in servers],
            people,
            at_once,
            metrics,
        )
        result.watch_lists = sum(watch_lists(server.log_path.read_text()) for server in servers)
        return result
    finally:
        for server in servers:
            server.stop()


def watch_lists(log: str) -> int:
    """The pages a server's watch sent a whole list, as its log says ("N pages missed a
    change")."""
    return sum(int(count) for count in WATCH_LISTS.findall(log))


async def run_floor(people: int, at_once: int) -> Result:
    """The same arrival on liveroom's server running bench/floor.py: the stack, doing nothing."""
    work = Path(tempfile.mkdtemp(prefix="liveroom-arrival-floor-"))
    server = Daphne(production_environment(work), work / "floor.log", extra_args=(FLOOR,))
    server.start()
    try:
        return await measure("floor", [server.url], [server.process.pid], people, at_once)
    finally:
        server.stop()


async def run_bare(people: int, at_once: int) -> Result:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare_room", "--port", str(port)]
    process = Popen(command, cwd=ROOT)  # noqa: ASYNC220 (started once, before measuring)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"{base}/room/join/") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        return await measure("bare", [base], [process.pid], people, at_once)
    finally:
        process.terminate()
        process.wait()


async def run(args: argparse.Namespace) -> list[Result]:
    liveroom = await run_liveroom(args.people, args.at_once, args.servers, dict(args.set))
    print_result(liveroom)
    results = [liveroom]
    if args.floor:
        floor = await run_floor(args.people, args.at_once)
        print_result(floor)
        results.append(floor)
        share = floor.server_cpu_s / max(liveroom.server_cpu_s, 0.01)
        print(f"floor / liveroom: server CPU x{share:.2f}", flush=True)
    if not args.no_reference:
        bare = await run_bare(args.people, args.at_once)
        print_result(bare)
        results.append(bare)
        cpu = liveroom.server_cpu_s / max(bare.server_cpu_s, 0.01)
        p99 = liveroom.p99_s / max(bare.p99_s, 0.001)
        print(f"liveroom / bare: server CPU x{cpu:.1f}, arrival p99 x{p99:.1f}", flush=True)
    return results


def setting(text: str) -> tuple[str, str]:
    """NAME=VALUE, as --set takes it."""
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--at-once", type=int, default=50)
    parser.add_argument("--servers", type=int, default=1, help="liveroom processes")
    parser.add_argument("--no-reference", action="store_true", help="skip the bare server")
    parser.add_argument(
        "--floor", action="store_true", help="also run bench/floor.py: the stack, doing nothing"
    )
    parser.add_argument(
        "--set", type=setting, action="append", default=[], metavar="NAME=VALUE",
        help="an environment variable for liveroom's servers (docs/configuration.md); repeatable",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    if any(result.failures for result in results):
        sys.exit("some people did not arrive")


if __name__ == "__main__":
    main()
