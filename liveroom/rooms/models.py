import re

from django.db import models
from django.urls import reverse
from django.utils import timezone

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$")
# Path segments under /room/ that are pages, not rooms.
RESERVED_SLUGS = frozenset({"join", "leave", "hand", "live"})


class RoomQuerySet(models.QuerySet):
    def with_members(self) -> "RoomQuerySet":
        """Rooms that have members, busiest first."""
        return self.filter(member_count__gt=0).order_by("-member_count", "slug")


class Room(models.Model):
    """A room; `version` counts its changes so pages can tell a missed update from a repeat.

    /room/ is the default room; any other is /room/<slug>/ and is created by its first join.
    """

    DEFAULT_SLUG = "lobby"

    slug = models.SlugField(unique=True, max_length=50)
    version = models.PositiveBigIntegerField(default=0)
    # When a member last joined, was renamed or left: an empty room goes after
    # LIVEROOM_EMPTY_ROOM_SECONDS (liveroom/rooms/cleanup.py).
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    # How many members it has, kept by the same triggers as `version` (migration 0006).
    member_count = models.PositiveIntegerField("members", default=0, db_default=0)

    objects = RoomQuerySet.as_manager()

    def __str__(self) -> str:
        return self.slug

    @staticmethod
    def is_valid_slug(slug: str) -> bool:
        return bool(SLUG.match(slug)) and slug not in RESERVED_SLUGS

    @property
    def is_default(self) -> bool:
        return self.slug == self.DEFAULT_SLUG

    def url(self, page: str = "room") -> str:
        """The room page, or its "join" or "leave" page."""
        return reverse(page) if self.is_default else reverse(page, kwargs={"slug": self.slug})

    @property
    def hand_url(self) -> str:
        return self.url("hand")

    @property
    def live_url(self) -> str:
        return self.url("live")

    @property
    def join_url(self) -> str:
        return self.url("join")

    @property
    def leave_url(self) -> str:
        return self.url("leave")

    @property
    def socket_path(self) -> str:
        return "/ws/room/" if self.is_default else f"/ws/room/{self.slug}/"


class Member(models.Model):
    """One browser session's membership of a room, under the name it chose.

    What every page shows of a member is SHOWN_FIELDS (liveroom/rooms/shown.py says how each
    change of one is announced): they are read for the member list, an entry rendered for a
    room version is reused while they are the same, and the database bumps the room's version
    when one changes (the triggers name them: migration 0005)."""

    NAME_MAX_LENGTH = 40
    SHOWN_FIELDS = ("name", "hand_raised")

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    session_key = models.CharField(max_length=40)
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    hand_raised = models.BooleanField(default=False, db_default=False)  # SQL inserts too
    joined_at = models.DateTimeField(auto_now_add=True)
    # When the member was last known to have a page open (or joined); idle removal reads it.
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["joined_at", "id"]
        indexes = [
            # A room's members in the order they joined, read from either end: its recent
            # arrivals, and search (liveroom/rooms/crowds.py). On PostgreSQL a trigram index
            # on the names answers search too (migration 0006).
            models.Index(fields=["room", "joined_at", "id"], name="member_room_joined"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "session_key"], name="one_membership_per_session"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def dom_id(self) -> str:
        return f"member-{self.pk}"
