"""The presence stores: in-process (embedded default) and Redis, with the same rules."""

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from liveroom.presence import LocalStore, RedisStore

pytestmark = pytest.mark.asyncio

TTL = 60.0


# A plain fixture: an async one cannot start while Playwright's session-wide loop is running.
@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.services)])
def store(request) -> Iterator[LocalStore | RedisStore]:
    if request.param == "local":
        yield LocalStore()
        return
    store = RedisStore(os.environ["REDIS_URL"], prefix="test-" + uuid.uuid4().hex[:8])
    yield store
    if keys := store.reader.keys(f"{store.prefix}*"):
        store.reader.delete(*keys)


async def test_a_member_online_on_two_processes_goes_away_only_when_both_let_go(store) -> None:
    first = await store.update("chess", "process-a", {7}, set(), TTL)
    assert (first.came_online, first.online_count) == ((7,), 1)
    assert await store.update("chess", "process-b", {7}, set(), TTL) is None  # no change

    assert await store.update("chess", "process-a", set(), {7}, TTL) is None
    assert store.read("chess").online == {7}
    gone = await store.update("chess", "process-b", set(), {7}, TTL)
    assert (gone.went_away, gone.online_count) == ((7,), 0)
    assert store.read("chess").online == frozenset()


async def test_each_change_moves_the_rooms_sequence_on(store) -> None:
    first = await store.update("chess", "process-a", {1, 2}, set(), TTL)
    second = await store.update("chess", "process-a", set(), {1}, TTL)
    assert 0 < first.sequence < second.sequence
    assert store.read("chess").sequence == second.sequence
    assert store.read("chess").online == {2}


async def test_renewing_an_entry_changes_nothing(store) -> None:
    await store.update("chess", "process-a", {1}, set(), TTL)
    sequence = store.read("chess").sequence
    assert await store.update("chess", "process-a", {1}, set(), TTL) is None
    assert store.read("chess").sequence == sequence


async def test_a_process_that_stops_renewing_is_swept_away(store) -> None:
    await store.update("chess", "dead", {1, 2}, set(), ttl=0.3)
    await store.update("chess", "alive", {2}, set(), TTL)
    await store.update("go", "dead", {3}, set(), ttl=0.3)
    assert await store.sweep() == []  # not expired yet
    await asyncio.sleep(0.5)

    changes = {change.room_slug: change for change in await store.sweep()}
    assert changes["chess"].went_away == (1,)  # 2 is still online on the live process
    assert changes["chess"].online_count == 1
    assert changes["go"].went_away == (3,)
    assert await store.sweep() == []
    assert store.read("chess").online == {2}


async def test_online_counts_cover_every_room_asked_for(store) -> None:
    await store.update("chess", "process-a", {1, 2}, set(), TTL)
    await store.update("go", "process-b", {3}, set(), TTL)
    assert store.online_counts(["chess", "go", "empty"]) == {"chess": 2, "go": 1, "empty": 0}


async def test_sequence_numbers_are_read_together_for_every_room_asked_for(store) -> None:
    await store.update("chess", "process-a", {1, 2}, set(), TTL)
    await store.update("chess", "process-a", set(), {1}, TTL)
    await store.update("go", "process-b", {3}, set(), TTL)

    assert store.sequence_numbers(["chess", "go", "empty"]) == {
        "chess": store.read("chess").sequence,
        "go": store.read("go").sequence,
        "empty": 0,
    }
    assert store.sequence_numbers([]) == {}
