"""A crowded room: the page and the search of a room of 50,000 members.

    python -m bench.crowd                     # 50,000 members (needs DATABASE_URL: PostgreSQL)
    python -m bench.crowd --members 2000      # as the test suite runs it

`--members` members are seeded straight into PostgreSQL (COPY, one statement; the room's version
set as their joins would have left it), then one more joins through the form, as a browser does,
and uses the room: loads its page `--loads` times (one at a time: what one load costs the
server, loopback included), opens the socket the page names as a page that shows nothing yet
(its first list), and searches `--searches` times, as the search box does as one types (htmx's
request: the answer alone), each time for a member picked at random by their whole name (found
unless more than a screenful share it), and as many times for two letters most names have (the
widest search). liveroom is started the way production runs it (`python -m liveroom.server`,
DATABASE_URL and REDIS_URL from the environment).
"""

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg

from bench.arrival import expect, socket_path
from bench.burst import join
from bench.fanout import percentile, production_environment
from harness.servers import Daphne

# Given names and family names from many languages: a room's names are as varied as its people.
GIVEN = """
Aaliyah Abdul Ada Adele Adrian Ahmed Aiko Aisha Alan Alba Alejandro Alessia Ali Alice Amara Amir
Ana Anders Andrea Anja Anton Arjun Astrid Aylin Beatriz Ben Bianca Bilal Boris Camila Carlos
Carmen Chen Chiara Chloe Dana Daniel Dara Dmitri Elena Elif Emeka Emil Emma Enzo Esther Ewa
Fatima Felix Finn Freya Gabriel Giulia Hana Hannah Hassan Helga Hugo Ibrahim Ines Ingrid Isabel
Ivan Jamal Jana Javier Jin Johan Jonas Jorge Julia Kai Karim Kasia Kenji Kofi Lara Leila Lena
Leo Lin Luca Lucia Mai Malik Marco Maria Marta Mateo Maya Mei Mia Mohammed Nadia Naomi Nia
Nikolai Nina Noah Nour Olga Omar Oskar Pablo Paula Pedro Priya Rafael Rania Ravi Rosa Sara Sofia
Sven Tariq Tomas Valentina Wei Yara Yusuf Zainab Zoe
""".split()  # noqa: SIM905
FAMILY = """
Abe Adeyemi Ahmadi Alvarez Andersen Ang Arslan Bauer Becker Bianchi Brandt Castro Chen Costa
Cruz Da Silva Demir Diaz Dubois Eriksson Esposito Fernandez Fischer Fontaine Garcia Gomez
Gonzalez Hansen Hashemi Herrera Hoffmann Hussain Ibrahim Ito Ivanov Jansen Jensen Johansson Kaya
Khan Kim Klein Koch Kowalski Kumar Lambert Larsen Laurent Lee Lehmann Lindqvist Lopez Marino
Martin Martinez Meyer Moreau Moreno Muller Murphy Nakamura Nguyen Nielsen Novak Nowak Okafor
Okeke Olsen Ortiz Ozturk Park Patel Perez Petrov Popescu Ramirez Reyes Ricci Rivera Romano Rossi
Russo Sahin Sanchez Santos Sato Schmidt Schneider Schulz Silva Singh Smirnov Sousa Suzuki Tanaka
Torres Vargas Wagner Wang Weber Wolf Wong Yamamoto Yilmaz Zhang Zimmermann
""".split()  # noqa: SIM905
BROAD = "an"  # in most names
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Result:
    members: int  # in the room, the newcomer included
    page_kib: float
    page_ms_median: float
    page_ms_p99: float
    first_list_kib: float  # what the socket of a page that shows nothing is sent first
    shows_count: bool
    search_ms_median: float
    search_ms_p99: float
    searches_found: int  # of the searches for a whole name, those that listed the member
    searches: int
    broad_search_ms_p99: float
    broad_search_kib: float


def names(count: int, seed: int = 7) -> list[str]:
    """`count` different names: a given name, a family name, and past the pairs there are, a
    second given name."""
    rng = random.Random(seed)
    made: set[str] = set()
    while len(made) < count:
        given = rng.choice(GIVEN)
        if rng.random() < 0.5:
            given = f"{given} {rng.choice(GIVEN)}"
        made.add(f"{given} {rng.choice(FAMILY)}")
    return sorted(made, key=lambda _: rng.random())


def seed(database_url: str, room: str, members: list[str]) -> None:
    """The room and its members, written straight into PostgreSQL: the triggers that bump the
    version for each write are off for this session, and the version is set once."""
    with psycopg.connect(database_url, autocommit=False) as connection:
        connection.execute("SET session_replication_role = replica")  # no triggers
        room_id = connection.execute(
            "INSERT INTO liveroom_room (slug, version, member_count, changed_at) "
            "VALUES (%s, %s, %s, now()) "
            "RETURNING id",
            (room, len(members), len(members)),
        ).fetchone()[0]
        with connection.cursor().copy(
            "COPY liveroom_member (room_id, session_key, name, hand_raised, joined_at, "
            "last_seen_at) FROM STDIN"
        ) as copy:
            for number, name in enumerate(members):  # one joining each millisecond
                joined = START + timedelta(milliseconds=number)
                copy.write_row((room_id, f"seeded{number:034d}", name, number % 50 == 0,
                                joined, joined))  # fmt: skip
        connection.execute("ANALYZE liveroom_member")
        connection.commit()


async def timed_get(
    session: aiohttp.ClientSession, url: str, **kwargs: object
) -> tuple[float, str]:
    started = time.perf_counter()
    async with session.get(url, **kwargs) as response:
        body = await response.text()
        expect(response.status, 200, url)
    return time.perf_counter() - started, body


async def first_list(base: str, session: aiohttp.ClientSession, page: str) -> int:
    """Bytes the socket sends a page that shows nothing yet (version 0), until it is quiet."""
    path = socket_path(page).split("?")[0] + "?v=0&p=0&l=en"
    url = f"{base.replace('http', 'ws', 1)}{path}"
    total = 0
    async with session.ws_connect(url, headers={"Origin": base}, max_msg_size=0) as socket:
        while True:
            try:
                message = await socket.receive(timeout=1.0)
            except TimeoutError:
                return total
            if message.type != aiohttp.WSMsgType.TEXT:
                return total
            total += len(message.data.encode())


async def measure(base: str, members: list[str], loads: int, searches: int) -> Result:
    ms = 1000
    rng = random.Random(11)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout
    ) as session:
        await join(base, session, "Newcomer")
        page_times, page = [], ""
        for _ in range(loads):
            seconds, page = await timed_get(session, f"{base}/room/")
            page_times.append(seconds)
        listed = await first_list(base, session, page)
        htmx = {"HX-Request": "true"}
        search_times, found = [], 0
        for name in rng.sample(members, searches):
            seconds, answer = await timed_get(
                session, f"{base}/room/", params={"q": name}, headers=htmx
            )
            search_times.append(seconds)
            found += f">{name}<" in answer
        broad_times, broad = [], ""
        for _ in range(searches):
            seconds, broad = await timed_get(
                session, f"{base}/room/", params={"q": BROAD}, headers=htmx
            )
            broad_times.append(seconds)
    return Result(
        members=len(members) + 1,
        page_kib=round(len(page.encode()) / 1024, 1),
        page_ms_median=round(statistics.median(page_times) * ms, 1),
        page_ms_p99=round(percentile(page_times, 0.99) * ms, 1),
        first_list_kib=round(listed / 1024, 1),
        shows_count=f"{len(members) + 1:,} people here".replace(",", "") in page.replace(",", ""),
        search_ms_median=round(statistics.median(search_times) * ms, 1),
        search_ms_p99=round(percentile(search_times, 0.99) * ms, 1),
        searches_found=found,
        searches=searches,
        broad_search_ms_p99=round(percentile(broad_times, 0.99) * ms, 1),
        broad_search_kib=round(len(broad.encode()) / 1024, 1),
    )


def print_result(result: Result) -> None:
    print(
        f"a room of {result.members:,}: the page {result.page_kib:.1f} KiB in "
        f"{result.page_ms_median:.1f} ms (p99 {result.page_ms_p99:.1f} ms), count shown "
        f"{'yes' if result.shows_count else 'NO'}; a new page's first list "
        f"{result.first_list_kib:.1f} KiB; search by name {result.search_ms_median:.1f} ms "
        f"(p99 {result.search_ms_p99:.1f} ms), found {result.searches_found} of "
        f'{result.searches}; the widest search ("{BROAD}") p99 '
        f"{result.broad_search_ms_p99:.1f} ms, {result.broad_search_kib:.1f} KiB",
        flush=True,
    )


async def run(args: argparse.Namespace) -> Result:
    work = Path(tempfile.mkdtemp(prefix="liveroom-crowd-"))
    env = production_environment(work)
    if not env.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("bench.crowd seeds PostgreSQL: set DATABASE_URL")
    members = names(args.members)
    await asyncio.to_thread(seed, env["DATABASE_URL"], "lobby", members)
    server = Daphne(env, work / "server.log").start()
    try:
        return await measure(server.url, members, args.loads, args.searches)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--loads", type=int, default=100)
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "result": asdict(result)}, indent=2))


if __name__ == "__main__":
    main()
