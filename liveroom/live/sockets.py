"""A page's socket: where its frames are written.

Under liveroom's daphne (`python -m liveroom.server`) each WebSocket scope carries a raw socket
(liveroom/server/raw_socket.py) that writes a frame made once for many pages straight to the
connection. Elsewhere (another ASGI server, the tests' WebsocketCommunicator) AsgiSocket takes the
same frames and hands their text to the ASGI `send`, in order. Either way every write of a page
goes through one `send(frame)`, framed by `text_frame`.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from liveroom import metrics
from liveroom.wire import SOCKET_EXTENSION


class Socket(Protocol):
    def send(self, frame: bytes) -> None: ...

    def forget_handshake(self) -> None: ...


def text_frame(text: str) -> bytes:
    """`text` as one final, unmasked WebSocket text frame (RFC 6455 section 5.2): what a server
    sends, framed once for any number of sockets."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


def frame_text(frame: bytes) -> str:
    """The text of a frame made by `text_frame`."""
    length = frame[1]
    start = 2 if length < 126 else 4 if length == 126 else 10
    return frame[start:].decode()


class AsgiSocket:
    """Frames to text messages through an ASGI `send`, in the order they were written."""

    def __init__(self, send: Callable[[dict], Awaitable[None]]) -> None:
        self.asgi_send = send
        self.queue: deque[str] = deque()
        self.writer: asyncio.Task | None = None

    def send(self, frame: bytes) -> None:
        metrics.page_bytes.total += len(frame)
        self.queue.append(frame_text(frame))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.get_running_loop().create_task(self.write_all())

    async def write_all(self) -> None:
        try:
            while self.queue:
                await self.asgi_send({"type": "websocket.send", "text": self.queue.popleft()})
        except Exception:  # the socket closed as we wrote: nothing more reaches it
            self.queue.clear()

    async def drain(self) -> None:
        """Wait until every frame written so far has been handed to ASGI."""
        while self.writer is not None and not self.writer.done():
            await asyncio.shield(self.writer)

    def forget_handshake(self) -> None:
        """Nothing kept here to drop."""


def socket_for(scope: dict, send: Callable[[dict], Awaitable[None]]) -> Socket:
    return scope.get("extensions", {}).get(SOCKET_EXTENSION) or AsgiSocket(send)
