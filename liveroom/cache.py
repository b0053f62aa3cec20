"""One Redis connection pool per process for the cache.

Under ASGI, Django's caches are per request (they live in a context-local), and each Redis cache
client makes its own pool: every request would open a new connection to Redis and drop it after.
"""

import threading

import redis


class SharedConnectionPool(redis.ConnectionPool):
    """The first client's pool for a URL serves every later one (their options all come from
    the same CACHES setting)."""

    _pools: dict[str, redis.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options) -> redis.ConnectionPool:
        with cls._lock:
            if url not in cls._pools:
                cls._pools[url] = super().from_url(url, **options)
            return cls._pools[url]
