"""Fixed-window limits: joins and leaves per session and per client address, and the admin's
failed logins per account and per address.

Counters live in the default cache, which is Redis when REDIS_URL is set, so every server
process counts against the same limit. A limiter whose store is down limits nothing (and says
so in the log): it must not lock everyone out.
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

Rate = tuple[int, int]  # so many in so many seconds
Window = tuple[int, int, int]  # allowed, seconds, the window's number


def windows(name: str, rates: dict[str, Rate]) -> tuple[float, dict[str, Window]]:
    """Now, and each subject's counter key in the current window of its rate."""
    now = time.time()
    found = {}
    for subject, (allowed, seconds) in rates.items():
        window = int(now // seconds)
        found[f"ratelimit:{name}:{subject}:{window}"] = (allowed, seconds, window)
    return now, found


def wait_for(now: float, counts: list[int], windows: list[Window], *, most: int = 0) -> int:
    """Seconds until every subject is under its limit: 0 if none has more than `allowed`
    plus `most` counted."""
    wait = 0
    for used, (allowed, seconds, window) in zip(counts, windows, strict=True):
        if used > allowed + most:
            wait = max(wait, int((window + 1) * seconds - now) + 1)
    return wait


def count(name: str, rates: dict[str, Rate]) -> int:
    """Count one more for each subject; 0 if all are within their limits, else how long to
    wait."""
    now, keys = windows(name, rates)
    try:
        counts = count_hits(caches["default"], {key: w[1] for key, w in keys.items()})
    except Exception as error:
        logger.warning(
            "Rate limit store unavailable, %s not limited: %s: %s",
            name, type(error).__name__, error,
        )  # fmt: skip
        return 0
    return wait_for(now, counts, list(keys.values()))


def used_up(name: str, rates: dict[str, Rate]) -> int:
    """Without counting: 0 if every subject may have one more, else how long to wait."""
    now, keys = windows(name, rates)
    try:
        found = caches["default"].get_many(list(keys))
    except Exception as error:
        logger.warning(
            "Rate limit store unavailable, %s not limited: %s: %s",
            name, type(error).__name__, error,
        )  # fmt: skip
        return 0
    counts = [int(found.get(key, 0)) for key in keys]
    return wait_for(now, counts, list(keys.values()), most=-1)


def too_many(request: HttpRequest, wait: int, limit: str = "membership") -> HttpResponse:
    """The 429 page for `limit` ("membership" or "admin-login"), with Retry-After."""
    response = render(request, "429.html", {"retry_after": wait, "limit": limit}, status=429)
    response["Retry-After"] = str(wait)
    return response


def seconds_until_allowed(request: HttpRequest) -> int:
    """Count this membership change; 0 if it is within its limits, else how long to wait."""
    return count(
        "membership",
        {
            f"address:{request.META.get('REMOTE_ADDR', '')}": settings.RATE_LIMIT_PER_ADDRESS,
            f"session:{request.session.session_key}": settings.RATE_LIMIT_PER_SESSION,
        },
    )


def limit_membership_changes(view):
    """Answer 429 to a POST over its join/leave limit, before the view runs."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        if not request.session.session_key:
            request.session.create()  # so the first change counts against the session too
        if wait := seconds_until_allowed(request):
            return too_many(request, wait)
        return view(request, *args, **kwargs)

    return wrapper
