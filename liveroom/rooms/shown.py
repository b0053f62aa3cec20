"""What a member shows on every page, declared once: each of Member.SHOWN_FIELDS with how a change
of it is announced to screen readers. `member_show` (membership.py) changes them; the member list
(member_lists.py) reads them and reuses an entry while they are the same; the `member` partial
renders them; the database bumps the room's version when one changes (migration 0005).

To add one: a field on Member, its name in SHOWN_FIELDS and here, a migration that names it in the
triggers' columns (as 0005 does), and its markup in the `member` partial (templates/liveroom/).
"""

from collections.abc import Callable
from dataclasses import dataclass

from liveroom.rooms.models import Member


@dataclass(frozen=True)
class Shown:
    # The announcement of a change of the field on `member` (already changed) from `before`.
    announce: Callable[[Member, object], str]


SHOWN: dict[str, Shown] = {
    "name": Shown(lambda member, before: f"{before} is now {member.name}"),
    "hand_raised": Shown(
        lambda member, before: (
            f"{member.name} raised a hand"
            if member.hand_raised
            else f"{member.name} lowered their hand"
        )
    ),
}

assert tuple(SHOWN) == Member.SHOWN_FIELDS, "every shown field says how it is announced"


def announcement(member: Member, before: dict[str, object]) -> str:
    """What a change of `member`'s shown fields from `before` says, each changed field's words."""
    return "; ".join(SHOWN[field].announce(member, value) for field, value in before.items())
