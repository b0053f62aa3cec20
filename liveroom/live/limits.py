"""How many sockets one member (session) and one client address may hold open in a process.

A member with twenty tabs is a person; one with a thousand is not, and each socket costs the
process memory and a share of every change. Over a limit a socket is closed with 1008 (htmx does
not retry it) and the member or address is logged once, until it is back under the limit.
Counted per process: behind a proxy with N processes a member holds at most N times the limit.
"""

import logging
from collections import Counter

logger = logging.getLogger(__name__)


class SocketLimits:
    def __init__(self, per_member: int, per_address: int) -> None:
        self.limits = {"member": per_member, "address": per_address}
        self.open: Counter[tuple[str, str]] = Counter()
        self.logged: set[tuple[str, str]] = set()  # over a limit, said so already

    def admit(self, keys: list[tuple[str, str]]) -> bool:
        """Count a socket of these (kind, value) keys, e.g. ("member", session key); False (and
        nothing counted) if any of them is at its limit."""
        for key in keys:
            if self.open[key] >= self.limits[key[0]]:
                if key not in self.logged:
                    self.logged.add(key)
                    logger.warning(
                        "Socket refused: %s %s has %d open, the limit (1008; logged once)",
                        key[0], key[1][:12], self.open[key],
                        extra={"event": "socket_limit", "kind": key[0]},
                    )  # fmt: skip
                return False
        for key in keys:
            self.open[key] += 1
        return True

    def release(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            self.open[key] -= 1
            if self.open[key] <= 0:
                del self.open[key]
            if self.open[key] < self.limits[key[0]]:
                self.logged.discard(key)
