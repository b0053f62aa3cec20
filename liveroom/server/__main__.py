"""Start liveroom's daphne: `python -m liveroom.server [daphne options] [application]`.

`make run`, the Dockerfile, compose.yaml and the tests all start the server this way, so the
limits below live in one place. Options given on the command line win over them.

- Pages never send: a frame over 4 KiB from a client is not one of ours (daphne closes it).
- Messages up to 4 MiB: on library versions without raw sockets (liveroom/server/)
  outgoing messages pass autobahn's size check too, and a snapshot is about 100 bytes a member.
- No socket age limit: daphne would close sockets older than its timeout with 1000, which htmx
  does not retry.

- liveroom's pages never send: for liveroom's application the first frame of any client
  message, a fragment included, closes the socket with 1008.

From the environment:
- LIVEROOM_METRICS_ADDRESS (`host:port`, or a port on 127.0.0.1) serves the process's
  Prometheus metrics on a port of their own, never on the site's; unset, there is none.
- LIVEROOM_HEADER_SECONDS (10): a request's line and headers must arrive within this many
  seconds of their first byte (408 otherwise).
- LIVEROOM_REQUESTS_AT_ONCE (100; 0: no bound): requests, sockets' handshakes among them, the
  process works on at once; at this many it accepts no new connection until some are answered
  (the listen queue holds them meanwhile).
- LIVEROOM_SOCKET_BACKLOG_BYTES (1 MiB; 0: no bound): a socket with more unsent bytes waiting in
  the process is dropped. Keep it above the largest member list (about 160 bytes a member).
"""

import logging
import os
import re
import sys

from liveroom.server.cli import LiveroomCommandLine

APPLICATION = "liveroom.asgi:application"
DEFAULT_BACKLOG = 1024 * 1024
DEFAULT_REQUESTS_AT_ONCE = 100
IMPORT_PATH = re.compile(r"^[\w.]+:[\w.]+$")  # module:attribute, as daphne takes it
LIMITS = (
    "--websocket-max-message-size", "4194304",
    "--websocket-max-frame-size", "4096",
    "--websocket_timeout", "-1",
)  # fmt: skip


def metrics_address(value: str) -> tuple[str, int] | None:
    """LIVEROOM_METRICS_ADDRESS as (host, port); exits with a clear message if it is not one."""
    if not value:
        return None
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        sys.exit(f"LIVEROOM_METRICS_ADDRESS must be host:port or a port, got {value!r}.")
    return host.strip("[]") or "127.0.0.1", int(port)


def whole_number(name: str, default: int) -> int:
    """A whole number (of bytes, or seconds) from the environment; exits if it is not one."""
    value = os.environ.get(name) or str(default)
    if not value.isdigit():
        sys.exit(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def main(argv: list[str]) -> None:
    if not argv or not IMPORT_PATH.match(argv[-1]):
        argv = [*argv, APPLICATION]
    command_line = LiveroomCommandLine(
        metrics_address=metrics_address(os.environ.get("LIVEROOM_METRICS_ADDRESS", "")),
        max_backlog=whole_number("LIVEROOM_SOCKET_BACKLOG_BYTES", DEFAULT_BACKLOG),
        one_frame_messages=argv[-1] == APPLICATION,
        header_seconds=float(whole_number("LIVEROOM_HEADER_SECONDS", 10)),
        requests_at_once=whole_number("LIVEROOM_REQUESTS_AT_ONCE", DEFAULT_REQUESTS_AT_ONCE),
    )
    command_line.run([*LIMITS, *argv])
    leave_without_teardown()


def leave_without_teardown() -> None:
    """The server has stopped (daphne returns once it has): its pages were told 1012, its
    requests finished, its log says "Stopped". Tearing the interpreter down would free every
    object the last pages left, one by one, about a second after 2,000 pages, and a restart
    (`systemctl restart`, a container's replacement) waits for this process to be gone. The
    kernel takes its memory and closes its connections at once."""
    logging.shutdown()  # flushes every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
