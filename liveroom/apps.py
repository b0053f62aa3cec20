from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

from liveroom import metrics


def database_connections_in_use() -> float:
    """The default database pool's connections out (0 without a pool: SQLite)."""
    pool = getattr(connections["default"], "pool", None)
    if pool is None:
        return 0.0
    stats = pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


def install_triggers(*, using: str, **kwargs: object) -> None:
    from liveroom.rooms import triggers

    triggers.install(connections[using])


class LiveroomConfig(AppConfig):
    name = "liveroom"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from liveroom import checks  # noqa: F401  the template contract, registered

        # The domain announces changes; the live transport publishes them.
        from liveroom.live.receivers import on_room_changed, on_room_closed
        from liveroom.rooms.signals import room_changed, room_closed

        room_changed.connect(on_room_changed, dispatch_uid="liveroom.live.publish")
        # The database's rule (liveroom/rooms/triggers.py), for the schema as migrated.
        post_migrate.connect(install_triggers, sender=self, dispatch_uid="liveroom.triggers")
        room_closed.connect(on_room_closed, dispatch_uid="liveroom.live.publish-closed")
        metrics.database_connections_in_use.set_function(database_connections_in_use)
