"""A presence burst: do pages show the store's presence a few seconds after it?

    python -m bench.presence_burst                    # 800 pages, 24 people churning for 30 s
    python -m bench.presence_burst --pages 100 --churners 4 --seconds 5

One server started the way production runs it (`python -m liveroom.server`, DATABASE_URL and
REDIS_URL from the environment, presence and heartbeats on, join limits lifted). --pages
members each open a page, whose presence (every `presence-<id>` element it is sent, as htmx swaps
them) is kept. Then,
for --seconds, --churners people join and leave as fast as they can, while a quarter of the
pages close (their members go away). After the grace period and 5 s more, every open page's
presence is compared with the store's: prints how many pages show it exactly, and the broadcasts
the server logged as skipped.
"""

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis

from bench.fanout import members_joined, production_environment
from harness.servers import Daphne, Visitor

GRACE_SECONDS = 2.0
PRESENCE = re.compile(r'id="presence-(\d+)" class="presence presence--(online|away)"')


class Page:
    def __init__(self, visitor: Visitor, base: str) -> None:
        cookie = "; ".join(f"{name}={value}" for name, value in visitor.http.cookies.items())
        self.headers = {"Cookie": cookie, "Origin": base}
        self.base = base
        self.presence: dict[str, str] = {}  # member dom id -> "online" / "away", as shown
        self.socket: aiohttp.ClientWebSocketResponse | None = None

    async def open(self, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{self.base}/room/", headers=self.headers) as response:
            html = await response.text()
        self.apply(html)
        path = re.search(r'ws-connect="([^"]+)"', html)[1].replace("&amp;", "&")
        self.socket = await session.ws_connect(
            f"{self.base.replace('http', 'ws', 1)}{path}",
            headers=self.headers,
            max_msg_size=0,
            heartbeat=None,
        )

    async def read(self) -> None:
        assert self.socket is not None
        async for message in self.socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.apply(message.data)

    def apply(self, html: str) -> None:
        for member, state in PRESENCE.findall(html):
            self.presence[f"member-{member}"] = state

    def online(self) -> set[str]:
        return {dom_id for dom_id, state in self.presence.items() if state == "online"}


def churn(server: Daphne, number: int, until: float) -> int:
    visitor, changes = Visitor(), 0
    while time.monotonic() < until:
        visitor.join(server, f"Churner {number}")
        visitor.leave(server)
        changes += 2
    return changes


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="liveroom-presence-burst-"))
    env = production_environment(work)
    env["LIVEROOM_PRESENCE_GRACE_SECONDS"] = str(GRACE_SECONDS)
    members = await members_joined(env, work, args.pages)
    server = Daphne(env, work / "server.log").start()
    store = redis.Redis.from_url(env["REDIS_URL"])
    prefix = f"{env['LIVEROOM_CHANNEL_PREFIX']}:presence:"
    pages = [Page(visitor, server.url) for visitor, _ in members]
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        opening = asyncio.Semaphore(50)
        readers = []

        async def open_one(page: Page) -> None:
            async with opening:
                await page.open(session)
            readers.append(asyncio.create_task(page.read()))  # and answers pings, as browsers do

        await asyncio.gather(*(open_one(page) for page in pages))
        await asyncio.sleep(5)  # every page online everywhere
        until = time.monotonic() + args.seconds
        churning = [
            asyncio.create_task(asyncio.to_thread(churn, server, number, until))
            for number in range(args.churners)
        ]
        closing = pages[: len(pages) // 4]
        for page in closing:  # a quarter of the members go away during the burst
            await page.socket.close()
            await asyncio.sleep(args.seconds / len(closing))
        changes = sum(await asyncio.gather(*churning))
        await asyncio.sleep(GRACE_SECONDS + 5)
        online = {f"member-{int(member)}" for member in store.hkeys(f"{prefix}counts:lobby")}
        staying = pages[len(closing) :]
        right = sum(1 for page in staying if page.online() == online)
        for task in readers:
            task.cancel()
        for page in staying:
            await page.socket.close()
    server.stop()
    log = server.log()
    return {
        "pages": len(staying),
        "right": right,
        "online_in_store": len(online),
        "membership_changes": changes,
        "skipped_broadcasts": log.count("Broadcast skipped"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=800)
    parser.add_argument("--churners", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(
        f"{result['right']} of {result['pages']} open pages showed the store's presence "
        f"({result['online_in_store']} online) {GRACE_SECONDS + 5:.0f} s after the burst "
        f"({result['membership_changes']} joins and leaves, a quarter of the pages closed); "
        f"broadcasts skipped: {result['skipped_broadcasts']}",
        flush=True,
    )
    if result["right"] < result["pages"]:
        sys.exit("some pages did not show the store's presence")


if __name__ == "__main__":
    main()
