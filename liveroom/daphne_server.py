"""Five things daphne does not do on its own, set up when it loads liveroom.asgi.

- Close codes: autobahn, daphne's WebSocket engine, lets an application close only with 1000 or
  3000-4999, although RFC 6455's registry gives servers 1008 (policy violation), 1012 (service
  restart) and 1013 (try again later), and 1012/1013 are what the htmx ws extension reconnects
  after. Its lower-level sendCloseFrame takes any code; use it for those three.
- Graceful shutdown: on SIGTERM daphne cancels its consumers and drops their connections, which
  pages see as 1006. Before that, close every open room page with 1012 so browsers know to
  reconnect (to another process, behind a load balancer) at once.
- Writes at once: Twisted queues every write until the reactor's next turn, registering the
  socket for writing and unregistering it afterwards (two epoll_ctl calls a send). A change
  sent to a thousand pages spent more time on that than on sending. Like asyncio's own
  transports, write straight to the socket when nothing is queued before it; anything the
  kernel does not take (or an error) goes the buffered way as before.
- Frames once: a room's change goes to every page as the same bytes. Each WebSocket scope gets
  a PreparedSocket (scope["extensions"][PREPARED_SOCKET]); the room hub frames the message once
  (with autobahn's prepared messages, made for broadcasting) and writes that frame to each
  socket, instead of passing it through Channels, daphne and autobahn page by page.
- Keeps no handshake: an upgraded connection's HTTP request (Twisted's channel and request,
  with both header sets) stayed registered as its socket's producer for the socket's life, and
  autobahn and daphne each keep the request's headers too. Per open page that is memory, and
  objects for every full garbage collection to walk. The HTTP side is let go once the socket
  is upgraded; the headers once the page has read what it needs (forget_handshake).
"""

import asyncio
import contextlib

from liveroom.close_codes import POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER

STANDARD_SERVER_CODES = frozenset({POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER})
PREPARED_SOCKET = "liveroom.prepared_socket"


def configure() -> None:
    """Install them all; a no-op outside daphne (tests drive the app without it)."""
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
        from twisted.internet import defer, reactor, tcp
    except ImportError:
        return
    _allow_standard_close_codes(WebSocketProtocol)
    _write_at_once(tcp.Connection)
    _offer_prepared_sockets(Server)
    reactor.addSystemEventTrigger(
        "before", "shutdown",
        lambda: defer.Deferred.fromFuture(asyncio.ensure_future(_close_pages_for_restart())),
    )  # fmt: skip


def _allow_standard_close_codes(protocol_class) -> None:
    if getattr(protocol_class.serverClose, "allows_standard_codes", False):
        return
    strict_server_close = protocol_class.serverClose

    def server_close(self, code=None):
        if code in STANDARD_SERVER_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            strict_server_close(self, code)

    server_close.allows_standard_codes = True
    protocol_class.serverClose = server_close


async def _close_pages_for_restart() -> None:
    from liveroom import page_watch  # which sends heartbeats with `prepare` below

    await page_watch.close_pages(SERVICE_RESTART)
    await asyncio.sleep(0.1)  # let the close frames leave before connections are dropped


def _write_at_once(connection_class) -> None:
    if getattr(connection_class.write, "writes_at_once", False):
        return
    buffered_write = connection_class.write

    def write(self, data: bytes) -> None:
        nothing_queued = not self._tempDataBuffer and self.offset == len(self.dataBuffer)
        if nothing_queued and not self.TLS and self.connected and not self._writeDisconnected:
            # Would block, or the connection failed: the buffered path deals with either.
            with contextlib.suppress(OSError):
                data = data[self.socket.send(data) :]
            if not data:
                return
        buffered_write(self, data)

    write.writes_at_once = True
    connection_class.write = write


class PreparedSocket:
    """One page's socket, for messages framed once for many (see `prepare`)."""

    __slots__ = ("protocol",)

    def __init__(self, protocol) -> None:
        self.protocol = protocol

    def send(self, frame: bytes) -> None:
        protocol = self.protocol
        # What daphne checks before a send: open, and not closed by daphne for an error.
        if protocol.state != protocol.STATE_OPEN or protocol.muted:
            return
        if protocol.send_queue:  # autobahn's own delayed writes go first
            protocol.sendData(frame)
        else:  # what sendData does then, without formatting a debug line it does not log
            protocol.transport.write(frame)

    def forget_handshake(self) -> None:
        """Drop what daphne and autobahn keep of the opening request for the socket's life: its
        raw bytes, its parsed headers and the scope's headers (cleared in place: every ASGI
        layer's scope shares the one list). Call once the application has read them."""
        protocol = self.protocol
        protocol.http_request_data = b""
        protocol.http_headers.clear()  # also the headers of autobahn's ConnectionRequest
        protocol.clean_headers.clear()  # daphne's list, which is scope["headers"]


def prepare(text: str) -> bytes:
    """`text` as one WebSocket frame, ready for any number of PreparedSocket.send calls."""
    from autobahn.websocket.protocol import PreparedMessage

    # Server frames are not masked; pages never negotiate compression (daphne offers none).
    message = PreparedMessage(text.encode(), isBinary=False, applyMask=False, doNotCompress=True)
    return message.payloadHybi


def _offer_prepared_sockets(server_class) -> None:
    if getattr(server_class.create_application, "offers_prepared_sockets", False):
        return
    create_application = server_class.create_application

    def create(self, protocol, scope):
        if scope.get("type") == "websocket":
            scope.setdefault("extensions", {})[PREPARED_SOCKET] = PreparedSocket(protocol)
            # Daphne has handed the connection over; only this registration kept Twisted's
            # HTTP channel (and its request) alive. Sockets need no producer: pages never
            # send, so there is no reading to pause.
            protocol.transport.unregisterProducer()
        return create_application(self, protocol, scope)

    create.offers_prepared_sockets = True
    server_class.create_application = create
