"""Rate-limit counters: the same counts on Redis (one round trip) as on any Django cache."""

import secrets
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from liveroom.rooms.cache import count_hits


def test_counters_start_at_one_and_count_each_hit_separately() -> None:
    cache = caches["default"]
    first, second = (f"test-counter:{secrets.token_hex(4)}:{i}" for i in (1, 2))
    assert count_hits(cache, {first: 60, second: 60}) == [1, 1]
    assert count_hits(cache, {first: 60}) == [2]
    assert count_hits(cache, {second: 60, first: 60}) == [2, 3]
    assert (cache.get(first), cache.get(second)) == (3, 2)  # readable through Django's API


def test_a_counter_lives_for_its_own_window_and_later_hits_do_not_extend_it() -> None:
    cache = caches["default"]
    key = f"test-counter:{secrets.token_hex(4)}"
    count_hits(cache, {key: 30})
    count_hits(cache, {key: 3600})
    stored_key = cache.make_and_validate_key(key)
    if isinstance(cache, RedisCache):
        assert 0 < cache._cache.get_client().ttl(stored_key) <= 30
    else:  # locmem
        assert time.time() < cache._expire_info[stored_key] <= time.time() + 30
    assert cache.get(key) == 2
