"""Snapshots: the room as each page's member sees it, for many pages of one room read together
(liveroom/live/snapshot_reads.py asks): one query, and the list's when the room has changed,
however many pages ask."""

from dataclasses import dataclass
from typing import Any

from django.template.loader import render_to_string
from django.utils import translation

from liveroom.presence import room_presence
from liveroom.rooms.fragments import ROOM_TEMPLATE, presence_context
from liveroom.rooms.member_lists import MemberList, member_lists
from liveroom.rooms.models import Member
from liveroom.rooms.sessions import live_sessions, session_alive


@dataclass(frozen=True)
class Snapshot:
    """Everything one page needs to show the room as it is now."""

    version: int
    presence_sequence: int
    member_id: int
    member_list: MemberList  # shared by every page of the room at this version
    members_html: str  # the list: the same string for every page at this version and presence
    own_html: str  # this page's own part


# A session key, whether its session must be checked, and the language of the page asking.
SnapshotWanted = tuple[str, bool, str]


def snapshots(room_slug: str, wanted: list[SnapshotWanted]) -> dict[SnapshotWanted, Snapshot]:
    """The room as each wanted session's member sees it, read together: one query, and one list
    (per language asked in) however many pages ask. A session that is not a member (or, when it
    must be checked, no longer a live session) has no snapshot."""
    # The members asked for, each with its room (and whether its session is alive, where the
    # store is the database): one statement.
    rows = Member.objects.filter(
        room__slug=room_slug, session_key__in={key for key, _, _ in wanted}
    ).select_related("room")
    alive = session_alive("session_key")
    read: list[Any] = list(rows if alive is None else rows.annotate(session_alive=alive))
    if alive is not None:
        checked = {member.session_key for member in read if member.session_alive}
    else:
        checked = live_sessions({key for key, check, _ in wanted if check})
    allowed = {key for key, check, _ in wanted if key in checked or not check}
    members = {member.session_key: member for member in read if member.session_key in allowed}
    if not members:
        return {}
    room = read[0].room  # its version, and its URLs for the page's own forms
    presence = room_presence(room_slug)
    found: dict[tuple[str, str], Snapshot] = {}
    for language in {language for _, _, language in wanted}:
        with translation.override(language):
            member_list = member_lists.current(room_slug, room.pk, room.version)
            members_html = member_lists.render(member_list, presence)
            for session_key, me in members.items():
                context = {"room": room, "me": me, "count": member_list.count,
                           "crowded": member_list.crowded, "oob": True}  # fmt: skip
                context |= presence_context(presence)
                found[session_key, language] = Snapshot(
                    version=member_list.version,
                    presence_sequence=presence.sequence,
                    member_id=me.pk,
                    member_list=member_list,
                    members_html=members_html,
                    own_html=render_to_string(f"{ROOM_TEMPLATE}#snapshot-you", context).strip(),
                )
    return {
        (key, check, language): found[key, language]
        for key, check, language in wanted
        if (key, language) in found and (key in checked or not check)
    }
