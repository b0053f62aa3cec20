"""The messages the channel layer carries, one TypedDict each (`type` names the handler).

Room messages carry what changed, not markup: each process renders a message once for each
language its pages of the room use (liveroom/live/rendering.py), so a room's pages can be in
several languages at the cost of a render per language, not per page."""

from typing import Literal, NotRequired, TypedDict

from liveroom.rooms.fragments import ChangeData, PresenceData

CHANGE_EVENT: Literal["room.change"] = "room.change"
PRESENCE_EVENT: Literal["room.presence"] = "room.presence"
CLOSED_EVENT: Literal["room.closed"] = "room.closed"
ROOMS_EVENT: Literal["rooms.change"] = "rooms.change"
BATCH_EVENT: Literal["room.batch"] = "room.batch"
ROOMS_GROUP = "rooms"  # the /rooms/ pages


def room_group(room_slug: str) -> str:
    return f"room.{room_slug}"


class RoomChange(TypedDict):
    """A member joined, was renamed or left; `version` is the room's version after it."""

    type: Literal["room.change"]
    group: str
    version: int
    member_id: int
    left: bool
    removed: NotRequired[bool]  # left because a moderator removed them (their pages say so)
    data: ChangeData
    rendered: NotRequired[dict[str, str]]  # by language, as this process renders it
    sent_at: NotRequired[float]  # time.time() at publish, for the delivery histogram


class RoomPresenceChange(TypedDict):
    """Members came online or went away; `sequence` is the room's presence sequence after it."""

    type: Literal["room.presence"]
    group: str
    sequence: int
    members: list[int]
    data: PresenceData
    rendered: NotRequired[dict[str, str]]
    sent_at: NotRequired[float]


class RoomClosed(TypedDict):
    """A moderator closed the room: every page of it shows the notice and closes."""

    type: Literal["room.closed"]
    group: str
    rendered: NotRequired[dict[str, str]]
    sent_at: NotRequired[float]


class RoomsChange(TypedDict):
    """The /rooms/ list, whole, in every language offered (it is refreshed at most once a
    second, whoever looks)."""

    type: Literal["rooms.change"]
    group: str
    html: dict[str, str]
    sent_at: NotRequired[float]


Message = RoomChange | RoomPresenceChange | RoomClosed | RoomsChange


class RoomBatch(TypedDict):
    """Several messages of one group that one process published together (liveroom/live/
    publish.py), in the order they were made; a receiver takes them one by one."""

    type: Literal["room.batch"]
    group: str
    messages: list[Message]
