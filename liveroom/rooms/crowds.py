"""Crowded rooms: what a page lists of a room, read with bounded queries however many it holds.

A room of up to LIVEROOM_FULL_LIST_MAX members is listed whole on every page. Above that it is
crowded: a page shows the count, who is online, the member themself, and the most recent
arrivals, the last LIVEROOM_RECENT_ARRIVALS to join. That window is the same on every page of the
room, so one pushed list serves them all; anyone else is found by name (`search`). Every read
here is an index range of at most LIVEROOM_FULL_LIST_MAX + 1 rows (the index of migration 0006),
so a page load, a snapshot or a change costs the same in a room of 300 as in one of 50,000.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from django.utils.translation import ngettext

from liveroom.rooms.models import Member, Room

SEARCH_RESULTS = 20  # members a search shows; past them it asks for more of the name
SEARCH_MAX_LENGTH = Member.NAME_MAX_LENGTH


def is_crowded(count: int) -> bool:
    return count > settings.LIVEROOM_FULL_LIST_MAX


@dataclass(frozen=True)
class Listed:
    """What every page of a room lists, at one version: everyone, or (crowded) the most recent
    arrivals; either way in the order they joined."""

    room_id: int
    version: int
    count: int  # members in the room
    rows: list[tuple]  # (id, *Member.SHOWN_FIELDS) of each member listed


def listed(room_id: int, *, crowded: bool = False) -> Listed:
    """What pages of the room list now, with the room's version and member count, read in one
    statement: exactly the state at that version. By the room's id: the planner then walks the
    index from its newest end. A room that was `crowded` when last listed is read for its
    window alone (and read again whole in the rare case it no longer is)."""
    full, recent = settings.LIVEROOM_FULL_LIST_MAX, settings.LIVEROOM_RECENT_ARRIVALS
    newest = Member.objects.filter(room_id=room_id).order_by("-joined_at", "-id")
    rows = newest.values_list("room__version", "room__member_count", "id", *Member.SHOWN_FIELDS)
    read = list(rows[: recent if crowded else full + 1])
    if not read:
        return Listed(room_id, room_version(room_id), 0, [])
    version, total = read[0][:2]
    if crowded and not is_crowded(total) and total > len(read):  # the crowd has gone
        return listed(room_id)
    shown = [row[2:] for row in read]
    if is_crowded(total):
        shown = shown[:recent]
    return Listed(room_id, version, total, shown[::-1])


def room_version(room_id: int) -> int:
    """The room's version now (-1 if it is gone)."""
    version = Room.objects.filter(pk=room_id).values_list("version", flat=True).first()
    return -1 if version is None else version


@dataclass(frozen=True)
class WindowMove:
    """What a membership change does to the list every page shows, besides the member's own
    entry: in a crowded room a join pushes the oldest arrival out of the window, and a leave
    from it brings back the one before; when a crowd starts or ends, pages are sent the list
    whole."""

    listed: list[Member] | None = None  # the list whole, in the order they joined
    dropped: int | None = None  # the member a join pushed out of the window
    entering: Member | None = None  # the member a leave brought back, at the window's top
    unlisted: bool = False  # the member who joined or left is not in the window


def window_move(room_id: int, change: str, member: Member) -> tuple[int, int, WindowMove]:
    """The room's version and member count after `change` of `member`, and what the change does
    to the list, read in its transaction, the room locked: exactly the room at the change's
    version. One statement, unless the window moves back or the list is sent whole."""
    recent = settings.LIVEROOM_RECENT_ARRIVALS
    newest = Member.objects.filter(room_id=room_id).order_by("-joined_at", "-id")
    rows = list(newest.values_list("room__version", "room__member_count", "id")[: recent + 1])
    if rows:
        version, count = rows[0][:2]
    else:  # nobody left
        version, count = (
            Room.objects.filter(pk=room_id).values_list("version", "member_count").get()
        )
    return version, count, _moved(newest, count, change, member, [row[2] for row in rows])


def _moved(
    newest: QuerySet[Member], count: int, change: str, member: Member, ids: list[int]
) -> WindowMove:
    """What the change does to the list of a room with `count` members, `ids` the newest
    LIVEROOM_RECENT_ARRIVALS + 1 of them (`newest` reads them in that order)."""
    full, recent = settings.LIVEROOM_FULL_LIST_MAX, settings.LIVEROOM_RECENT_ARRIVALS
    left = change in ("left", "removed")
    if (change == "joined" and count == full + 1) or (left and count == full):
        shown = newest.only("id", "joined_at", *Member.SHOWN_FIELDS)
        return WindowMove(listed=list(shown[: recent if count > full else full])[::-1])
    if change == "updated" or not is_crowded(count):
        return WindowMove()
    if change == "joined":  # `ids`: the newest recent + 1
        if member.pk not in ids[:recent]:  # joined "earlier" than the window (a clock behind)
            return WindowMove(unlisted=True)
        return WindowMove(dropped=ids[recent] if len(ids) > recent else None)
    # A leave: the window now starts at the room's `recent`-th newest member. Was the member
    # who left newer than that one, it was listed, and that one has come back into the window.
    oldest = newest.only("id", "joined_at", *Member.SHOWN_FIELDS)[recent - 1 : recent].first()
    if oldest is not None and (member.joined_at, member.pk) > (oldest.joined_at, oldest.pk):
        return WindowMove(entering=oldest)
    return WindowMove(unlisted=True)


def recent_ids(room_slug: str) -> list[int]:
    """The ids of every member a page of the room may list (a bounded read: the most recent
    LIVEROOM_FULL_LIST_MAX + 1), for presence swaps sent to pages that missed some."""
    room_id = Room.objects.filter(slug=room_slug).values_list("pk", flat=True).first()
    if room_id is None:
        return []
    members = Member.objects.filter(room_id=room_id).order_by("-joined_at", "-id")
    return list(members.values_list("id", flat=True)[: settings.LIVEROOM_FULL_LIST_MAX + 1])


@dataclass(frozen=True)
class Found:
    """A search's answer: the members whose names contain what was asked (the first
    SEARCH_RESULTS to join, shown by name), whether more match, or why it was refused."""

    query: str
    members: list[Member]
    more: bool = False
    error: str = ""


def search(room_id: int, query: str) -> Found:
    """Members of the room whose names contain `query` (any case). On PostgreSQL a trigram
    index answers (migration 0006); elsewhere the room's members are scanned."""
    query = query.strip()
    if len(query) > SEARCH_MAX_LENGTH:
        error = ngettext(
            "Names are at most %(count)d character long.",
            "Names are at most %(count)d characters long.",
            SEARCH_MAX_LENGTH,
        ) % {"count": SEARCH_MAX_LENGTH}
        return Found(query, [], error=error)
    if not query:
        return Found(query, [])
    matches = Member.objects.filter(room_id=room_id, name__icontains=query)
    members = list(matches.order_by("joined_at", "id")[: SEARCH_RESULTS + 1])
    more = len(members) > SEARCH_RESULTS
    members = sorted(members[:SEARCH_RESULTS], key=lambda each: (each.name.casefold(), each.pk))
    return Found(query, members, more)
