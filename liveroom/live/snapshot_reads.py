"""Snapshot reads of one room's pages that ask together share one read.

When thousands of pages connect at once (a server restarted under them, a class arriving), each
page's snapshot would cost a few queries of its own. Instead a room has at most one read
running in the reader threads (liveroom/live/readers.py); the pages that ask meanwhile wait for
the next, which reads for all of them at once (liveroom/rooms/snapshots.py): the
sessions in one query, the members in another, the list once. Pages of one member asking at
once share one snapshot. Different rooms read side by side.
"""

import asyncio
import itertools

from liveroom.live.readers import Readers
from liveroom.rooms import snapshots
from liveroom.rooms.snapshots import Snapshot, SnapshotWanted

MOST_IN_ONE_READ = 500  # sessions in one read's queries

Waiting = dict[SnapshotWanted, asyncio.Future[Snapshot | None]]


class SnapshotReads:
    def __init__(self, readers: Readers) -> None:
        self.readers = readers
        self.waiting: dict[str, Waiting] = {}  # room slug -> what its next read is for
        self.reading: dict[str, asyncio.Task] = {}  # room slug -> its running reads

    async def read(
        self, room_slug: str, session_key: str, *, check_session: bool, language: str
    ) -> Snapshot | None:
        """The room as the session's member sees it now, in `language`; None if it is not a
        member (or, with `check_session`, no longer a live session). Raises what the read
        raised."""
        loop = asyncio.get_running_loop()
        waiting = self.waiting.setdefault(room_slug, {})
        wanted = (session_key, check_session, language)
        future = waiting.get(wanted)
        if future is None:
            future = waiting[wanted] = loop.create_future()
        if room_slug not in self.reading:
            self.reading[room_slug] = loop.create_task(self.read_while_asked(room_slug))
        return await asyncio.shield(future)  # a page that goes leaves the others their read

    async def read_while_asked(self, room_slug: str) -> None:
        try:
            while waiting := self.waiting.get(room_slug):
                batch = dict(itertools.islice(waiting.items(), MOST_IN_ONE_READ))
                for wanted in batch:
                    del waiting[wanted]
                if not waiting:
                    del self.waiting[room_slug]
                try:
                    found = await self.readers.run(snapshots.snapshots, room_slug, list(batch))
                except asyncio.CancelledError:
                    for future in batch.values():
                        future.cancel()
                    raise
                except Exception as error:  # each page asking decides what it means
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(error)
                            future.exception()  # a page gone meanwhile leaves it unread: no warning
                    continue
                for wanted, future in batch.items():
                    if not future.done():
                        future.set_result(found.get(wanted))
        finally:
            del self.reading[room_slug]

    def cancel(self) -> list[asyncio.Task]:
        """Stop every read (the core is closing); the tasks to wait for."""
        tasks = list(self.reading.values())
        for task in tasks:
            task.cancel()
        for waiting in self.waiting.values():
            for future in waiting.values():
                future.cancel()
        self.waiting.clear()
        return tasks
