"""Clients that never read: how much server memory can they hold, and is it given back?

    python -m bench.nonreaders                       # 1,000 sockets of one member, 2,000 members
    python -m bench.nonreaders --sockets 100 --members 200

One member opens --sockets sockets to a room of --members members and never reads from them
(each socket's receive buffer is 4 KiB); other members then join and leave 100 times, so every
change is sent to every socket. The server runs the way production runs it (`python -m
liveroom.server`, DATABASE_URL and REDIS_URL from the environment), twice in one invocation:
with the socket limits and the backlog bound as they were before (no limit on sockets per
member, no bound on unsent bytes) and with today's defaults. Prints, for each, how many sockets
were accepted, the server's resident memory growth with them open, and after they closed.
"""

import argparse
import asyncio
import base64
import secrets
import socket
import tempfile
from pathlib import Path

from bench.churn import resident_kib
from bench.fanout import members_joined, production_environment
from harness.servers import Daphne, Visitor

CHANGES = 100


async def open_nonreader(port: int, cookie: str) -> tuple[asyncio.StreamWriter, bool]:
    """A socket that completes its handshake and never reads again; whether it was accepted
    (not closed at once)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=raw)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    writer.write(
        f"GET /ws/room/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    first = await reader.read(2)  # a refused socket's first frame is a close frame
    return writer, bool(first) and first[0] & 0x0F != 8


def churn(server: Daphne) -> None:
    """CHANGES changes: passers-by joining and leaving."""
    for number in range(CHANGES // 2):
        visitor = Visitor()
        visitor.join(server, f"Passer-by {number}")
        visitor.leave(server)


async def one(env: dict, work: Path, name: str, args: argparse.Namespace) -> dict:
    server = Daphne(env, work / f"{name}.log").start()
    member = Visitor()
    member.join(server, "Never reads")
    cookie = "; ".join(f"{key}={value}" for key, value in member.http.cookies.items())
    await asyncio.sleep(2)
    before = resident_kib(server.process.pid)
    sockets = []
    for _ in range(args.sockets):
        sockets.append(await open_nonreader(server.port, cookie))
    await asyncio.to_thread(churn, server)
    await asyncio.sleep(3)
    held = resident_kib(server.process.pid) - before
    for writer, _ in sockets:
        writer.transport.abort()
    await asyncio.sleep(5)
    after = resident_kib(server.process.pid) - before
    log = server.log()
    server.stop()
    return {
        "config": name,
        "accepted": sum(1 for _, accepted in sockets if accepted),
        "dropped_for_backlog": log.count("Socket dropped"),
        "held_mib": round(held / 1024, 1),
        "after_close_mib": round(after / 1024, 1),
    }


async def run(args: argparse.Namespace) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="liveroom-nonreaders-"))
    env = production_environment(work)
    await members_joined(env, work, args.members)
    before = env | {
        "LIVEROOM_SOCKETS_PER_MEMBER": "1000000",
        "LIVEROOM_SOCKETS_PER_ADDRESS": "1000000",
        "LIVEROOM_SOCKET_BACKLOG_BYTES": "0",
    }
    return [await one(before, work, "unbounded", args), await one(env, work, "defaults", args)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--members", type=int, default=2000)
    args = parser.parse_args()
    for result in asyncio.run(run(args)):
        print(
            f"{result['config']:<9}: {result['accepted']} of {args.sockets} non-reading sockets "
            f"of one member accepted ({result['dropped_for_backlog']} dropped for their "
            f"backlog); server memory {result['held_mib']} MiB more with them open and "
            f"{CHANGES} changes sent, {result['after_close_mib']} MiB more after they closed",
            flush=True,
        )


if __name__ == "__main__":
    main()
