"""The /rooms/ list: the rooms with members, busiest first, a page at a time."""

from django.conf import settings
from django.core.paginator import Page, Paginator

from liveroom.presence import online_counts
from liveroom.rooms.models import Room


def rooms_page(number: int | str | None) -> Page:
    """One page of the rooms with members, busiest first (LIVEROOM_ROOMS_PAGE_SIZE a page),
    each with `member_count` and `online_count`; a number out of range gives the nearest page."""
    page = Paginator(Room.objects.with_members(), settings.LIVEROOM_ROOMS_PAGE_SIZE).get_page(
        number
    )
    rooms = list(page.object_list)
    counts = online_counts([room.slug for room in rooms])
    for room in rooms:
        room.online_count = counts.get(room.slug)  # None: presence is off or unavailable
    page.object_list = rooms
    return page
