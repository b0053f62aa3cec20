"""The daphne, Twisted and autobahn versions liveroom's extensions that read library attributes
(not an API) were tested with. With any others the server logs why and runs the stock way."""

import logging
from importlib.metadata import version

logger = logging.getLogger(__name__)

# The versions RawSocket, the HTTP channel and the handshake release were tested with
# (tests/test_server.py); requirements.txt pins them.
TESTED_WITH = {"daphne": "4.2.3", "twisted": "26.10.0", "autobahn": "26.11.1"}


def installed_versions() -> dict[str, str]:
    return {name: version(name) for name in TESTED_WITH}


def raw_sockets_supported(installed: dict[str, str]) -> bool:
    """Whether RawSocket may be offered with these library versions; logs why not."""
    if installed == TESTED_WITH:
        return True
    logger.warning(
        "Raw sockets off: tested with %s, found %s. Pages are served through stock daphne "
        "(each message framed per page); run the server tests before pinning these versions.",
        ", ".join(f"{name} {number}" for name, number in TESTED_WITH.items()),
        ", ".join(f"{name} {number}" for name, number in installed.items()),
    )
    return False
