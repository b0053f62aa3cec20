from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from liveroom.broadcast import render_left_notice, render_snapshot
from liveroom.close_codes import NOT_A_MEMBER, POLICY_VIOLATION
from liveroom.models import Room


class RoomConsumer(AsyncWebsocketConsumer):
    """Pushes a room's changes to one page: a snapshot on connect, then each change's HTML."""

    room_slug = Room.DEFAULT_SLUG

    async def connect(self) -> None:
        self.group_name: str | None = None
        self.member_id: int | None = None
        self.version = 0
        session_key = self.scope["session"].session_key
        # Accept before refusing: a refused handshake reaches the browser as 1006, which htmx
        # retries; an accepted socket closed with NOT_A_MEMBER is not retried.
        await self.accept()
        if not session_key:
            await self.close(code=NOT_A_MEMBER)
            return
        # Join the group before reading the snapshot, so no change can fall in between.
        self.group_name = Room(slug=self.room_slug).group_name
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Pages only listen; a client that talks is not one of ours.
        await self.close(code=POLICY_VIOLATION)

    async def room_change(self, event: dict) -> None:
        version = event["version"]
        if version <= self.version:
            return
        if event["member_id"] == self.member_id:
            await self.own_membership_changed(left=event["left"])
        elif version > self.version + 1:
            await self.send_snapshot()
        else:
            self.version = version
            await self.send(text_data=event["html"])

    async def own_membership_changed(self, *, left: bool) -> None:
        if left:
            await self.send(text_data=render_left_notice())
            await self.close(code=NOT_A_MEMBER)
        else:
            # A rename from another tab: the snapshot marks this member as "you" again.
            await self.send_snapshot()

    async def send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(render_snapshot)(
            room_slug=self.room_slug, session_key=self.scope["session"].session_key
        )
        if snapshot is None:
            await self.close(code=NOT_A_MEMBER)
            return
        self.member_id = snapshot.member_id
        self.version = snapshot.version
        await self.send(text_data=snapshot.html)
