"""Django finds an app's models here; they live with the rest of the domain in liveroom.rooms."""

from liveroom.rooms.models import Member, Room

__all__ = ["Member", "Room"]
