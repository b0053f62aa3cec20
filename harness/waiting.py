"""Waiting for a condition, not for a guess at how long it takes: a fixed sleep either wastes
time or, on a busy machine, is not enough."""

import asyncio
import time
from collections.abc import Awaitable, Callable


def eventually[T](check: Callable[[], T], within: float = 10, every: float = 0.05) -> T:
    """`check()`'s first true value, trying every `every` seconds; AssertionError (with the last
    value) if none came within `within` seconds. An exception in `check` is retried as false."""
    deadline = time.monotonic() + within
    while True:
        try:
            value = check()
            error = None
        except Exception as raised:  # not there yet: try again
            value, error = None, raised
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {within} s: last {value!r}") from error
        time.sleep(every)


async def until[T](
    check: Callable[[], T | Awaitable[T]], within: float = 10, every: float = 0.02
) -> T:
    """`eventually` for async tests: `check` may be a coroutine function."""
    deadline = time.monotonic() + within
    while True:
        try:
            value = check()
            if isinstance(value, Awaitable):
                value = await value
            error = None
        except Exception as raised:
            value, error = None, raised
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {within} s: last {value!r}") from error
        await asyncio.sleep(every)
