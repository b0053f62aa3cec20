from django.db import models


class Room(models.Model):
    """A room; `version` counts its changes so pages can tell a missed update from a repeat."""

    DEFAULT_SLUG = "lobby"

    slug = models.SlugField(unique=True)
    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return self.slug

    @property
    def group_name(self) -> str:
        return f"room.{self.slug}"

    @classmethod
    def default(cls) -> "Room":
        room, _ = cls.objects.get_or_create(slug=cls.DEFAULT_SLUG)
        return room


class Member(models.Model):
    """One browser session's membership of a room, under the name it chose."""

    NAME_MAX_LENGTH = 40

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    session_key = models.CharField(max_length=40)
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["joined_at", "id"]
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
