from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from liveroom.rooms.idle import remove_idle_members


class Command(BaseCommand):
    help = (
        "Remove members away for longer than LIVEROOM_IDLE_REMOVAL_SECONDS, as if they had "
        "left; every open page of their room sees them go. Meant for cron."
    )

    def handle(self, *args, **options) -> None:
        if not settings.LIVEROOM_IDLE_REMOVAL_SECONDS:
            raise CommandError("Idle removal is off: set LIVEROOM_IDLE_REMOVAL_SECONDS.")
        if not settings.REDIS_URL:
            # Without Redis, who is online is known only inside the server process, which
            # removes idle members itself whenever a room is used.
            raise CommandError(
                "Without REDIS_URL only the server process knows who is online; it removes "
                "idle members itself as rooms are used."
            )
        removed = remove_idle_members()
        self.stdout.write(f"Removed {removed} idle member{'s' if removed != 1 else ''}.")
