"""Delivery: each room's messages handed to its pages, a window at a time.

The LiveCore takes the layer's messages as they come; each room's go into its outbox, and a
room's pages get at most one frame of its messages a window (WINDOW_SECONDS): a message in a
quiet room goes at once, by a pass of its own; the ones that come while one is going out are
gathered and go out together, in order of version, each page sent what it shows of them in one
frame, made once per language for every page that shows the same. A crowded room's list kept in
this process is brought up to the changes as they go (without reading), and a burst of them is
sent as the window they leave where that is shorter. A page that needs more than a forward (a
gap, its own member changed, the room closed) is handled in a task of its own; a page that
fails is logged and counted, and the others still get the messages.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from channels.db import database_sync_to_async

from liveroom import metrics
from liveroom.live.announcements import Announcements
from liveroom.live.messages import (
    BATCH_EVENT,
    CHANGE_EVENT,
    PRESENCE_EVENT,
    Message,
    RoomBatch,
)
from liveroom.live.page import (
    FORWARD,
    GAP_SECONDS,
    HANDLE,
    HOLD,
    RELEASE,
    Decision,
    Listener,
    Page,
)
from liveroom.live.rendering import announcement_html, html_of
from liveroom.live.sockets import text_frame
from liveroom.live.supervisor import Supervisor
from liveroom.live.windows import Windows, window_in_place, worth_a_window
from liveroom.rooms import fragments
from liveroom.rooms.member_lists import Window

logger = logging.getLogger(__name__)

PASS_SECONDS = 0.0003  # of sending before a delivery pass yields to the event loop
# A room's pages get at most one frame of its messages in each window: a message in a quiet room
# goes at once; those that come while one is going out are gathered, and go out together. Eight
# a second, so that with a spoken announcement (at most one a second) and a heartbeat a page
# gets at most ten frames in any second.
WINDOW_SECONDS = 0.125


@dataclass
class Outbox:
    """A room's messages not yet handed to its pages, and when the last were."""

    messages: list[Message] = field(default_factory=list)
    sent_at: float = float("-inf")  # loop time
    sending: bool = False  # a task is handing them to the pages
    # The newest version of the room's changes this process has taken: its pages get it from
    # here (or heal the gap before it), and need no snapshot to catch up with it.
    newest_version: int = 0


class Delivered(Protocol):
    """What delivery needs of the LiveCore: its pages, its tasks and its announcements."""

    loop: asyncio.AbstractEventLoop
    groups: dict[str, set[Page]]
    listeners: dict[str, set[Listener]]
    tasks: Supervisor
    announcements: Announcements
    windows: Windows

    def is_open(self, page: Page) -> bool: ...


class Delivery:
    def __init__(self, core: Delivered) -> None:
        self.core = core
        self.outboxes: dict[str, Outbox] = {}  # by group, while it has pages here
        self.failed_deliveries = 0

    def forget(self, group: str) -> None:
        """The group's last page here went."""
        self.outboxes.pop(group, None)

    def on_the_way(self, group: str, version: int) -> bool:
        """Whether the room's change at `version` (or a later one) is here and not yet handed to
        every page of the room."""
        outbox = self.outboxes.get(group)
        return (
            outbox is not None
            and outbox.newest_version >= version
            and (outbox.sending or bool(outbox.messages))
        )

    def rewound(self, group: str) -> None:
        """The room's versions went back (a restored database): what was taken says nothing
        about the versions to come."""
        if (outbox := self.outboxes.get(group)) is not None:
            outbox.newest_version = 0

    def gather(self, message: Message | RoomBatch) -> None:
        group = message["group"]
        outbox = self.outboxes.get(group)
        if outbox is None:
            outbox = self.outboxes[group] = Outbox()
        taken = message["messages"] if message["type"] == BATCH_EVENT else [message]
        outbox.messages.extend(taken)
        for change in taken:
            if change["type"] == CHANGE_EVENT and change["version"] > outbox.newest_version:
                outbox.newest_version = change["version"]
        if not outbox.sending:
            outbox.sending = True
            self.core.tasks.spawn(self.send_gathered(group, outbox))

    async def send_gathered(self, group: str, outbox: Outbox) -> None:
        """Hand the room's gathered messages to its pages, one batch a window, until none
        wait (a message that failed is logged by `deliver`; the watch heals what it missed)."""
        try:
            while outbox.messages:
                wait = outbox.sent_at + WINDOW_SECONDS - self.core.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                batch, outbox.messages = outbox.messages, []
                outbox.sent_at = self.core.loop.time()
                await self.deliver(batch)
        finally:
            outbox.sending = False  # kept, with when it last sent, while the room has pages here
            unused = group not in self.core.groups and group not in self.core.listeners
            if unused and self.outboxes.get(group) is outbox and not outbox.messages:
                del self.outboxes[group]

    # Delivery

    async def deliver(self, messages: list[Message]) -> None:
        """Hand a room's `messages` (in the order they came) to every page of the room: the ones
        a page forwards as they are go in one frame, rendered once per language and framed once
        for every page that forwards the same ones (nearly always: all of them); one page's
        failure is not another's. The first page they are new to decides whether their words
        are said now or with the room's next announcement (liveroom/live/announcements.py)."""
        group = messages[0]["group"]
        if listeners := self.core.listeners.get(group):  # each message is the whole list: the last
            self.send_in_languages(list(listeners), messages[-1])
        pages = list(self.core.groups.get(group, ()))
        if len(messages) == 1:  # a quiet room: as before gathering
            await self.deliver_one(group, messages[0], pages)
            await self.core.windows.bring_up(messages, pages, window=False)
        else:
            await self.deliver_batch(group, messages, pages)
        if pages or listeners:
            now = time.time()
            for message in messages:
                if sent_at := message.get("sent_at"):
                    metrics.delivery_seconds.observe(max(0.0, now - sent_at))

    async def deliver_one(self, group: str, message: Message, pages: list[Page]) -> None:
        frames: dict[str, bytes] = {}  # by language, for every page that forwards it as is
        said: list[Message] | None = None  # what its frame says (decided once, when forwarded)
        handled: list[Page] = []

        def deliver(page: Page) -> None:
            nonlocal said
            decision = page.triage(message)
            if decision is FORWARD:  # nearly always: kept to the point
                frame = frames.get(page.language)
                if frame is None:
                    if said is None:
                        said = self.core.announcements.now(group, [message])
                    frame = frames[page.language] = self.frame_of([message], page.language, said)
                page.socket.send(frame)
            else:
                self.act(page, message, decision, handled)

        await self.paced(pages, deliver)
        if handled:
            self.handle(message, handled)

    async def deliver_batch(self, group: str, messages: list[Message], pages: list[Page]) -> None:
        """A window's messages: in order of version (requests publish independently, so they
        come shuffled), each page sent what it shows of them, the changes it held that they
        release included, in one frame; pages that show the same share the frame."""
        messages = sorted(messages, key=in_order)
        window = await self.core.windows.bring_up(
            messages, pages, window=worth_a_window(superseded_left_out(messages))
        )
        frames: dict[tuple[str, tuple[int, ...] | None], bytes] = {}  # language, what it shows
        said: list[Message] | None = None  # what the frames say (decided once, when shown)
        handled: dict[int, tuple[Message, list[Page]]] = {}  # by message

        def deliver(page: Page) -> None:
            nonlocal said
            shown: list[Message] = []
            every = all([self.take(page, message, shown, handled) for message in messages])
            if shown:
                key = None if every else tuple(map(id, shown))
                frame = frames.get((page.language, key))
                if frame is None:
                    if said is None:
                        said = self.core.announcements.now(group, messages)
                    frame = frames[page.language, key] = self.frame_of(
                        shown, page.language, said, window
                    )
                page.socket.send(frame)

        await self.paced(pages, deliver)
        for message, handled_pages in handled.values():
            self.handle(message, handled_pages)

    async def paced(self, pages: list[Page], deliver: Callable[[Page], None]) -> None:
        """`deliver(page)` for each of `pages`, yielding to the event loop every PASS_SECONDS
        of it; a page that fails is logged and counted, and the others still get theirs."""
        next_yield = time.perf_counter() + PASS_SECONDS
        for page in pages:
            try:
                deliver(page)
            except Exception:
                self.failed_deliveries += 1
                logger.exception("Room messages were not delivered to one page")
            if time.perf_counter() >= next_yield:
                await asyncio.sleep(0)
                next_yield = time.perf_counter() + PASS_SECONDS

    def take(
        self,
        page: Page,
        message: Message,
        shown: list[Message],
        handled: dict[int, tuple[Message, list[Page]]],
    ) -> bool:
        """What `page` makes of `message` in a batch: added to what it is `shown` (with the held
        changes it releases), held, or handled later; True if it is simply shown."""
        decision = page.triage(message)
        if decision is FORWARD:
            shown.append(message)
            return True
        if decision is RELEASE:
            shown.append(message)
            while (held := page.next_held()) is not None:
                self.take(page, held, shown, handled)
        elif decision is HOLD and page.state.watch_gap():
            self.core.loop.call_later(GAP_SECONDS, self.check_gap, page)
        elif decision is HANDLE:
            handled.setdefault(id(message), (message, []))[1].append(page)
        return False

    @staticmethod
    def frame_of(
        messages: list[Message], language: str, said: list[Message], window: Window | None = None
    ) -> bytes:
        """`messages` for pages in `language`, in one frame, with the words of `said`. A change
        that sends the list whole (a crowded room's) shows every change before it: those are
        left out; so does the `window` of a crowded room, when its changes are worth one."""
        shown = superseded_left_out(messages)
        if window is not None and (window_html := window_in_place(shown, window, language)):
            shown = [message for message in shown if message["type"] != CHANGE_EVENT]
            html = window_html + "".join(html_of(message, language) for message in shown)
        else:
            html = "".join(html_of(message, language) for message in shown)
        if said:
            html += announcement_html(said, language)
        return text_frame(html)

    def act(self, page: Page, message: Message, decision: Decision, handled: list[Page]) -> None:
        """What a page decided for a message, but a plain forward; pages that need it handled
        are added to `handled`."""
        if decision is FORWARD or decision is RELEASE:
            page.socket.send(text_frame(html_of(message, page.language)))
            if decision is RELEASE and (held := page.next_held()) is not None:
                self.deliver_to(page, held)
        elif decision is HOLD and page.state.watch_gap():
            self.core.loop.call_later(GAP_SECONDS, self.check_gap, page)
        elif decision is HANDLE:
            handled.append(page)

    def deliver_to(self, page: Page, message: Message) -> None:
        """One message to one page, as `deliver` would hand it."""
        handled: list[Page] = []
        self.act(page, message, page.triage(message), handled)
        if handled:
            self.handle(message, handled)

    def handle(self, message: Message, pages: list[Page]) -> None:
        """What the pages that said HANDLE to one message need, done once for all of them: a
        late presence message, the current states of its members, rendered once; a change of
        the pages' own member (a rename from another tab or the admin), one snapshot for all of
        that member's pages, however many they opened. Anything else (a leave, a removal, a
        closed room), each page on its own."""
        if message["type"] == PRESENCE_EVENT:
            self.core.tasks.spawn(self.send_presence_now(message["members"], pages))
        elif message["type"] == CHANGE_EVENT and not message["left"]:
            self.core.tasks.spawn(self.refresh_own(pages))
        else:
            for page in pages:
                self.core.tasks.spawn(page.handle(message))

    async def refresh_own(self, pages: list[Page]) -> None:
        """Pages of one member, renamed from another tab: one snapshot, each page sent what it
        lacks (nearly always its own part alone), in small pieces."""
        snapshot = await pages[0].read_snapshot()
        if snapshot is None:
            return  # closed: the session or membership is gone, or the database is down
        await self.paced(pages, lambda page: page.show_own_change(snapshot))

    def check_gap(self, page: Page) -> None:
        """A change held for GAP_SECONDS still lacks the one before it: that one was lost."""
        if self.core.is_open(page) and page.gap_open():
            self.core.tasks.spawn(page.send_snapshot())

    async def send_presence_now(self, member_ids: list[int], pages: list[Page]) -> None:
        """A late presence message (processes publish independently) may be older than what
        pages show: send them those members' current states instead, rendered once a
        language."""
        rendered = await database_sync_to_async(fragments.render_presence_now)(
            room_slug=pages[0].room_slug,
            member_ids=member_ids,
            languages={page.language for page in pages},
        )
        send_rendered(pages, rendered)

    @staticmethod
    def send_in_languages(listeners: list[Listener], message: Message) -> None:
        frames: dict[str, bytes] = {}
        for listener in listeners:
            frame = frames.get(listener.language)
            if frame is None:
                frame = frames[listener.language] = text_frame(html_of(message, listener.language))
            listener.socket.send(frame)


def send_rendered(pages: list[Page], rendered: dict[str, str]) -> None:
    """To each page the swaps rendered in its language (`rendered`: by language), framed once
    a language."""
    frames = {language: text_frame(html) for language, html in rendered.items()}
    for page in pages:
        page.socket.send(frames[page.language])


def superseded_left_out(messages: list[Message]) -> list[Message]:
    """`messages` (in the order pages apply them) but the changes before the last one that
    carries the list whole: it already shows them."""
    last = max((at for at, message in enumerate(messages) if lists_whole(message)), default=None)
    if last is None:
        return messages
    return [
        message
        for at, message in enumerate(messages)
        if at >= last or message["type"] != CHANGE_EVENT
    ]


def lists_whole(message: Message) -> bool:
    data = message.get("data")
    return (
        message["type"] == CHANGE_EVENT
        and isinstance(data, dict)
        and data.get("listed") is not None
    )


ORDER = {CHANGE_EVENT: 0, PRESENCE_EVENT: 1}  # then a closed room's, last


def in_order(message: Message) -> tuple[int, int]:
    """Where `message` goes among a window's: changes by version, presence by sequence."""
    number = message.get("version") or message.get("sequence") or 0
    return ORDER.get(message["type"], 2), number  # type: ignore[return-value]
