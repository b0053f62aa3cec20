"""Where presence is kept: which processes have each member of a room online.

The store (Redis when REDIS_URL is set, this process's memory otherwise) keeps, per room, which
processes have each member online. Each entry expires unless its process renews it; a process
that dies stops renewing, and live processes sweep expired entries. Entries last 3/4 of
LIVEROOM_PRESENCE_EXPIRY_SECONDS and are renewed and swept every 1/4 of it, so a dead process's
members show as away within that many seconds.

Every change of a room's presence bumps the room's presence sequence: pages use it to tell a
late message (several processes publish) from a new one.
"""

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis import asyncio as aioredis
from redis.commands.core import AsyncScript

from liveroom import metrics

logger = logging.getLogger(__name__)

MOST_ROOMS_KEPT = 10_000  # rooms' presence kept as last read (RedisStore.latest)


@dataclass(frozen=True)
class RoomPresence:
    """Who is online in a room, as of the room's presence `sequence`."""

    sequence: int
    online: frozenset[int]


@dataclass(frozen=True)
class PresenceChange:
    """Members of a room who came online or went away, and the room's state after that."""

    room_slug: str
    sequence: int
    online_count: int
    came_online: tuple[int, ...] = ()
    went_away: tuple[int, ...] = ()


NO_PRESENCE = RoomPresence(sequence=0, online=frozenset())


class LocalStore:
    """Presence kept in this process, for the embedded default (one server process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # views read from threads, the event loop writes
        self.entries: dict[str, dict[tuple[int, str], float]] = defaultdict(dict)
        self.counts: dict[str, Counter[int]] = defaultdict(Counter)
        self.sequences: Counter[str] = Counter()
        # Each room's presence as last read: every page connecting reads it, and a big room's
        # online set is rebuilt only when its sequence moved.
        self.latest: dict[str, RoomPresence] = {}

    async def update(
        self, room_slug: str, process: str, arriving: set[int], leaving: set[int], ttl: float
    ) -> PresenceChange | None:
        with self.lock:
            entries, counts = self.entries[room_slug], self.counts[room_slug]
            came, went = [], []
            for member in arriving:
                if (member, process) not in entries:
                    counts[member] += 1
                    if counts[member] == 1:
                        came.append(member)
                entries[member, process] = time.monotonic() + ttl
            for member in leaving:
                if entries.pop((member, process), None) is not None:
                    went += self._decrement(room_slug, member)
            return self._change(room_slug, came, went)

    async def sweep(self) -> list[PresenceChange]:
        now, changes = time.monotonic(), []
        with self.lock:
            for room_slug, entries in self.entries.items():
                went = []
                for key in [key for key, expires in entries.items() if expires <= now]:
                    del entries[key]
                    went += self._decrement(room_slug, key[0])
                if change := self._change(room_slug, [], went):
                    changes.append(change)
        return changes

    def read(self, room_slug: str) -> RoomPresence:
        with self.lock:
            sequence = self.sequences[room_slug]
            if (cached := self.latest.get(room_slug)) and cached.sequence == sequence:
                return cached
            presence = RoomPresence(sequence, frozenset(+self.counts[room_slug]))
            self.latest[room_slug] = presence
            return presence

    def forget(self, room_slug: str) -> None:
        with self.lock:
            self.entries.pop(room_slug, None)
            self.counts.pop(room_slug, None)
            self.sequences.pop(room_slug, None)
            self.latest.pop(room_slug, None)

    def online_counts(self, room_slugs: list[str]) -> dict[str, int]:
        with self.lock:
            return {slug: len(+self.counts[slug]) for slug in room_slugs}

    def sequence_numbers(self, room_slugs: list[str]) -> dict[str, int]:
        with self.lock:
            return {slug: self.sequences[slug] for slug in room_slugs}

    async def aclose(self) -> None:
        """Nothing to close: the store is this process's memory."""

    def _decrement(self, room_slug: str, member: int) -> list[int]:
        counts = self.counts[room_slug]
        counts[member] -= 1
        if counts[member] > 0:
            return []
        del counts[member]
        return [member]

    def _change(self, room_slug: str, came: list[int], went: list[int]) -> PresenceChange | None:
        if not came and not went:
            return None
        self.sequences[room_slug] += 1
        return PresenceChange(
            room_slug,
            self.sequences[room_slug],
            len(self.counts[room_slug]),
            tuple(came),
            tuple(went),
        )


# Each script runs atomically in Redis, so two processes never both decide the same change.
# Entries are "<member id>|<process>" in a sorted set scored by expiry (Redis's own clock);
# a hash counts each member's entries; a set lists the rooms that have entries, for the sweep.
# Every key goes by itself: the set and hash when emptied, the room's sequence a day after its
# last presence (or with the room, RedisStore.forget).
UPDATE_SCRIPT = """
local entries, counts, sequence, rooms = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local slug, process, ttl, arriving = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
-- The sequence outlives the entries by a day (renewals keep it while anyone is present).
redis.call('EXPIRE', sequence, 86400)
local clock = redis.call('TIME')
local expires = clock[1] + clock[2] / 1e6 + ttl
local changed = {}
for i = 5, 4 + arriving do
  if redis.call('ZADD', entries, expires, ARGV[i] .. '|' .. process) == 1
      and redis.call('HINCRBY', counts, ARGV[i], 1) == 1 then
    table.insert(changed, tonumber(ARGV[i]))
  end
end
for i = 5 + arriving, #ARGV do
  if redis.call('ZREM', entries, ARGV[i] .. '|' .. process) == 1
      and redis.call('HINCRBY', counts, ARGV[i], -1) <= 0 then
    redis.call('HDEL', counts, ARGV[i])
    table.insert(changed, -tonumber(ARGV[i]))
  end
end
if redis.call('ZCARD', entries) > 0 then
  redis.call('SADD', rooms, slug)
else
  redis.call('SREM', rooms, slug)
end
if #changed == 0 then return {} end
local result = {redis.call('INCR', sequence), redis.call('HLEN', counts)}
redis.call('EXPIRE', sequence, 86400)
for _, member in ipairs(changed) do table.insert(result, member) end
return result
"""

SWEEP_SCRIPT = """
local prefix, result = ARGV[1], {}
local clock = redis.call('TIME')
local now = clock[1] + clock[2] / 1e6
for _, slug in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local entries, counts = prefix .. 'entries:' .. slug, prefix .. 'counts:' .. slug
  local went = {}
  for _, entry in ipairs(redis.call('ZRANGEBYSCORE', entries, '-inf', now)) do
    redis.call('ZREM', entries, entry)
    local member = string.match(entry, '^(%d+)|')
    if redis.call('HINCRBY', counts, member, -1) <= 0 then
      redis.call('HDEL', counts, member)
      table.insert(went, member)
    end
  end
  if #went > 0 then
    table.insert(result, slug)
    table.insert(result, redis.call('INCR', prefix .. 'sequence:' .. slug))
    redis.call('EXPIRE', prefix .. 'sequence:' .. slug, 86400)
    table.insert(result, redis.call('HLEN', counts))
    table.insert(result, table.concat(went, ','))
  end
  if redis.call('ZCARD', entries) == 0 then redis.call('SREM', KEYS[1], slug) end
end
return result
"""


class RedisStore:
    """Presence kept in Redis, shared by every server process."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = f"{prefix}:presence:"
        # For views and snapshots, which run in threads. Made here, not on first use: threads
        # racing to make it would each make one, and the pool of the one dropped closes the
        # connections the other thread is using (redis-py connects only when used).
        self.reader = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._writer: aioredis.Redis | None = None
        self._scripts: tuple[AsyncScript, AsyncScript] | None = None
        # Each room's presence as last read: every page connecting reads it, and a big room's
        # online set is fetched again only when its sequence moved.
        self.latest: dict[str, RoomPresence] = {}

    def scripts(self) -> tuple[AsyncScript, AsyncScript]:
        """The update and sweep scripts, on the client for the event loop (one store per loop)."""
        if self._scripts is None:
            writer = aioredis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)
            self._writer = writer
            self._scripts = (
                writer.register_script(UPDATE_SCRIPT),
                writer.register_script(SWEEP_SCRIPT),
            )
        return self._scripts

    def keys(self, room_slug: str) -> list[str]:
        kinds = ("entries", "counts", "sequence")
        return [f"{self.prefix}{kind}:{room_slug}" for kind in kinds] + [f"{self.prefix}rooms"]

    async def update(
        self, room_slug: str, process: str, arriving: set[int], leaving: set[int], ttl: float
    ) -> PresenceChange | None:
        update, _ = self.scripts()
        args: list[str | float] = [room_slug, process, ttl, len(arriving), *arriving, *leaving]
        result = await update(keys=self.keys(room_slug), args=args)
        if not result:
            return None
        sequence, online_count, *changed = result
        return PresenceChange(
            room_slug,
            sequence,
            online_count,
            came_online=tuple(member for member in changed if member > 0),
            went_away=tuple(-member for member in changed if member < 0),
        )

    async def sweep(self) -> list[PresenceChange]:
        _, sweep = self.scripts()
        result = await sweep(keys=[f"{self.prefix}rooms"], args=[self.prefix])
        return [
            PresenceChange(
                slug.decode(), sequence, online_count, went_away=tuple(map(int, went.split(b",")))
            )
            for slug, sequence, online_count, went in zip(*[iter(result)] * 4, strict=True)
        ]

    def read(self, room_slug: str) -> RoomPresence:
        _, counts, sequence, _ = self.keys(room_slug)
        cached = self.latest.get(room_slug)
        if cached and cached.sequence == int(self.reader.get(sequence) or 0):
            return cached
        with self.reader.pipeline(transaction=True) as pipe:
            pipe.get(sequence)
            pipe.hkeys(counts)
            found_sequence, members = pipe.execute()
        presence = RoomPresence(int(found_sequence or 0), frozenset(int(m) for m in members))
        if len(self.latest) >= MOST_ROOMS_KEPT:
            self.latest.clear()  # rooms come and go over days: start again, at no great cost
        self.latest[room_slug] = presence
        return presence

    def forget(self, room_slug: str) -> None:
        """A deleted room's keys (its last members are gone: nothing is left to count)."""
        self.reader.delete(*self.keys(room_slug)[:3])
        self.latest.pop(room_slug, None)

    def online_counts(self, room_slugs: list[str]) -> dict[str, int]:
        with self.reader.pipeline(transaction=False) as pipe:
            for slug in room_slugs:
                pipe.hlen(self.keys(slug)[1])
            return dict(zip(room_slugs, pipe.execute(), strict=True))

    def sequence_numbers(self, room_slugs: list[str]) -> dict[str, int]:
        if not room_slugs:
            return {}
        found = self.reader.mget([self.keys(slug)[2] for slug in room_slugs])
        return {slug: int(sequence or 0) for slug, sequence in zip(room_slugs, found, strict=True)}

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()


Store = LocalStore | RedisStore


def new_store() -> Store:
    if settings.REDIS_URL:
        return RedisStore(settings.REDIS_URL, settings.LIVEROOM_KEY_PREFIX)
    return LocalStore()


class Stores:
    """The one owner of this process's presence stores: the store views and snapshots read
    (from any thread), and a store for each event loop's tracker to write to. In-process the
    two are one; with Redis each loop writes through a client of its own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.shared: Store | None = None

    def for_reading(self) -> Store:
        with self.lock:
            if self.shared is None:
                self.shared = new_store()
            return self.shared

    def for_writing(self) -> Store:
        """A store for one event loop's tracker."""
        shared = self.for_reading()
        return shared if isinstance(shared, LocalStore) else new_store()

    def reset(self) -> None:
        """Forget all presence kept in this process (tests start each from nothing)."""
        with self.lock:
            self.shared = None


stores = Stores()


@receiver(setting_changed)
def new_stores_for_new_settings(*, setting: str, **kwargs: object) -> None:
    """Another Redis, key prefix or presence setting (override_settings in a test): the next
    read makes stores for it."""
    if setting in {"REDIS_URL", "LIVEROOM_KEY_PREFIX", "LIVEROOM_PRESENCE"}:
        stores.reset()


def read_store[T](read: Callable[[Store], T], nothing: T) -> T:
    """`read(store)` of the store views and snapshots read; `nothing` if presence is off or
    the store does not answer (logged and counted)."""
    if not settings.LIVEROOM_PRESENCE:
        return nothing
    try:
        return read(stores.for_reading())
    except redis.RedisError as error:
        metrics.presence_errors.labels("read").inc()
        logger.warning("Presence unavailable: %s: %s", type(error).__name__, error)
        return nothing


def room_presence(room_slug: str) -> RoomPresence:
    """Who is online in the room; nobody if presence is off or its store does not answer."""
    return read_store(lambda store: store.read(room_slug), NO_PRESENCE)


def online_counts(room_slugs: list[str]) -> dict[str, int]:
    """Each room's number of members online; none if presence is off or out of reach."""
    return read_store(lambda store: store.online_counts(room_slugs), {})


def presence_sequences(room_slugs: list[str]) -> dict[str, int]:
    """Each room's presence sequence in the store now, read together (one MGET with Redis);
    none if presence is off or its store does not answer."""
    return read_store(lambda store: store.sequence_numbers(room_slugs), {})
