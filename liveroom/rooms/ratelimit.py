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


def window_key(name: str, subject: str, window: int) -> str:
    return f"ratelimit:{name}:{subject}:{window}"


def count(name: str, rates: dict[str, Rate], *, keep_windows: int = 1) -> int:
    """Count one more for each subject in its current window (kept for `keep_windows`
    windows); 0 if all are within their limits in that window, else how long to wait."""
    now = time.time()
    keys = {}  # key -> (allowed, seconds, window)
    for subject, (allowed, seconds) in rates.items():
        window = int(now // seconds)
        keys[window_key(name, subject, window)] = (allowed, seconds, window)
    try:
        lifetimes = {key: seconds * keep_windows for key, (_, seconds, _) in keys.items()}
        counts = count_hits(caches["default"], lifetimes)
    except Exception as error:
        store_unavailable(name, error)
        return 0
    wait = 0
    for used, (allowed, seconds, window) in zip(counts, keys.values(), strict=True):
        if used > allowed:
            wait = max(wait, int((window + 1) * seconds - now) + 1)
    return wait


def recently_used_up(name: str, rates: dict[str, Rate]) -> int:
    """Without counting: 0 if every subject has had fewer than its `allowed` in this window and
    the one before together (counted with `keep_windows=2`), so that no span of `seconds` ever
    holds more than `allowed`; else how long until one more is allowed."""
    now = time.time()
    subjects = []  # (allowed, seconds, window, this window's key, the last one's)
    for subject, (allowed, seconds) in rates.items():
        window = int(now // seconds)
        subjects.append((allowed, seconds, window, window_key(name, subject, window),
                         window_key(name, subject, window - 1)))  # fmt: skip
    try:
        found = caches["default"].get_many([key for *_, now_key, last_key in subjects
                                            for key in (now_key, last_key)])  # fmt: skip
    except Exception as error:
        store_unavailable(name, error)
        return 0
    wait = 0
    for allowed, seconds, window, now_key, last_key in subjects:
        this, last = int(found.get(now_key, 0)), int(found.get(last_key, 0))
        if this + last >= allowed:
            # The last window's go when this one ends; this one's, a window after.
            ends = window + 1 if this < allowed else window + 2
            wait = max(wait, int(ends * seconds - now) + 1)
    return wait


def store_unavailable(name: str, error: Exception) -> None:
    logger.warning(
        "Rate limit store unavailable, %s not limited: %s: %s", name, type(error).__name__, error
    )


def too_many(request: HttpRequest, wait: int, limit: str = "membership") -> HttpResponse:
    """The 429 page for `limit` ("membership" or "admin-login"), with Retry-After."""
    context = {"retry_after": wait, "limit": limit}
    response = render(request, "liveroom/429.html", context, status=429)
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
