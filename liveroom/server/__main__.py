"""Start liveroom's daphne: `python -m liveroom.server [daphne options] [application]`.

`make run`, the Dockerfile, compose.yaml and the tests all start the server this way, so the
limits below live in one place. Options given on the command line win over them.

- Pages never send: a frame over 4 KiB from a client is not one of ours (daphne closes it).
- Messages up to 4 MiB: on library versions without raw sockets (liveroom/server/daphne.py)
  outgoing messages pass autobahn's size check too, and a snapshot is about 100 bytes a member.
- No socket age limit: daphne would close sockets older than its timeout with 1000, which htmx
  does not retry.
"""

import re
import sys

from liveroom.server.daphne import LiveroomCommandLine

APPLICATION = "liveroom.asgi:application"
IMPORT_PATH = re.compile(r"^[\w.]+:[\w.]+$")  # module:attribute, as daphne takes it
LIMITS = (
    "--websocket-max-message-size", "4194304",
    "--websocket-max-frame-size", "4096",
    "--websocket_timeout", "-1",
)  # fmt: skip


def main(argv: list[str]) -> None:
    if not argv or not IMPORT_PATH.match(argv[-1]):
        argv = [*argv, APPLICATION]
    LiveroomCommandLine().run([*LIMITS, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
