from django.apps import AppConfig


class LiveroomConfig(AppConfig):
    name = "liveroom"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The domain announces changes; the live transport publishes them.
        from liveroom.live.receivers import on_room_changed, on_room_closed
        from liveroom.rooms.signals import room_changed, room_closed

        room_changed.connect(on_room_changed, dispatch_uid="liveroom.live.publish")
        room_closed.connect(on_room_closed, dispatch_uid="liveroom.live.publish-closed")
