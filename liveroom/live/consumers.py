"""The sockets of room pages and of /rooms/.

A page has no channel of its own: the process's LiveCore (liveroom/live/core.py) hands it its
group's messages. Every write goes through the page's socket as a frame (liveroom/live/sockets.py).
"""

import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.http.cookie import parse_cookie
from django.utils import translation

from liveroom import metrics
from liveroom.live.controls import PageControls
from liveroom.live.core import live_core
from liveroom.live.messages import CHANGE_EVENT, CLOSED_EVENT, ROOMS_GROUP, Message, room_group
from liveroom.live.page import Decision, PageState
from liveroom.live.rendering import html_of
from liveroom.live.sockets import AsgiSocket, socket_for, text_frame
from liveroom.rooms import fragments, snapshots
from liveroom.rooms.models import Room
from liveroom.rooms.preferences import remember
from liveroom.wire import NOT_A_MEMBER, POLICY_VIOLATION, TRY_AGAIN_LATER

logger = logging.getLogger(__name__)


def session_key_of(scope: dict) -> str:
    """The session key from the page's cookie ("" without one). A page needs only the key, to
    find its membership; a session object and middleware per socket would cost memory."""
    cookie = "; ".join(
        value.decode("latin1") for name, value in scope["headers"] if name == b"cookie"
    )
    return parse_cookie(cookie).get(settings.SESSION_COOKIE_NAME, "")


def query_of(scope: dict) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin1"))


def page_shows(query: dict[str, list[str]]) -> tuple[int, int] | None:
    """The room version and presence sequence the page was rendered at, from the `v` and `p` of
    its socket's URL (templates/room.html); None if it does not say."""
    try:
        return int(query["v"][0]), int(query["p"][0])
    except (KeyError, ValueError):
        return None


def page_language(query: dict[str, list[str]]) -> str:
    """The language the page was rendered in (its socket's `l`), if it is offered."""
    return fragments.page_language(query.get("l", [""])[0])


class LivePage(AsyncWebsocketConsumer):
    """What room pages and /rooms/ pages share: no channel, a socket, a place in the LiveCore."""

    channel_layer_alias = None  # the LiveCore hands the page its messages
    group_name: str
    opened = False  # registered with the LiveCore
    closing = False
    admitted: list[tuple[str, str]] = []  # counted against these socket limits

    async def dispatch(self, message: dict) -> None:
        """A message to its handler, as Channels' dispatch, without the thread hop Channels
        makes before every handler (and after the disconnect) to close the database
        connections of its thread for synchronous work: a page's handlers hold no connection.
        What they read goes through the LiveCore's reader threads or database_sync_to_async,
        which close theirs before and after."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict) -> None:
        # Channels' own also leaves the consumer's groups (a page has none) and hops as above.
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def websocket_connect(self, message: dict) -> None:
        self.query = query_of(self.scope)
        self.language = page_language(self.query)
        self.socket = socket_for(self.scope, self.base_send)
        metrics.page_sockets.labels("asgi" if isinstance(self.socket, AsgiSocket) else "raw").inc()
        self.core = live_core()
        await super().websocket_connect(message)

    def limit_keys(self) -> list[tuple[str, str]]:
        """What this socket counts against: its client address (and, on room pages, its
        member's session)."""
        client = self.scope.get("client") or ("",)
        return [("address", str(client[0]))] if client[0] else []

    async def open(self) -> bool:
        """Join the LiveCore; False (and the page closed) over a socket limit, or if the layer
        is down (the page is asked to retry)."""
        keys = self.limit_keys()
        if not self.core.limits.admit(keys):
            await self.close(code=POLICY_VIOLATION)
            return False
        self.admitted = keys
        try:
            await self.join_core()
        except Exception as error:
            logger.warning(
                "Channel layer unavailable, page asked to retry: %s: %s",
                type(error).__name__, error,
            )  # fmt: skip
            await self.close(code=TRY_AGAIN_LATER)
            return False
        self.opened = True
        return True

    async def join_core(self) -> None:
        raise NotImplementedError

    def leave_core(self) -> None:
        raise NotImplementedError

    def write(self, html: str) -> None:
        self.socket.send(text_frame(html))

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.closing:
            return  # told twice (a moderator's message and the watch, say): closed once
        self.closing = True
        metrics.sockets_closed.labels(str(code)).inc()
        if isinstance(self.socket, AsgiSocket):
            await self.socket.drain()  # what was written goes out before the close
        await super().close(code=code, reason=reason)

    async def disconnect(self, code: int) -> None:
        if self.admitted:
            self.core.limits.release(self.admitted)
            self.admitted = []
        if self.opened:
            self.leave_core()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # These pages only listen; a client that talks is not one of ours.
        await self.close(code=POLICY_VIOLATION)


class RoomConsumer(LivePage):
    """One room page: a snapshot on connect, then each change's HTML."""

    triage: Callable[[Message], Decision]  # its PageState's, bound in connect()
    room_slug: str

    async def join_core(self) -> None:
        await self.core.open(self)

    def leave_core(self) -> None:
        self.core.close(self)

    async def connect(self) -> None:
        self.room_slug = self.scope["url_route"]["kwargs"].get("slug", Room.DEFAULT_SLUG)
        self.group_name = room_group(self.room_slug)
        self.state = PageState()
        self.triage = self.state.triage  # on every message to every page: one call, not two
        self.session_key = session_key_of(self.scope)
        self.page_shows = page_shows(self.query)
        self.state.paused = self.page_shows is not None and "paused" in self.query
        self.quiet = "quiet" in self.query
        self.controls = PageControls()
        # Accept before refusing: a refused handshake reaches the browser as 1006, which htmx
        # retries; an accepted socket closed with NOT_A_MEMBER is not retried.
        await self.accept()
        if not self.session_key or not Room.is_valid_slug(self.room_slug):
            await self.close(code=NOT_A_MEMBER)
            return
        # In the group before the snapshot is read, so no change can fall in between.
        if not await self.open():
            return
        await self.send_snapshot(first=True)
        if self.state.member_id is None:
            return  # closed: not a member, or the database is down
        for message in self.state.release_waiting():  # versions keep them right in any order
            self.core.delivery.deliver_to(self, message)
        self.socket.forget_handshake()  # the page's cookie was all it needed of its headers
        self.core.watch_page(self)

    def limit_keys(self) -> list[tuple[str, str]]:
        return [("member", self.session_key), *super().limit_keys()]

    @property
    def member_id(self) -> int | None:
        return self.state.member_id

    @property
    def paused(self) -> bool:
        return self.state.paused

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def ready(self) -> bool:
        return self.state.waiting is None

    def next_held(self) -> Message | None:
        return self.state.next_held()

    def gap_open(self) -> bool:
        return self.state.gap_open()

    async def handle(self, message: Message) -> None:
        """What triage decided to HANDLE and the LiveCore leaves to each page: its own member
        left from another tab or was removed by a moderator, or the room was closed. (A rename
        goes through LiveCore.refresh_own, a late presence message through
        LiveCore.send_presence_now.)"""
        if message["type"] == CLOSED_EVENT:
            self.write(html_of(message, self.language))
            await self.close(code=NOT_A_MEMBER)
        elif message["type"] == CHANGE_EVENT and message["left"]:
            await self.close_with_notice("removed" if message.get("removed") else "left")

    async def close_with_notice(self, notice: str) -> None:
        """Tell the page why it is no longer in the room (fragments.NOTICES), and close it."""
        with translation.override(self.language):
            self.write(fragments.render_notice(self.room_slug, notice))
        await self.close(code=NOT_A_MEMBER)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page's pause and spoken-announcement buttons (htmx's ws-send: the form's values
        as JSON); anything else closes the socket, as does pressing them too fast."""
        asked = self.controls.read(text_data)
        if asked is None:
            await self.close(code=POLICY_VIOLATION)
            return
        if not self.ready:
            return  # before the page has its first list: nothing changes, press again
        setting, value = asked
        missed = None
        if setting == "live" and (value == "pause") != self.state.paused:
            if value == "pause":
                self.state.paused = True
            else:
                shown = self.state.version
                self.state.paused = False
                await self.send_snapshot()
                missed = self.state.version - shown
        elif setting == "spoken":
            quiet = value == "off"
            if quiet != self.quiet:
                self.quiet = quiet
                with translation.override(self.language):
                    self.write(fragments.render_announcement_region(quiet=quiet))
        with translation.override(self.language):
            self.write(
                fragments.render_live_controls(
                    room_slug=self.room_slug, paused=self.paused, quiet=self.quiet, missed=missed
                )
            )
        # Remembered for the session's next pages (not awaited by this one).
        self.core.tasks.spawn(
            database_sync_to_async(remember)(self.session_key, paused=self.paused, quiet=self.quiet)
        )

    async def send_snapshot(self, *, first: bool = False, rewind: bool = False) -> None:
        """The whole list (framed once for every page of the room at this version), then this
        page's own part. The first one also checks that the session is still live; a page
        whose load rendered this very list gets only its own part. With `rewind`, the snapshot
        is shown even if it is older than the page (the database went back)."""
        snapshot = await self.read_snapshot(check_session=first)
        if snapshot is None:
            return
        if first and self.state.paused and self.page_shows is not None:
            # Paused as it loaded: it keeps what it shows, and is sent nothing until resumed.
            version, presence_sequence = self.page_shows
            self.state.shown(member_id=snapshot.member_id, version=version,
                             presence_sequence=presence_sequence, rewind=True)  # fmt: skip
            return
        current = (snapshot.version, snapshot.presence_sequence) == self.page_shows
        self.show(snapshot, whole=rewind or not (first and current), rewind=rewind)

    async def read_snapshot(self, *, check_session: bool = False) -> snapshots.Snapshot | None:
        """The room as this page's member sees it now; None (and the page closed) if the
        session is no member, or the database is down (the page is asked to retry)."""
        try:
            snapshot = await self.core.snapshot(self, self.session_key, check_session=check_session)
        except DatabaseError as error:
            logger.warning("Database unavailable for a snapshot, page asked to retry: %s", error)
            await self.close(code=TRY_AGAIN_LATER)
            return None
        if snapshot is None:
            if self.state.member_id is None and self.page_shows is None:
                await self.close(code=NOT_A_MEMBER)  # no member's page: nothing to tell
            else:  # the membership went while the page was open, outside the app's writes
                await self.close_with_notice("gone")
        return snapshot

    def show_own_change(self, snapshot: snapshots.Snapshot) -> None:
        """A snapshot read after this page's own member was renamed from another tab (one for
        all of that member's pages): if the rename is all the page lacks, its own part is
        enough (it marks the new entry as "you")."""
        state = self.state
        only_own = (snapshot.version, snapshot.presence_sequence) == (
            state.version + 1,
            state.presence_seen,
        )
        self.show(snapshot, whole=not only_own)

    def show(self, snapshot: snapshots.Snapshot, *, whole: bool, rewind: bool = False) -> None:
        """Send `snapshot`: the list (framed once for every page of the room at this version)
        if `whole`, then this page's own part."""
        if not self.state.shown(
            member_id=snapshot.member_id,
            version=snapshot.version,
            presence_sequence=snapshot.presence_sequence,
            rewind=rewind,
        ):
            return  # read before a change this page has already shown
        if whole:
            self.socket.send(
                self.core.list_frame(self.room_slug, self.language, snapshot.members_html)
            )
        self.write(snapshot.own_html)
        metrics.snapshots_sent.labels("list" if whole else "own part").inc()
        if (held := self.state.next_held()) is not None:  # came early, now next
            self.core.delivery.deliver_to(self, held)


class RoomsConsumer(LivePage):
    """Keeps /rooms/ current: the list on connect, then the list again after each change (a
    listener of the rooms group: every message is the whole list)."""

    group_name = ROOMS_GROUP

    async def join_core(self) -> None:
        await self.core.listen(self)

    def leave_core(self) -> None:
        self.core.stop_listening(self)

    async def connect(self) -> None:
        await self.accept()
        if not await self.open():
            return
        try:
            rendered = await database_sync_to_async(fragments.render_room_list)([self.language])
        except Exception as error:
            logger.warning("Rooms page asked to retry: %s: %s", type(error).__name__, error)
            await self.close(code=TRY_AGAIN_LATER)
            return
        if settings.LIVEROOM_PRESENCE:
            self.core.presence.start()  # this process sweeps away the members of dead ones
        self.write(rendered[self.language])
        self.socket.forget_handshake()


class UnknownPath(AsyncWebsocketConsumer):
    """A socket to a path no page opens: refused at the handshake (daphne answers 403), with one
    short log line a minute however many come, never a traceback. The count is the process's."""

    channel_layer_alias = None
    LOG_EVERY_SECONDS = 60.0
    refused = 0
    next_line = 0.0

    async def connect(self) -> None:
        await self.close(code=POLICY_VIOLATION)  # before accept: no socket, a 403
        cls = type(self)
        cls.refused += 1
        if (now := time.monotonic()) >= cls.next_line:
            logger.info(
                "Refused %d socket(s) to unknown paths in the last minute, e.g. %r",
                cls.refused, self.scope.get("path", "")[:100],
            )  # fmt: skip
            cls.refused, cls.next_line = 0, now + cls.LOG_EVERY_SECONDS
