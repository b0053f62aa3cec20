"""The in-memory channel layer reaches only the pages of its own process.

Two server processes on one database with that layer would each save changes that the other's
pages never see. Each process takes an exclusive lock on a file named after its database; a
process that cannot take it warns at start-up that another one already serves that database.
"""

import fcntl
import hashlib
import logging
import tempfile
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

_held_lock = None  # kept open for the life of the process: closing it releases the lock


def warn_if_sharing_the_in_memory_layer() -> bool:
    """Log a warning and return True if another process uses this database in-memory too."""
    global _held_lock
    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "channels.layers.InMemoryChannelLayer":
        return False
    database = settings.DATABASES["default"]
    identity = f"{database.get('HOST', '')}:{database.get('PORT', '')}/{database['NAME']}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    lock = open(Path(tempfile.gettempdir()) / f"liveroom-in-memory-layer-{digest}.lock", "w")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        logger.warning(
            "Another server process already serves this database with the in-memory channel "
            "layer, which is single-process: pages on one process will not see changes made "
            "through the other. Set REDIS_URL to run several processes."
        )
        return True
    _held_lock = lock
    return False
