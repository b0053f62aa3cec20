"""Rooms nobody is in go: LIVEROOM_EMPTY_ROOM_SECONDS after their last change, an empty room's
database row and its presence keys are deleted (a later join starts it afresh). A sweep first
removes the members idle for longer than LIVEROOM_IDLE_REMOVAL_SECONDS (liveroom/rooms/idle.py),
so a room whose people all wandered off goes too; then the sessions past their expiry are
deleted (what `manage.py clearsessions` does), so the session table holds only live ones.

Each process sweeps now and then: on a timer while it serves pages (the live core's), and as
rooms are used (a join, a leave); at most once every `sweep_interval()` seconds, a quarter of
the shorter delay and at most a minute. `manage.py remove_idle_members` sweeps too, for cron.
"""

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

from liveroom.presence import stores
from liveroom.rooms.idle import remove_idle_members
from liveroom.rooms.member_lists import member_lists
from liveroom.rooms.models import Room
from liveroom.rooms.sessions import session_engine

logger = logging.getLogger(__name__)

MOST_SECONDS_BETWEEN_SWEEPS = 60.0
LEAST_SECONDS_BETWEEN_SWEEPS = 1.0


def sweep_interval() -> float | None:
    """Seconds between a process's sweeps; None when neither removal is on."""
    delays = [
        delay
        for delay in (settings.LIVEROOM_EMPTY_ROOM_SECONDS, settings.LIVEROOM_IDLE_REMOVAL_SECONDS)
        if delay
    ]
    if not delays:
        return None
    return min(MOST_SECONDS_BETWEEN_SWEEPS, max(LEAST_SECONDS_BETWEEN_SWEEPS, min(delays) / 4))


def remove_empty_rooms() -> int:
    """Delete the rooms empty for longer than LIVEROOM_EMPTY_ROOM_SECONDS; return how many."""
    delay = settings.LIVEROOM_EMPTY_ROOM_SECONDS
    if not delay:
        return 0
    cutoff = timezone.now() - timedelta(seconds=delay)
    empty = Room.objects.filter(changed_at__lt=cutoff, members__isnull=True)
    slugs = list(empty.values_list("slug", flat=True)[:1000])
    if not slugs:
        return 0
    # Checked again in the statement: a room someone joined meanwhile stays.
    Room.objects.filter(slug__in=slugs, changed_at__lt=cutoff, members__isnull=True).delete()
    gone = set(slugs) - set(Room.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    for slug in gone:
        member_lists.forget(slug)
        if settings.LIVEROOM_PRESENCE:
            stores.for_reading().forget(slug)
    if gone:
        logger.info("Removed %d empty room(s)", len(gone), extra={"event": "rooms_removed"})
    return len(gone)


def remove_expired_sessions() -> None:
    """Delete the sessions past their expiry (one statement with the database store)."""
    session_engine().clear_expired()


class Sweeps:
    """When this process last swept: at most once every `sweep_interval()` seconds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_sweep = 0.0

    def now_and_then(self) -> None:
        """Sweep, unless this process swept less than an interval ago (from any thread)."""
        if (interval := sweep_interval()) is None:
            return
        with self.lock:
            if time.monotonic() < self.next_sweep:
                return
            self.next_sweep = time.monotonic() + interval
        try:
            remove_idle_members()
            remove_empty_rooms()
            remove_expired_sessions()
        except Exception as error:  # the next sweep tries again; the request goes on
            logger.warning("Sweep not done: %s: %s", type(error).__name__, error)


sweeps = Sweeps()  # the process's


@receiver(setting_changed)
def sweep_at_the_next_chance(*, setting: str, **kwargs: object) -> None:
    """New delays (override_settings in a test) are swept by at the next chance."""
    if setting in {"LIVEROOM_EMPTY_ROOM_SECONDS", "LIVEROOM_IDLE_REMOVAL_SECONDS"}:
        with sweeps.lock:
            sweeps.next_sweep = 0.0
