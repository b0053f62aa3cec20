"""A WebSocket the application writes frames to itself (tested library versions only)."""

import contextlib
import logging

from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

from liveroom import metrics

logger = logging.getLogger(__name__)


class RawSocket:
    """One open WebSocket, for frames the application has made itself (unmasked, no
    extensions: daphne negotiates none). A socket whose unsent backlog passes `max_backlog`
    bytes is dropped and its buffers freed: a client that does not read cannot hold the
    server's memory."""

    __slots__ = ("max_backlog", "protocol")

    def __init__(self, protocol: WebSocketProtocol, max_backlog: int = 0) -> None:
        self.protocol = protocol
        self.max_backlog = max_backlog  # 0: no bound

    def send(self, frame: bytes) -> None:
        protocol = self.protocol
        # What daphne checks before a send: open, and not closed by daphne for an error.
        if protocol.state != protocol.STATE_OPEN or protocol.muted:
            return
        metrics.page_bytes.total += len(frame)
        if protocol.send_queue:  # autobahn's own delayed writes go first
            protocol.sendData(frame)
        elif write_at_once(protocol.transport, frame):
            return  # the kernel took it all: nothing waits here
        if self.max_backlog and (unsent := self.unsent_bytes()) > self.max_backlog:
            self.drop(unsent)

    def drop(self, unsent: int) -> None:
        """A close frame would wait behind what the client does not read: drop the connection
        (the client sees 1006, which browsers' htmx retries once their network is back)."""
        logger.warning(
            "Socket dropped: %d bytes unsent, over the limit of %d (a client that does not read)",
            unsent, self.max_backlog,
            extra={"event": "socket_dropped", "unsent": unsent, "limit": self.max_backlog},
        )  # fmt: skip
        self.protocol.dropConnection(abort=True)

    def unsent_bytes(self) -> int:
        """What the kernel has not taken yet and waits in this process."""
        transport = self.protocol.transport
        if transport is None:
            return 0
        waiting = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        return waiting + sum(len(data) for data, _ in self.protocol.send_queue)

    def forget_handshake(self) -> None:
        """Drop what daphne and autobahn keep of the opening request for the socket's life: its
        raw bytes, its parsed headers and the scope's headers (cleared in place: every ASGI
        layer's scope shares the one list). Call once the application has read them."""
        protocol = self.protocol
        protocol.http_request_data = b""
        protocol.http_headers.clear()  # also the headers of autobahn's ConnectionRequest
        protocol.clean_headers.clear()  # daphne's list, which is scope["headers"]


def write_at_once(transport: tcp.Connection, data: bytes) -> bool:
    """Write to the kernel now when nothing is queued before `data`; else queue it behind.
    Whether the kernel took all of it."""
    nothing_queued = not transport._tempDataBuffer and transport.offset == len(transport.dataBuffer)
    if (
        nothing_queued
        and isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport._writeDisconnected
    ):
        # Would block, or the connection failed: the buffered path deals with either.
        with contextlib.suppress(OSError):
            data = data[transport.socket.send(data) :]
        if not data:
            return True
    transport.write(data)
    return False
