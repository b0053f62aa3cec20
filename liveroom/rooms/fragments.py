"""The HTML a page is sent: every fragment comes from a partial of templates/liveroom/room.html
(or rooms.html), the same partials that render the pages, so a pushed change and a page load cannot
drift apart. Rendering only (and the reads a fragment needs): the cached member lists are in
member_lists.py, snapshots in snapshots.py, and sending is the live transport's business
(liveroom/live/).
"""

from collections.abc import Iterable
from typing import TypedDict

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext

from liveroom.presence import PresenceChange, RoomPresence, room_presence
from liveroom.rooms.crowds import WindowMove, is_crowded, recent_ids
from liveroom.rooms.listing import rooms_page
from liveroom.rooms.models import Member, Room
from liveroom.rooms.shown import announcement, joined, said

ROOM_TEMPLATE = "liveroom/room.html"


def presence_context(presence: RoomPresence | None) -> dict:
    """What the room templates need to show who is online."""
    return {
        "presence": settings.LIVEROOM_PRESENCE,
        "online": presence.online if presence else frozenset(),
        "online_count": len(presence.online) if presence else 0,
    }


# Each membership change, and the partial of room.html that shows it.
CHANGE_PARTIALS = {
    "joined": "member-joined",  # the entry added, the count
    "updated": "member-updated",  # the entry swapped (what it shows changed)
    "left": "member-left",  # the entry deleted, the count
    "removed": "member-left",
}


class ChangeData(TypedDict):
    """One membership change as the channel layer carries it: no words, no markup, so each
    process renders it in the languages its pages use (liveroom/live/rendering.py)."""

    change: str  # a key of CHANGE_PARTIALS
    member: dict  # "id" and each of Member.SHOWN_FIELDS, as after the change
    before: dict  # the changed shown fields before an update
    count: int  # members after the change
    online: bool  # whether the member has a page open (an updated entry shows it)
    # What the change does to the list besides the member's own entry (crowds.WindowMove): the
    # list whole (each member as `member` is) and which of them are online; the member a join
    # pushed out of a crowded room's window; the one a leave brought back, and whether online;
    # whether the member is not in the window at all.
    listed: list[dict] | None
    listed_online: list[int]
    dropped: int | None
    entering: dict | None
    entering_online: bool
    unlisted: bool


def change_data(
    *,
    member: Member,
    change: str,
    count: int,
    before: dict,
    online: bool,
    window: WindowMove | None = None,
    online_now: frozenset[int] = frozenset(),
) -> ChangeData:
    window = window or WindowMove()
    listed, entering = window.listed, window.entering
    return {"change": change, "member": shown_of(member), "before": before, "count": count,
            "online": online,
            "listed": None if listed is None else [shown_of(each) for each in listed],
            "listed_online": [each.pk for each in listed or () if each.pk in online_now],
            "dropped": window.dropped,
            "entering": None if entering is None else shown_of(entering),
            "entering_online": entering is not None and entering.pk in online_now,
            "unlisted": window.unlisted}  # fmt: skip


def shown_of(member: Member) -> dict:
    return {"id": member.pk} | {field: getattr(member, field) for field in Member.SHOWN_FIELDS}


def member_of(fields: dict) -> Member:
    fields = dict(fields)
    return Member(pk=fields.pop("id"), **fields)


def render_change(data: ChangeData) -> str:
    """One membership change (CHANGE_PARTIALS) as out-of-band swaps, in the active language; a
    change that carries the list whole (a crowded room's) as the list, the same on every
    page."""
    if data.get("listed") is not None:
        return render_listed(data)
    member = member_of(data["member"])
    entering = data.get("entering")
    dropped = data.get("dropped")
    context = {
        "member": member,
        "count": data["count"],
        "oob": True,
        "unlisted": data.get("unlisted", False),
        "dropped": None if dropped is None else Member(pk=dropped, name=""),
        "entering": None if entering is None else member_of(entering),
    }
    # A new member has no page open yet; an updated one keeps their state, and one back in a
    # crowded room's window shows theirs.
    online = {member.pk} if data["online"] else set()
    if entering is not None and data.get("entering_online"):
        online.add(entering["id"])
    shows_presence = data["change"] == "updated" or entering is not None
    context |= presence_context(RoomPresence(0, frozenset(online)) if shows_presence else None)
    return render_to_string(f"{ROOM_TEMPLATE}#{CHANGE_PARTIALS[data['change']]}", context).strip()


def render_listed(data: ChangeData) -> str:
    members = [member_of(fields) for fields in data["listed"] or ()]
    context = {"members": members, "count": data["count"], "listed": len(members),
               "crowded": is_crowded(data["count"]), "oob": True}  # fmt: skip
    context |= presence_context(RoomPresence(0, frozenset(data["listed_online"])))
    entries = render_to_string(f"{ROOM_TEMPLATE}#listed-entries", context)
    context["members_html"] = mark_safe(entries.strip())  # rendered from the template, escaped
    return render_to_string(f"{ROOM_TEMPLATE}#members-listed", context).strip()


def change_words(data: ChangeData) -> str:
    """What screen readers hear of one change, in the active language."""
    member, change = member_of(data["member"]), data["change"]
    if change == "updated":
        return announcement(member, data["before"])
    words = {"joined": gettext("{name} joined"), "left": gettext("{name} left"),
             "removed": gettext("A moderator removed {name}")}  # fmt: skip
    return said(words[change], name=member.name)


def away_words(names: list[str]) -> str:
    """What screen readers hear when members go away, in the active language."""
    if len(names) == 1:
        return said(gettext("{name} is away"), name=names[0])
    if len(names) == 2:
        return said(gettext("{first} and {second} are away"), first=names[0], second=names[1])
    return ngettext("%(count)d person is away", "%(count)d people are away", len(names)) % {
        "count": len(names)
    }


def burst_words(kinds: dict[str, int]) -> str:
    """What screen readers hear of several changes at once ("12 people joined"), by kind:
    "joined", "left" (removed too), "updated", "away"; in the active language."""
    sentences = {
        "joined": lambda n: ngettext("%(count)d person joined", "%(count)d people joined", n),
        "left": lambda n: ngettext("%(count)d person left", "%(count)d people left", n),
        "updated": lambda n: ngettext("%(count)d member changed", "%(count)d members changed", n),
        "away": lambda n: ngettext("%(count)d person is away", "%(count)d people are away", n),
    }
    said_ = [sentences[kind](n) % {"count": n} for kind, n in kinds.items() if n]
    return joined(said_)


def render_announcement(words: str) -> str:
    """`words` (escaped, names isolated) into the page's live region, as an out-of-band swap."""
    return render_to_string(f"{ROOM_TEMPLATE}#announce", {"announcement": words}).strip()


class PresenceData(TypedDict):
    """Who came online or went away in one room, as the channel layer carries it."""

    members: list[tuple[int, str]]  # (id, name) of each member it shows
    online: list[int]  # which of them are online now
    online_count: int
    went_away: list[str]  # the names of those who went away


def presence_data(change: PresenceChange) -> PresenceData:
    """What a presence change shows (the members' names read in one query)."""
    members = list(
        Member.objects.filter(
            room__slug=change.room_slug, pk__in=change.came_online + change.went_away
        ).values_list("id", "name")
    )
    return {
        "members": members,
        "online": list(change.came_online),
        "online_count": change.online_count,
        "went_away": [name for member_id, name in members if member_id in change.went_away],
    }


def render_presence_change(data: PresenceData) -> str:
    """A presence change as out-of-band swaps, in the active language."""
    context = {
        "members": [Member(pk=member_id, name=name) for member_id, name in data["members"]],
        "online": frozenset(data["online"]),
        "online_count": data["online_count"],
        "oob": True,
    }
    return render_to_string(f"{ROOM_TEMPLATE}#presence-changed", context).strip()


def render_presence_now(
    *, room_slug: str, member_ids: list[int], languages: Iterable[str]
) -> dict[str, str]:
    """These members' presence as the store has it now (newer than any message in flight), in
    each of `languages`."""
    presence = room_presence(room_slug)
    members = list(Member.objects.filter(room__slug=room_slug, pk__in=member_ids).only("id"))
    return _presence_swaps(members, presence, languages)


def render_presence_all(room_slug: str, languages: Iterable[str]) -> tuple[dict[str, str], int]:
    """The presence of every member a page may list (everyone, or a crowded room's recent
    arrivals) as the store has it now, in each of `languages`, and the presence sequence it is
    at: for pages that missed a presence message."""
    presence = room_presence(room_slug)
    members = [Member(pk=member_id) for member_id in recent_ids(room_slug)]
    return _presence_swaps(members, presence, languages), presence.sequence


def _presence_swaps(
    members: list[Member], presence: RoomPresence, languages: Iterable[str]
) -> dict[str, str]:
    context = {"members": members, "online": presence.online,
               "online_count": len(presence.online), "oob": True}  # fmt: skip
    rendered = {}
    for language in languages:
        with translation.override(language):
            html = render_to_string(f"{ROOM_TEMPLATE}#presence-changed", context)
            rendered[language] = html.strip()
    return rendered


def render_room_list(languages: Iterable[str] | None = None) -> dict[str, str]:
    """The first page of /rooms/ (the live one), as an out-of-band swap, in each of `languages`
    (every language offered unless said), read once."""
    context = {"rooms": rooms_page(1), "oob": True}
    rendered = {}
    for language in languages or language_codes():
        with translation.override(language):
            rendered[language] = render_to_string("liveroom/rooms.html#room-list", context).strip()
    return rendered


def language_codes() -> list[str]:
    """The languages pages are offered in (LANGUAGES)."""
    return [code for code, _ in settings.LANGUAGES]


def page_language(asked: str | None) -> str:
    """The language a page asks its pieces in (its socket's `l`), if offered; else the
    default."""
    return asked if asked in language_codes() else settings.LANGUAGE_CODE


def render_own_entry(me: Member, presence: RoomPresence) -> str:
    """A member's own entry, marked "you"."""
    context = {"member": me, "me": me} | presence_context(presence)
    return render_to_string(f"{ROOM_TEMPLATE}#member", context)


def render_entries(member: Member) -> tuple[str, str]:
    """A member's entry as others see it: online, and away."""
    online, away = (
        render_to_string(f"{ROOM_TEMPLATE}#member", {"member": member} | presence_context(presence))
        for presence in (RoomPresence(0, frozenset({member.pk})), None)
    )
    return online, away


def render_count(count: int) -> str:
    """The room's member count, as an out-of-band swap, in the active language."""
    return render_to_string(f"{ROOM_TEMPLATE}#count", {"count": count, "oob": True}).strip()


def render_heartbeat() -> str:
    """The connection indicator, sent to every page now and then to say the socket is alive (in
    the active language)."""
    return render_to_string(f"{ROOM_TEMPLATE}#connection", {"oob": True}).strip()


NOTICES = ("left", "removed", "gone", "closed")


def render_live_controls(
    *, room_slug: str, paused: bool, quiet: bool, missed: int | None = None
) -> str:
    """A page's pause and spoken-announcement controls as they are now, with its status (and,
    resumed, how many changes it missed), in the active language."""
    context = {"room": Room(slug=room_slug), "paused": paused, "quiet": quiet, "missed": missed,
               "oob": True}  # fmt: skip
    html = render_to_string(f"{ROOM_TEMPLATE}#live-controls", context)
    return html.strip()


def render_announcement_region(*, quiet: bool) -> str:
    """The page's live region, spoken or silent."""
    return render_to_string(f"{ROOM_TEMPLATE}#announcement-region", {"quiet": quiet, "oob": True})


def render_notice(room_slug: str, notice: str) -> str:
    """What a page shows as it closes, no longer in the room: its member `"left"` from another
    tab, was `"removed"` by a moderator, is `"gone"` (removed outside the app), or the room was
    `"closed"`."""
    assert notice in NOTICES, notice
    context = {"room": Room(slug=room_slug), "notice": notice, "oob": True,
               "name_max_length": Member.NAME_MAX_LENGTH}  # fmt: skip
    return render_to_string(f"{ROOM_TEMPLATE}#notice", context).strip()
