"""Fixed-window limits on joins and leaves, per session and per client address.

Counters live in the default cache, which is Redis when REDIS_URL is set, so every server
process counts against the same limit.
"""

import logging
import time
from functools import wraps

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from liveroom.rooms.cache import count_hits

logger = logging.getLogger(__name__)


def seconds_until_allowed(request: HttpRequest) -> int:
    """Count this membership change; 0 if it is within its limits, else how long to wait."""
    now = time.time()
    windows = {}  # key -> (allowed, seconds, window)
    for subject, (allowed, seconds) in [
        (f"address:{request.META.get('REMOTE_ADDR', '')}", settings.RATE_LIMIT_PER_ADDRESS),
        (f"session:{request.session.session_key}", settings.RATE_LIMIT_PER_SESSION),
    ]:
        window = int(now // seconds)
        windows[f"ratelimit:membership:{subject}:{window}"] = (allowed, seconds, window)
    try:
        counts = count_hits(
            caches["default"], {key: seconds for key, (_, seconds, _) in windows.items()}
        )
    except Exception as error:
        # A limiter whose store is down must not lock everyone out.
        logger.warning(
            "Rate limit store unavailable, request not limited: %s: %s",
            type(error).__name__, error,
        )  # fmt: skip
        return 0
    wait = 0
    for used, (allowed, seconds, window) in zip(counts, windows.values(), strict=True):
        if used > allowed:
            wait = max(wait, int((window + 1) * seconds - now) + 1)
    return wait


def limit_membership_changes(view):
    """Answer 429 to a POST over its join/leave limit, before the view runs."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        if not request.session.session_key:
            request.session.create()  # so the first change counts against the session too
        if wait := seconds_until_allowed(request):
            response = render(request, "429.html", {"retry_after": wait}, status=429)
            response["Retry-After"] = str(wait)
            return response
        return view(request, *args, **kwargs)

    return wrapper
