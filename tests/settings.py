"""The app's own settings, with a throwaway secret so tests run like production (DEBUG off)."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")

from liveroom.settings import *  # noqa: F403

# Tests make many joins from one address; the rate-limit tests set their own small limits.
RATE_LIMIT_PER_SESSION = (1_000_000, 60)
RATE_LIMIT_PER_ADDRESS = (1_000_000, 60)

# Tests that read a socket's next message exactly turn heartbeats off; the indicator tests
# turn them on.
LIVEROOM_HEARTBEAT_SECONDS = 0

# Presence sends every page a message when a member's first page opens; tests that read a
# socket's next message exactly turn it off, the presence tests turn it on.
LIVEROOM_PRESENCE = False

# Joins from async tests send on the test's event loop, where each would wait out the /rooms/
# refresh interval after the one before; none here. tests/test_rooms.py times the interval with
# refreshers of its own.
LIVEROOM_ROOMS_REFRESH_SECONDS = 0
