"""Connect and disconnect one page many times; print what the server and Redis keep.

    python -m bench.churn [--cycles 1000] [--bare-daphne]

Starts a daphne process the way production does (DATABASE_URL and REDIS_URL from the
environment, or the embedded default), joins one member, then opens and drops its socket
`--cycles` times: half closed cleanly, half dropped without a close handshake, as a vanished
tab would. Prints the server's resident memory and Redis's pub/sub channels, keys and memory
at checkpoints. Flat numbers mean nothing leaks per connection. With --bare-daphne the same
cycles run against bench/bare_asgi.py under daphne instead, as a baseline for daphne itself.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import redis

from harness.servers import Daphne, Visitor, read_snapshot, server_environment


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def redis_figures(client: redis.Redis | None) -> dict:
    if client is None:
        return {}
    return {
        "redis_pubsub_channels": len(client.pubsub_channels()),
        "redis_keys": client.dbsize(),
        "redis_used_memory_kib": client.info("memory")["used_memory"] // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--bare-daphne", action="store_true", help="serve bench/bare_asgi.py")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="liveroom-churn-"))
    env = server_environment(work)
    alice = Visitor()
    if args.bare_daphne:
        server = Daphne(env, work / "server.log")
        server.command.append("bench.bare_asgi:application")
        server.start()
        client = None
    else:
        server = Daphne(env, work / "server.log").start()
        client = redis.Redis.from_url(env["REDIS_URL"]) if env.get("REDIS_URL") else None
        alice.join(server, "Alice")
    checkpoints = sorted({0, 10} | {args.cycles * tenth // 10 for tenth in range(1, 11)})
    rows = []
    try:
        for cycle in range(args.cycles + 1):
            if cycle in checkpoints:
                time.sleep(1)  # let disconnects finish
                row = {"cycles": cycle, "server_rss_kib": resident_kib(server.process.pid)}
                row.update(redis_figures(client))
                rows.append(row)
                print(json.dumps(row), flush=True)
            if cycle == args.cycles:
                break
            socket = alice.open_socket(server).__enter__()
            if args.bare_daphne:
                socket.recv(timeout=10)  # its one message
            else:
                read_snapshot(socket)
            if cycle % 2:
                socket.socket.close()  # vanished tab: no close handshake
            else:
                socket.close()
    finally:
        server.stop()
    growth = rows[-1]["server_rss_kib"] - rows[1]["server_rss_kib"]
    half = next(row for row in rows if row["cycles"] == args.cycles // 2)
    late = rows[-1]["server_rss_kib"] - half["server_rss_kib"]
    late_cycles = max(args.cycles - args.cycles // 2, 1)
    served = "bare ASGI app" if args.bare_daphne else "redis pub/sub" if client else "in-memory"
    print(f"served: {served}; cycles: {args.cycles}; "
          f"server RSS growth after warm-up: {growth} KiB "
          f"({growth * 1024 / max(args.cycles - 10, 1):.0f} bytes per cycle); "
          f"in the second half: {late} KiB "
          f"({late * 1024 / late_cycles:.0f} bytes per cycle)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
