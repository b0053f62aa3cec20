from django.conf import settings
from django.core.management.base import BaseCommand

from liveroom.rooms.cleanup import remove_empty_rooms
from liveroom.rooms.idle import remove_idle_members


class Command(BaseCommand):
    help = (
        "Remove members away for longer than LIVEROOM_IDLE_REMOVAL_SECONDS, as if they had "
        "left (every open page of their room sees them go), and rooms empty for longer than "
        "LIVEROOM_EMPTY_ROOM_SECONDS. Meant for cron."
    )

    def handle(self, *args, **options) -> None:
        if not settings.LIVEROOM_IDLE_REMOVAL_SECONDS:
            self.stdout.write("Idle removal is off (LIVEROOM_IDLE_REMOVAL_SECONDS).")
        elif not settings.REDIS_URL:
            # Without Redis, who is online is known only inside the server process, which
            # removes idle members itself whenever a room is used.
            self.stdout.write(
                "Without REDIS_URL only the server process knows who is online; it removes "
                "idle members itself as rooms are used."
            )
        else:
            removed = remove_idle_members()
            self.stdout.write(f"Removed {removed} idle member{'s' if removed != 1 else ''}.")
        rooms = remove_empty_rooms()
        self.stdout.write(f"Removed {rooms} empty room{'s' if rooms != 1 else ''}.")
