"""What a member shows on every page, declared once: each of Member.SHOWN_FIELDS with how a change
of it is announced to screen readers. `member_show` (membership.py) changes them; the member list
(member_lists.py) reads them and reuses an entry while they are the same; the `member` partial
renders them; the database bumps the room's version when one changes (migration 0005).

To add one: a field on Member, its name in SHOWN_FIELDS and here, a migration that names it in the
triggers' columns (as 0005 does), and its markup in the `member` partial (templates/liveroom/).
Announcements are rendered in each page's language (the words go through gettext when they are
said, not when the change is made) and names are isolated, never reordered: `said()`.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext, pgettext

from liveroom.rooms.models import Member


def said(words: str, **names: object) -> SafeString:
    """`words` (already translated) with each name escaped and isolated in <bdi>: a name typed
    in one script keeps its order in a sentence of another."""
    isolated = {key: format_html("<bdi>{}</bdi>", name) for key, name in names.items()}
    return format_html(words, **isolated)


@dataclass(frozen=True)
class Shown:
    # The announcement of a change of the field on `member` (already changed) from `before`.
    announce: Callable[[Member, object], str]


SHOWN: dict[str, Shown] = {
    "name": Shown(
        lambda member, before: said(
            gettext("{before} is now {name}"), before=before, name=member.name
        )
    ),
    "hand_raised": Shown(
        lambda member, before: said(
            gettext("{name} raised a hand")
            if member.hand_raised
            else gettext("{name} lowered their hand"),
            name=member.name,
        )
    ),
}

assert tuple(SHOWN) == Member.SHOWN_FIELDS, "every shown field says how it is announced"


def announcement(member: Member, before: dict[str, object]) -> SafeString:
    """What a change of `member`'s shown fields from `before` says, each changed field's words,
    in the active language."""
    words = [SHOWN[field].announce(member, value) for field, value in before.items()]
    return joined(words)


def joined(sentences: list[str]) -> SafeString:
    """Several things said as one announcement, with the language's separator."""
    separator = pgettext("between things said in one announcement", "; ")
    return format_html_join(separator, "{}", ((sentence,) for sentence in sentences))
