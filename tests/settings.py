"""The app's own settings, with a throwaway secret so tests run like production (DEBUG off)."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")

from liveroom.settings import *  # noqa: F403
