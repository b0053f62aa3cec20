"""daphne, subclassed where liveroom needs what stock daphne does not do.

Every change here is a subclass or a documented hook (daphne's `CommandLineInterface.server_class`,
the WebSocket factory's `protocol`, a Twisted shutdown trigger); no library class is modified.

Always:
- Close codes. autobahn lets an application close only with 1000 or 3000-4999, although RFC
  6455 gives servers 1008 (policy violation), 1012 (service restart) and 1013 (try again later),
  and 1012/1013 are what the htmx ws extension reconnects after. The protocol sends those three
  itself, with autobahn's `sendCloseFrame`.
- Draining. On SIGTERM stock daphne cancels every application and drops its connections, which
  browsers see as 1006, while it still accepts new ones until the reactor stops: a request
  accepted then is never cancelled, and its thread (Django runs sync middleware in a thread that
  waits on the event loop) waits forever for a loop that has stopped, so the process never
  exits. Instead the server stops listening first and tells every open socket 1012 (pages
  reconnect at once, to another process behind a proxy). The HTTP requests in flight finish (up
  to REQUEST_GRACE_SECONDS), and so do any that arrive meanwhile on kept-alive connections, each
  answered with `Connection: close`. Then every later request gets a 503 at once, without the
  application, and daphne cancels what is left.
- A listen queue of LISTEN_BACKLOG connections (Twisted's default is 50): when a restarted
  process comes up under thousands of reconnecting pages, the kernel holds their connections
  until they are accepted instead of dropping them, and the pages need no second backoff.

Only with the daphne, Twisted and autobahn versions in TESTED_WITH (any other gets a log line and
the stock behaviour), since these read library attributes that are not an API:
- Raw sockets. Each WebSocket scope gets `scope["extensions"][SOCKET_EXTENSION]`, a RawSocket to
  which the application writes frames it has made once for many pages, instead of passing the
  same text through daphne and autobahn page by page. A frame is written to the kernel at once
  when nothing is queued before it (Twisted would register the socket for writing and wait for
  the reactor's next turn, two epoll_ctl calls a send); anything the kernel does not take goes
  the buffered way, behind which later frames then queue, so the order holds.
- Answers to bad request headers. Twisted drops a connection whose header line is over 16 KiB
  without a word, and gives a request's headers no deadline (a byte a second keeps it open). The
  HTTP channel here answers 431 to a header line too long, and 408 to headers that take longer
  than HEADER_SECONDS to arrive.
- Requests taken on a bounded number at a time (Admission). A crowd accepted all at once (a
  restart under thousands of pages) would fill each turn of the event loop with thousands of
  handshakes, and every other call on the loop (a reply from Redis awaited with a timeout)
  would wait behind them all.
- No handshake kept. An upgraded connection's HTTP channel and request stayed registered as the
  socket's producer for the socket's life, and autobahn and daphne each keep the request's
  headers. The producer goes at the upgrade; the headers when the application has read what it
  needs (RawSocket.forget_handshake).

This module imports nothing from the application but the metrics' definitions: it serves any
ASGI application.
"""

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory
from daphne.server import Server  # first: it installs Twisted's asyncio reactor
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer, reactor, task, tcp
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.server import Site

from liveroom import metrics

logger = logging.getLogger(__name__)

SOCKET_EXTENSION = "liveroom.socket"
# Every HTTP scope's `extensions` carry the server's ServerStatus here (readiness reads it).
STATUS_EXTENSION = "liveroom.server"
# Probes polled every second: their successful answers stay out of the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz"})
POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER = 1008, 1012, 1013
STANDARD_SERVER_CODES = frozenset({POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER})
# Seconds the close frames of a drain get before daphne cancels the applications, and the most
# the HTTP requests in flight get to finish.
DRAIN_SECONDS = 0.1
REQUEST_GRACE_SECONDS = 3.0
# Seconds a request's line and headers get to arrive, from their first byte.
HEADER_SECONDS = 10.0
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
# The versions RawSocket and the handshake release were tested with (tests/test_server.py);
# requirements.txt pins them.
TESTED_WITH = {"daphne": "4.2.3", "twisted": "26.10.0", "autobahn": "26.11.1"}


def installed_versions() -> dict[str, str]:
    return {name: version(name) for name in TESTED_WITH}


def raw_sockets_supported(installed: dict[str, str]) -> bool:
    """Whether RawSocket may be offered with these library versions; logs why not."""
    if installed == TESTED_WITH:
        return True
    logger.warning(
        "Raw sockets off: tested with %s, found %s. Pages are served through stock daphne "
        "(each message framed per page); run the server tests before pinning these versions.",
        ", ".join(f"{name} {number}" for name, number in TESTED_WITH.items()),
        ", ".join(f"{name} {number}" for name, number in installed.items()),
    )
    return False


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


class Admission:
    """The requests a server works on at once, a socket's handshake among them: each from the
    end of its headers until its response is out (HTTP) or its application has accepted or
    refused the socket. At `most` the listening ports stop accepting, and the kernel's listen
    queue holds the connections that come meanwhile; below `most` again they accept once more.
    Connections still sending their headers, or idle between requests, hold no place (headers
    have their own deadline); connections accepted before a pause still bring their requests,
    so a burst may pass `most` by what was accepted with it."""

    def __init__(self, most: int, ports: list[Any]) -> None:
        self.most = most  # 0: no bound
        self.ports = ports  # the server's listening ports, as they come
        self.busy: set[Any] = set()  # the transports of the connections with a request under way
        self.paused = False
        self.closed = False  # the ports stopped listening for good

    def begin(self, transport: Any) -> None:
        self.busy.add(transport)
        metrics.requests_under_way.set(len(self.busy))
        if self.most and not self.paused and len(self.busy) >= self.most:
            self.paused = True
            metrics.accept_pauses.inc()
            for port in self.ports:
                port.stopReading()

    def end(self, transport: Any) -> None:
        self.busy.discard(transport)
        metrics.requests_under_way.set(len(self.busy))
        if self.paused and len(self.busy) < self.most:
            self.paused = False
            if not self.closed:
                for port in self.ports:
                    port.startReading()

    def close(self) -> None:
        """The ports are about to stop listening: never resume them."""
        self.closed = True


class LiveroomHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP channel, with an answer for headers too long or too slow, and its
    requests counted by the server's Admission."""

    awaiting_headers = True  # the next bytes start a request
    header_deadline: Any = None  # an IDelayedCall (zope interfaces type badly)
    header_seconds = HEADER_SECONDS
    admission: Admission | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.awaiting_headers and self.header_deadline is None:
            self.header_deadline = self.callLater(self.header_seconds, self.headers_too_slow)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self.awaiting_headers = False
        self.cancel_deadline()
        if self.admission is not None:
            self.admission.begin(self.transport)
        super().allHeadersReceived()

    def requestDone(self, request) -> None:
        super().requestDone(request)
        self.awaiting_headers = True  # a kept-alive connection's next request
        if self.admission is not None:
            self.admission.end(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.cancel_deadline()
        if self.admission is not None:
            self.admission.end(self.transport)
        super().connectionLost(reason)

    def cancel_deadline(self) -> None:
        if self.header_deadline is not None and self.header_deadline.active():
            self.header_deadline.cancel()
        self.header_deadline = None

    def lineLengthExceeded(self, line: bytes) -> None:
        self.answer_and_close(b"431 Request Header Fields Too Large")

    def headers_too_slow(self) -> None:
        self.header_deadline = None
        if self.awaiting_headers:
            self.answer_and_close(b"408 Request Timeout")

    def answer_and_close(self, status: bytes) -> None:
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 " + status + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.loseConnection()


def http_channel(header_seconds: float, admission: Admission) -> _GenericHTTPChannelProtocol:
    channel = LiveroomHTTPChannel()
    channel.header_seconds = header_seconds
    channel.admission = admission
    return _GenericHTTPChannelProtocol(channel)


class LiveroomWebSocketProtocol(WebSocketProtocol):
    # An upgraded connection's request counts in the server's Admission until its handshake is
    # answered.
    def onOpen(self) -> None:
        self.server.admission.end(self.transport)
        super().onOpen()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.server.admission.end(self.transport)
        super().onClose(wasClean, code, reason)

    def onMessageFrameEnd(self) -> None:
        # A server whose application's clients never send closes the socket at the end of the
        # first frame of a message, fragments included (the application would see only whole
        # messages, and a client trickling fragments would count as active forever). At the
        # end, so that a frame too big (1009) or not UTF-8 (1007) is told so first.
        if self.server.refuse_client_messages and self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=POLICY_VIOLATION, isReply=False)
        super().onMessageFrameEnd()

    def serverClose(self, code: int | None = None) -> None:
        if code in STANDARD_SERVER_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            super().serverClose(code)


@dataclass
class ServerStatus:
    """What the application may know of its server: whether it is draining (SIGTERM came)."""

    draining: bool = False


class LiveroomServer(Server):
    """daphne's Server with standard close codes, draining, a metrics port and (on tested
    versions) raw sockets."""

    def __init__(
        self,
        *args,
        metrics_address: tuple[str, int] | None = None,
        max_backlog: int = 0,
        refuse_client_messages: bool = False,
        header_seconds: float = HEADER_SECONDS,
        requests_at_once: int = 0,
        **kwargs,
    ) -> None:
        if kwargs.get("endpoints"):  # daphne's command line passes them by name
            kwargs["endpoints"] = [with_backlog(endpoint) for endpoint in kwargs["endpoints"]]
        super().__init__(*args, **kwargs)
        self.raw_sockets = raw_sockets_supported(installed_versions())
        self.metrics_address = metrics_address
        self.max_backlog = max_backlog
        self.refuse_client_messages = refuse_client_messages
        self.header_seconds = header_seconds
        self.ports: list = []
        self.admission = Admission(requests_at_once, self.ports)
        self.status = ServerStatus()
        self.stopping = False  # taking no new requests at all

    @property
    def draining(self) -> bool:
        """Finishing what is in flight, taking no new connections."""
        return self.status.draining

    def run(self) -> None:
        if self.metrics_address is not None:
            host, port = self.metrics_address
            interface = host.replace(":", "\\:")  # an IPv6 address, escaped for the endpoint
            endpoint = serverFromString(reactor, f"tcp:{port}:interface={interface}")
            listening = endpoint.listen(Site(MetricsResource()))
            listening.addCallback(lambda _: logger.info("Metrics at %s:%d/metrics", host, port))
            listening.addErrback(lambda failure: logger.error("No metrics: %s", failure.value))
        super().run()
        logger.info("Stopped", extra={"event": "stopped"})

    def listen_success(self, port) -> None:
        self.ports.append(port)
        super().listen_success(port)
        address = port.getHost()
        logger.info(
            "Ready on %s:%d", address.host, address.port,
            extra={"event": "ready", "address": f"{address.host}:{address.port}"},
        )  # fmt: skip

    def log_action(self, protocol, action, details) -> None:
        if details.get("path") in QUIET_PATHS and details.get("status") == 200:
            return
        super().log_action(protocol, action, details)

    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        # Server.run() makes the factory; on tested versions its connections use the channel
        # above (Twisted's wrapper of a channel is not an API).
        if self.raw_sockets:
            factory.protocol = partial(http_channel, self.header_seconds, self.admission)
        self._http_factory = factory

    @property
    def ws_factory(self) -> WebSocketFactory:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: WebSocketFactory) -> None:
        # Server.run() makes the factory; its connections use this protocol. A frame over the
        # size limit, invalid UTF-8 or a protocol error get a close frame with their code
        # (1009, 1007, 1002) instead of a dropped connection.
        factory.protocol = LiveroomWebSocketProtocol
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory

    def create_application(self, protocol, scope):
        if scope.get("type") == "http" and self.stopping:
            protocol.channel.persistent = False
            protocol.basic_error(503, b"Service Unavailable", "This server is restarting.")
            return None
        if scope.get("type") == "http":
            scope.setdefault("extensions", {})[STATUS_EXTENSION] = self.status
        if scope.get("type") == "http" and self.draining:
            close_after_response(protocol)
        if scope.get("type") == "websocket" and self.raw_sockets:
            raw_socket = RawSocket(protocol, self.max_backlog)
            scope.setdefault("extensions", {})[SOCKET_EXTENSION] = raw_socket
            # Daphne has handed the connection over; only this registration kept Twisted's
            # HTTP channel (and its request) alive. Sockets need no producer: pages never
            # send, so there is no reading to pause.
            protocol.transport.unregisterProducer()
        return super().create_application(protocol, scope)

    def kill_all_applications(self) -> defer.Deferred:
        """Daphne's shutdown trigger: stop listening, tell every open socket 1012, let the
        requests in flight finish, then have daphne cancel what is left."""
        try:
            return self.drain_and_stop()
        except Exception:  # Twisted would swallow it: say so, and stop the stock way
            logger.exception("Draining failed; stopping without it")
            return self.stop_applications()

    def drain_and_stop(self) -> defer.Deferred:
        self.status.draining = True
        self.admission.close()
        for port in self.ports:
            port.stopListening()
        for protocol in self.connections:
            if not isinstance(protocol, WebSocketProtocol):
                close_after_response(protocol)
        sockets = [
            protocol
            for protocol in self.connections
            if isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN
        ]
        for protocol in sockets:
            protocol.sendCloseFrame(code=SERVICE_RESTART, isReply=False)
        logger.info(
            "Draining: %d open sockets told to reconnect (1012)", len(sockets),
            extra={"event": "draining", "sockets": len(sockets)},
        )  # fmt: skip
        drained = defer.ensureDeferred(self.drain(DRAIN_SECONDS if sockets else 0))
        return drained.addCallback(lambda _: self.stop_applications())

    def stop_applications(self) -> defer.Deferred:
        self.stopping = True
        return Server.kill_all_applications(self)

    async def drain(self, least: float) -> None:
        deadline = time.monotonic() + REQUEST_GRACE_SECONDS
        await task.deferLater(reactor, least, lambda: None)
        while (requests := self.requests_in_flight()) and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.02, lambda: None)
        if requests:
            logger.warning("%d requests still running after %.0f s: cancelled",
                           requests, REQUEST_GRACE_SECONDS)  # fmt: skip

    def requests_in_flight(self) -> int:
        return sum(
            1
            for protocol, details in self.connections.items()
            if not isinstance(protocol, WebSocketProtocol)
            and (instance := details.get("application_instance")) is not None
            and not instance.done()
        )


def with_backlog(endpoint: str) -> str:
    """A tcp or unix endpoint description with a listen queue of LISTEN_BACKLOG, unless it names
    one itself."""
    kind = endpoint.split(":", 1)[0]
    if kind not in {"tcp", "tcp6", "unix"} or re.search(r"(^|:)backlog=", endpoint):
        return endpoint
    return f"{endpoint}:backlog={LISTEN_BACKLOG}"


def close_after_response(request) -> None:
    """Let an HTTP request's connection close once its response is out."""
    if getattr(request, "channel", None) is None:  # answered already
        return
    request.channel.persistent = False
    if not request.startedWriting:
        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])


class LiveroomCommandLine(CommandLineInterface):
    def __init__(self, **server_options) -> None:
        """`server_options`: LiveroomServer's own (metrics_address, max_backlog,
        refuse_client_messages, header_seconds, requests_at_once)."""
        super().__init__()
        self.server_class = partial(LiveroomServer, **server_options)
