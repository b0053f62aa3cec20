"""The cache's Redis: one connection pool per process, and counters in one round trip.

Under ASGI, Django's caches are per request (they live in a context-local), and each Redis cache
client makes its own pool: every request would open a new connection to Redis and drop it after.
The counters go through one client per process, too: making one reads redis-py's own package
metadata, a cost in every request that counts.
"""

import threading

import redis
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache


class SharedConnectionPool(redis.ConnectionPool):
    """The first client's pool for a URL serves every later one (their options all come from
    the same CACHES setting)."""

    _pools: dict[str, "SharedConnectionPool"] = {}
    _pools_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options) -> "SharedConnectionPool":
        with cls._pools_lock:
            if url not in cls._pools:
                cls._pools[url] = super().from_url(url, **options)
            return cls._pools[url]


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def shared_client(cache: RedisCache) -> redis.Redis:
    """The process's client for the cache's Redis: Django's, made once, with its pool and
    options (redis-py clients are safe to share between threads)."""
    location = cache._servers[0]  # type: ignore[attr-defined]  # its LOCATION, as Django split it
    with _clients_lock:
        client = _clients.get(location)
        if client is None:
            client = _clients[location] = cache._cache.get_client(write=True)
        return client


def count_hits(cache: BaseCache, lifetimes: dict[str, int]) -> list[int]:
    """Add one to each counter, started at zero for `lifetimes[key]` seconds if absent; return
    the new counts. On Redis this is one round trip (Django's add and incr make three a key)."""
    if isinstance(cache, RedisCache):
        pipeline = shared_client(cache).pipeline(transaction=False)
        for key, seconds in lifetimes.items():
            key = cache.make_and_validate_key(key)
            pipeline.set(key, 0, ex=seconds, nx=True)
            pipeline.incr(key)
        return pipeline.execute()[1::2]
    counts = []
    for key, seconds in lifetimes.items():
        cache.add(key, 0, timeout=seconds)
        counts.append(cache.incr(key))
    return counts
