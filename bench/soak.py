"""Days of use in minutes: does anything pile up, and does every page stay right?

    python -m bench.soak                                  # 10 minutes, 8 rooms
    python -m bench.soak --minutes 1 --rooms 3 --watchers 2 --churners 2

Needs DATABASE_URL (PostgreSQL) and REDIS_URL: the pages are compared with both. One server
started the way production runs it (`python -m liveroom.server`, presence and heartbeats on),
with a short clock: a presence grace of 1 s, expiry of 4 s, idle removal after 3 s away and
empty rooms removed 3 s after their last change (sweeps every second).

For --minutes, in --rooms rooms:
- --watchers members per room keep a page each, modelled as htmx swaps it
  (liveroom.testing). Every 5-20 s a page's connection drops (half with a close handshake,
  half without); after up to a second it reconnects to the same URL as the htmx ws extension
  does, or reloads the page.
- --churners people come and go as fast as they can: join a random room, open its page, stay
  up to 3 s, perhaps rename, then leave, or vanish with the page closed and no leave (idle
  removal takes them).

At checkpoints it prints the server's resident memory, the rooms and members in PostgreSQL and
the app's keys in Redis. Then the churn stops and, once the clock has run out for everything
(grace, idle removal, the watch's healing), every page must show the members PostgreSQL has for
its room and the presence Redis has. Then the watchers leave too: every room and member must be
gone from PostgreSQL and every key from Redis, but for those that expire by themselves.
Exits non-zero if a page was wrong or anything was left behind.
"""

import argparse
import itertools
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import redis
import requests
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.churn import resident_kib
from bench.fanout import production_environment
from harness.servers import Daphne, page_socket
from liveroom.testing.dom import Page

SHORT_CLOCK = {
    "LIVEROOM_PRESENCE_GRACE_SECONDS": "1",
    "LIVEROOM_PRESENCE_EXPIRY_SECONDS": "4",
    "LIVEROOM_IDLE_REMOVAL_SECONDS": "3",
    "LIVEROOM_EMPTY_ROOM_SECONDS": "3",
}
# Until a page must be right after the churn stops: grace, idle removal and a sweep, the watch's
# presence healing (5 s), and a margin for a loaded machine.
SETTLE_SECONDS = 1 + 3 + 1 + 5 + 5
# Until the rooms must be gone after the last leave: their delay, a sweep, and a margin.
CLEANUP_SECONDS = 3 + 1 + 4

counts: Counter[str] = Counter()
counting = threading.Lock()


def count(what: str) -> None:
    with counting:
        counts[what] += 1


class Person:
    """One browser: its cookies, and what it posts."""

    def __init__(self, base: str, room: str) -> None:
        self.base = base
        self.room = room
        self.http = requests.Session()

    def url(self, path: str = "") -> str:
        return f"{self.base}/room/{self.room}/{path}"

    def join(self, name: str) -> None:
        if "csrftoken" not in self.http.cookies:
            self.http.get(self.url("join/"), timeout=30)
        self.post("join/", name=name)

    def leave(self) -> None:
        self.post("leave/")

    def post(self, path: str, **data: str) -> None:
        response = self.http.post(
            self.url(path),
            data={**data, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            headers={"Referer": self.url(path), "Origin": self.base},
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code != 302:
            raise RuntimeError(f"POST {path} answered {response.status_code}")

    def load(self) -> tuple[str, Page]:
        """The room page: its socket's path, and its list as the browser shows it."""
        html = self.http.get(self.url(), timeout=30).text
        page = Page()
        page.apply(re.search(r'<ul id="members".*?</ul>', html, re.DOTALL)[0])
        return re.search(r'ws-connect="([^"]+)"', html)[1].replace("&amp;", "&"), page

    def connect(self, path: str):
        return page_socket(self.http, self.base, path, open_timeout=30, max_size=None)


def drop(socket) -> None:
    """A lost connection: half close cleanly, half vanish without a close handshake."""
    if random.random() < 0.5:
        socket.close()
    else:
        socket.close_socket()


class Watcher(threading.Thread):
    """A member who keeps the room page open through drops, reconnects and reloads."""

    def __init__(self, base: str, room: str, name: str, stopping: threading.Event) -> None:
        super().__init__(daemon=True)
        self.person = Person(base, room)
        self.person.join(name)
        self.path, self.page = self.person.load()
        self.stopping = stopping  # no more drops: read until done
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.failure = ""

    def run(self) -> None:
        try:
            while not self.done.is_set():
                self.read_until_dropped()
                if self.done.is_set():
                    return
                time.sleep(random.uniform(0, 1))  # the htmx ws extension's first backoff
                if random.random() < 0.5:
                    with self.lock:
                        self.path, self.page = self.person.load()
                    count("reloads")
                else:
                    count("reconnects")
        except Exception as error:  # reported at the end
            self.failure = f"{type(error).__name__}: {error}"

    def read_until_dropped(self) -> None:
        try:
            socket = self.person.connect(self.path)
        except (OSError, InvalidHandshake, TimeoutError):
            count("connect_failures")
            return
        until = time.monotonic() + random.uniform(5, 20)
        with socket:
            while not self.done.is_set():
                try:
                    message = socket.recv(timeout=0.5)
                except TimeoutError:
                    if not self.stopping.is_set() and time.monotonic() > until:
                        drop(socket)
                        return
                    continue
                except ConnectionClosed:
                    count(f"closed_by_server_{socket.close_code}")
                    return
                with self.lock:
                    self.page.apply(message)

    def shown(self) -> tuple[dict[str, str], set[str], list[str]]:
        with self.lock:
            online = {dom_id for dom_id, state in self.page.presence().items() if state == "online"}
            return self.page.entries(), online, list(self.page.errors)


def churn(base: str, rooms: list[str], number: int, stopping: threading.Event) -> str:
    """Come and go until `stopping`; the failure, if any."""
    names = itertools.count()
    try:
        while not stopping.is_set():
            person = Person(base, random.choice(rooms))
            person.join(f"Passer-by {number}.{next(names)}")
            count("joins")
            path, _ = person.load()
            with person.connect(path) as socket:
                stay_until = time.monotonic() + random.uniform(0.2, 3)
                renamed = random.random() < 0.3
                while time.monotonic() < stay_until:
                    try:
                        socket.recv(timeout=0.2)
                    except TimeoutError:
                        if renamed:
                            person.join(f"Renamed {number}.{next(names)}")
                            count("renames")
                            renamed = False
                if random.random() < 0.7:
                    person.leave()
                    count("leaves")
                    socket.close()
                else:
                    drop(socket)  # gone without leaving: idle removal's turn
                    count("vanished")
    except Exception as error:  # reported at the end
        return f"{type(error).__name__}: {error}"
    return ""


class Observed:
    """What the server keeps: PostgreSQL's rooms and members, Redis's keys."""

    def __init__(self, env: dict[str, str]) -> None:
        self.database_url = env["DATABASE_URL"]
        self.redis = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
        self.prefix = env["LIVEROOM_CHANNEL_PREFIX"]

    def members(self) -> dict[str, dict[str, str]]:
        """room slug -> {member dom id: name}"""
        rooms: dict[str, dict[str, str]] = {}
        with psycopg.connect(self.database_url) as connection:
            for slug, member_id, name in connection.execute(
                "SELECT r.slug, m.id, m.name FROM liveroom_room r"
                " LEFT JOIN liveroom_member m ON m.room_id = r.id"
            ):
                members = rooms.setdefault(slug, {})
                if member_id is not None:
                    members[f"member-{member_id}"] = name
        return rooms

    def online(self, slug: str) -> set[str]:
        counts = f"{self.prefix}:presence:counts:{slug}"
        return {f"member-{member}" for member in self.redis.hkeys(counts)}

    def keys(self) -> dict[str, int]:
        """The app's keys in Redis, each with its time to live (-1: none)."""
        return {key: self.redis.ttl(key) for key in self.redis.scan_iter(f"{self.prefix}:*")}

    def checkpoint(self, started: float, server: Daphne) -> dict:
        rooms = self.members()
        keys = self.keys()
        with counting:
            done = dict(counts)
        return {
            "seconds": round(time.monotonic() - started),
            "server_rss_kib": resident_kib(server.process.pid),
            "rooms": len(rooms),
            "members": sum(len(members) for members in rooms.values()),
            "redis_keys": len(keys),
            "redis_keys_without_expiry": sum(1 for ttl in keys.values() if ttl == -1),
            **done,
        }


def compare(watchers: list[Watcher], observed: Observed) -> dict[int, list[str]]:
    """Each page against PostgreSQL and Redis: the differences found, by page."""
    rooms = observed.members()
    wrong: dict[int, list[str]] = {}
    for number, watcher in enumerate(watchers):
        slug = watcher.person.room
        members, online, errors = watcher.shown()
        found = []
        if errors:
            found.append(f"htmx errors {errors[:3]}")
        if members != rooms.get(slug, {}):
            found.append(f"shows {members}, the database has {rooms.get(slug)}")
        if online != (in_store := observed.online(slug)):
            found.append(f"shows online {sorted(online)}, the store {sorted(in_store)}")
        if found:
            wrong[number] = [f"{slug}: {difference}" for difference in found]
    return wrong


def run(args: argparse.Namespace) -> int:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get(
        "REDIS_URL"
    ):
        sys.exit("bench.soak compares pages with PostgreSQL and Redis: set both URLs")
    work = Path(tempfile.mkdtemp(prefix="liveroom-soak-"))
    env = production_environment(work) | SHORT_CLOCK
    server = Daphne(env, work / "server.log").start()
    observed = Observed(env)
    rooms = [f"soak-{number}" for number in range(args.rooms)]
    stopping = threading.Event()
    watchers = [
        Watcher(server.url, room, f"Watcher {room}.{number}", stopping)
        for room in rooms
        for number in range(args.watchers)
    ]
    for watcher in watchers:
        watcher.start()
    started = time.monotonic()
    until = started + args.minutes * 60
    failures: list[str] = []
    churners = [
        threading.Thread(target=lambda n=n: failures.append(churn(server.url, rooms, n, stopping)))
        for n in range(args.churners)
    ]
    for thread in churners:
        thread.start()
    rows = []
    try:
        every = args.minutes * 60 / 10
        for checkpoint in range(11):
            time.sleep(max(0.0, started + checkpoint * every - time.monotonic()))
            rows.append(observed.checkpoint(started, server))
            print(json.dumps(rows[-1]), flush=True)
        assert time.monotonic() >= until - 1
        stopping.set()
        for thread in churners:
            thread.join()
        time.sleep(SETTLE_SECONDS)
        wrong = compare(watchers, observed)
        for watcher in watchers:
            watcher.done.set()
            watcher.join()
            watcher.person.leave()
        time.sleep(CLEANUP_SECONDS)
        final = observed.checkpoint(started, server)
        final_keys = observed.keys()
        left_keys = {key: ttl for key, ttl in final_keys.items() if ttl == -1}
    finally:
        stopping.set()
        for watcher in watchers:
            watcher.done.set()
        server.stop()
    failures = [failure for failure in failures if failure]
    failures += [watcher.failure for watcher in watchers if watcher.failure]
    half, warm, last = rows[len(rows) // 2], rows[1], rows[-1]
    late_growth = last["server_rss_kib"] - half["server_rss_kib"]
    late_minutes = (last["seconds"] - half["seconds"]) / 60
    print(
        f"{args.minutes:g} min, {args.rooms} rooms, {len(watchers)} watching pages, "
        f"{args.churners} people churning: {final.get('joins', 0)} joins, "
        f"{final.get('renames', 0)} renames, {final.get('leaves', 0)} leaves, "
        f"{final.get('vanished', 0)} vanished, {final.get('reconnects', 0)} reconnects, "
        f"{final.get('reloads', 0)} reloads"
    )
    print(
        f"server RSS {warm['server_rss_kib']} KiB at {warm['seconds']} s, "
        f"{half['server_rss_kib']} at {half['seconds']} s, {last['server_rss_kib']} at "
        f"{last['seconds']} s: {late_growth:+} KiB in the second half "
        f"({late_growth / max(late_minutes, 1e-9):+.0f} KiB a minute)"
    )
    differences = [difference for found in wrong.values() for difference in found]
    print(
        f"{len(watchers) - len(wrong)} of {len(watchers)} pages matched PostgreSQL and Redis "
        f"{SETTLE_SECONDS} s after the churn stopped"
        f"{'' if not wrong else ': ' + '; '.join(differences[:5])}"
    )
    kinds = Counter(
        re.sub(r"[0-9a-z]{20,}|\d+", "*", key.removeprefix(observed.prefix)) for key in final_keys
    )
    print(
        f"after everyone left: {final['rooms']} rooms, {final['members']} members, "
        f"{len(final_keys)} Redis keys ({dict(kinds)}), {len(left_keys)} without an expiry"
        f"{': ' + ', '.join(sorted(left_keys)[:5]) if left_keys else ''}"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "final": final}, indent=2) + "\n")
    problems = failures + differences
    if final["rooms"] or final["members"] or left_keys:
        problems.append("something was left behind")
    for problem in failures:
        print(f"failure: {problem}")
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rooms", type=int, default=8)
    parser.add_argument("--watchers", type=int, default=4, help="pages kept open per room")
    parser.add_argument("--churners", type=int, default=6, help="people coming and going")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
