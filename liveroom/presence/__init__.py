"""Presence: which members have a page open right now, on any server process.

Membership lives in the database; presence is live. Each process counts its own open pages per
member in a Tracker (liveroom/presence/tracker.py), which writes to a shared store
(liveroom/presence/store.py) and reports what changed through one callback. This package renders
nothing and publishes nothing; it knows rooms by slug and members by id.
"""

from liveroom.presence.store import (
    NO_PRESENCE,
    LocalStore,
    PresenceChange,
    RedisStore,
    RoomPresence,
    Store,
    online_counts,
    presence_sequences,
    room_presence,
    stores,
)

__all__ = [
    "NO_PRESENCE",
    "LocalStore",
    "PresenceChange",
    "RedisStore",
    "RoomPresence",
    "Store",
    "online_counts",
    "presence_sequences",
    "room_presence",
    "stores",
]
