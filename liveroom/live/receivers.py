"""What the live transport does with the domain's signals (connected in liveroom/apps.py):
publish each change after the view's response (what changed, read in the writer's thread; each
process renders it in its pages' languages: liveroom/live/rendering.py), with a refresh of the
/rooms/ list."""

from liveroom.live import publish
from liveroom.live.after_response import send_after_response
from liveroom.live.core import live_core
from liveroom.live.messages import CHANGE_EVENT, CLOSED_EVENT, RoomChange, RoomClosed, room_group
from liveroom.presence import room_presence
from liveroom.rooms import fragments
from liveroom.rooms.crowds import WindowMove
from liveroom.rooms.models import Member, Room


def on_room_changed(
    sender: object,
    *,
    room: Room,
    version: int,
    member: Member,
    change: str,
    count: int,
    before: dict,
    window: WindowMove | None = None,
    **kwargs: object,
) -> None:
    window = window or WindowMove()
    # An updated entry shows whether its member is online; a new one has no page open yet. A
    # list sent whole, or a member back in the window, shows each of its members'.
    shows_others = window.listed is not None or window.entering is not None
    online_now = (
        room_presence(room.slug).online if change == "updated" or shows_others else frozenset()
    )
    data = fragments.change_data(
        member=member, change=change, count=count, before=before,
        online=member.pk in online_now, window=window, online_now=online_now,
    )  # fmt: skip
    group = room_group(room.slug)
    message: RoomChange = {
        "type": CHANGE_EVENT,
        "group": group,
        "version": version,
        "member_id": member.pk,
        "left": change in ("left", "removed"),
        "removed": change == "removed",
        "data": data,
    }
    what = f"member {member.pk} {change}, version {version}"
    send_after_response(publish.publish, group, message, what=what)
    if change != "updated":  # what a member shows is not on /rooms/
        send_after_response(refresh_room_list)


def on_room_closed(sender: object, *, room_slug: str, **kwargs: object) -> None:
    group = room_group(room_slug)
    message: RoomClosed = {"type": CLOSED_EVENT, "group": group}
    send_after_response(publish.publish, group, message, what=f"room {room_slug} closed")
    send_after_response(refresh_room_list)


async def refresh_room_list() -> None:
    await live_core().room_list.refresh()
