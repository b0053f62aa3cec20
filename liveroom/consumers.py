import asyncio
import logging

from channels import DEFAULT_CHANNEL_LAYER
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.http.cookie import parse_cookie
from redis.exceptions import RedisError

from liveroom import page_watch, presence, room_hub
from liveroom.broadcast import (
    PRESENCE_EVENT,
    ROOMS_GROUP,
    render_left_notice,
    render_presence_now,
    render_room_list,
    render_snapshot,
)
from liveroom.close_codes import NOT_A_MEMBER, POLICY_VIOLATION, TRY_AGAIN_LATER
from liveroom.daphne_server import PREPARED_SOCKET, prepare
from liveroom.models import Room
from liveroom.room_hub import FORWARD, HANDLE, SKIP

logger = logging.getLogger(__name__)

# Per room, the list of its latest snapshot and that list's frame: one O(N) frame per room,
# made once for every page that connects while the list stays current.
_snapshot_frames: dict[str, tuple[str, bytes]] = {}


def snapshot_frame(room_slug: str, members_html: str) -> bytes:
    cached = _snapshot_frames.get(room_slug)
    # broadcast.MemberList keeps one string per version and presence: same string, same list.
    if cached is None or cached[0] is not members_html:
        cached = _snapshot_frames[room_slug] = (members_html, prepare(members_html))
    return cached[1]


def session_key_of(scope: dict) -> str:
    """The session key from the page's cookie ("" without one). A page needs only the key, to
    find its membership; a session object and middleware per socket would cost memory."""
    cookie = "; ".join(
        value.decode("latin1") for name, value in scope["headers"] if name == b"cookie"
    )
    return parse_cookie(cookie).get(settings.SESSION_COOKIE_NAME, "")


class RoomConsumer(AsyncWebsocketConsumer):
    """Pushes a room's changes to one page: a snapshot on connect, then each change's HTML.

    The page has no channel of its own: the process's room hub hands it the room's messages
    (liveroom/room_hub.py). StockRoomConsumer below is the stock Channels way, for comparison.
    """

    channel_layer_alias = None  # no channel per page
    accepted = False

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (RedisError, TimeoutError) as error:
            # Before connect() even runs, Channels asks the layer for this page's channel; with
            # Redis unreachable that fails. Answer the handshake so htmx retries, not crash.
            logger.warning("Channel layer unavailable, page asked to retry: %s", error)
            if not self.accepted:
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})

    async def connect(self) -> None:
        self.room_slug = self.scope["url_route"]["kwargs"].get("slug", Room.DEFAULT_SLUG)
        # Under daphne, the socket itself: the hub writes a change's frame to it directly.
        self.socket = self.scope.get("extensions", {}).get(PREPARED_SOCKET)
        self.group_name = Room(slug=self.room_slug).group_name
        self.in_group = False
        self.member_id: int | None = None
        self.version = 0
        # Presence messages up to `presence_base` are in the last snapshot; `presence_seen` is
        # the latest applied since.
        self.presence_base = self.presence_seen = 0
        self.counted_present = False
        # Room messages that arrive before the first list is sent wait here, then go in order.
        self.waiting: list[dict] | None = []
        session_key = self.session_key = session_key_of(self.scope)
        # Accept before refusing: a refused handshake reaches the browser as 1006, which htmx
        # retries; an accepted socket closed with NOT_A_MEMBER is not retried.
        await self.accept()
        self.accepted = True
        if not session_key or not Room.is_valid_slug(self.room_slug):
            await self.close(code=NOT_A_MEMBER)
            return
        # Join the group before reading the snapshot, so no change can fall in between.
        try:
            await asyncio.wait_for(self.join_group(), timeout=settings.LIVEROOM_BROADCAST_TIMEOUT)
        except Exception as error:
            logger.warning(
                "Channel layer unavailable, page asked to retry: %s: %s",
                type(error).__name__,
                error,
            )
            await self.close(code=TRY_AGAIN_LATER)
            return
        self.in_group = True
        await self.send_snapshot()
        if self.member_id is None:
            return  # closed: not a member, or the database is down
        waiting, self.waiting = self.waiting, None
        for message in waiting:  # versions and sequences keep them right in any order
            await self.handle(message)
        if self.socket is not None:
            self.socket.forget_handshake()  # the page's cookie was all it needed of its headers
        # Watched only once it has a version: a page still waiting for its first list would
        # look behind and get a second one.
        page_watch.watch(self)
        if settings.LIVEROOM_PRESENCE:
            presence.tracker().page_opened(self.room_slug, self.member_id)
            self.counted_present = True

    async def join_group(self) -> None:
        await room_hub.hub().add(self)

    async def leave_group(self) -> None:
        room_hub.hub().discard(self)

    async def disconnect(self, code: int) -> None:
        page_watch.unwatch(self)
        if self.counted_present:
            presence.tracker().page_closed(self.room_slug, self.member_id)
        if self.in_group:
            try:
                await asyncio.wait_for(
                    self.leave_group(), timeout=settings.LIVEROOM_BROADCAST_TIMEOUT
                )
            except Exception as error:
                # The layer forgets the channel locally first; Redis drops it with the process.
                logger.info("Left group %s while the layer is down: %s", self.group_name, error)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Pages only listen; a client that talks is not one of ours.
        await self.close(code=POLICY_VIOLATION)

    def triage(self, message: dict) -> str:
        """FORWARD a room message (now counted as shown), SKIP it, or HANDLE it: handle()."""
        if self.waiting is not None:
            self.waiting.append(message)
            return SKIP
        if message["type"] == PRESENCE_EVENT:
            sequence = message["sequence"]
            if sequence <= self.presence_base or sequence == self.presence_seen:
                return SKIP  # shown already, by the snapshot or as this very message
            if sequence < self.presence_seen:
                return HANDLE  # late: processes publish independently
            self.presence_seen = sequence
            return FORWARD
        version = message["version"]
        if version <= self.version:
            return SKIP  # a repeat, or older than the page's list
        if message["member_id"] == self.member_id or version > self.version + 1:
            return HANDLE  # this page's own member changed, or a change was missed
        self.version = version
        return FORWARD

    async def handle(self, message: dict) -> None:
        match self.triage(message):
            case room_hub.FORWARD:
                await self.send(text_data=message["html"])
            case room_hub.HANDLE if message["type"] == PRESENCE_EVENT:
                # Late: its states may be older than what the page shows. The store's current
                # states of the same members are newer than any message.
                html = await database_sync_to_async(render_presence_now)(
                    room_slug=self.room_slug, member_ids=message["members"]
                )
                await self.send(text_data=html)
            case room_hub.HANDLE if message["member_id"] == self.member_id:
                await self.own_membership_changed(left=message["left"])
            case room_hub.HANDLE:
                await self.send_snapshot()

    async def own_membership_changed(self, *, left: bool) -> None:
        if left:
            await self.send(text_data=render_left_notice(self.room_slug))
            await self.close(code=NOT_A_MEMBER)
        else:
            # A rename from another tab: the snapshot marks this member as "you" again.
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        try:
            snapshot = await database_sync_to_async(render_snapshot)(
                room_slug=self.room_slug, session_key=self.session_key
            )
        except DatabaseError as error:
            logger.warning("Database unavailable for a snapshot, page asked to retry: %s", error)
            await self.close(code=TRY_AGAIN_LATER)
            return
        if snapshot is None:
            await self.close(code=NOT_A_MEMBER)
            return
        if snapshot.version < self.version:
            return  # read before a change this page has already shown
        self.member_id = snapshot.member_id
        self.version = snapshot.version
        self.presence_base = self.presence_seen = snapshot.presence_sequence
        if self.socket is None:
            await self.send(text_data=snapshot.html)
            return
        # Under daphne, two messages: the list, framed once for every page that connects
        # while it stays current, then this page's own part.
        self.socket.send(snapshot_frame(self.room_slug, snapshot.members_html))
        await self.send(text_data=snapshot.own_html)


class StockRoomConsumer(RoomConsumer):
    """The stock Channels way (LIVEROOM_FAST_FORWARD off, for comparison): a channel per page in
    the room's group, each message dispatched by Channels to the page's own task."""

    channel_layer_alias = DEFAULT_CHANNEL_LAYER

    async def join_group(self) -> None:
        await self.channel_layer.group_add(self.group_name, self.channel_name)

    async def leave_group(self) -> None:
        await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def room_change(self, message: dict) -> None:
        await self.handle(message)

    async def room_presence(self, message: dict) -> None:
        await self.handle(message)


class RoomsConsumer(AsyncWebsocketConsumer):
    """Keeps /rooms/ current: the list on connect, then the list again after each change."""

    async def connect(self) -> None:
        await self.accept()
        try:
            await asyncio.wait_for(
                self.channel_layer.group_add(ROOMS_GROUP, self.channel_name),
                timeout=settings.LIVEROOM_BROADCAST_TIMEOUT,
            )
            html = await database_sync_to_async(render_room_list)()
            if settings.LIVEROOM_PRESENCE:
                presence.tracker()  # this process sweeps away the members of dead processes
        except Exception as error:
            logger.warning("Rooms page asked to retry: %s: %s", type(error).__name__, error)
            await self.close(code=TRY_AGAIN_LATER)
            return
        await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(ROOMS_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.close(code=POLICY_VIOLATION)

    async def rooms_change(self, event: dict) -> None:
        await self.send(text_data=event["html"])
