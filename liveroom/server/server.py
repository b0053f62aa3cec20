"""daphne's Server as liveroom runs it: standard close codes, draining, a listen queue, a metrics
port and, on tested library versions, raw sockets, header deadlines and admission.

What it changes in daphne and Twisted, and how:
- Subclasses, and the hooks daphne has: `CommandLineInterface.server_class` (cli.py), the
  factories' `protocol` (set when daphne makes them, `http_factory` and `ws_factory` below),
  and `kill_all_applications`, daphne's own shutdown trigger.
- On the versions in TESTED_WITH only (versions.py), since these read or replace what is not an
  API: the raw socket (raw_socket.py, reading autobahn's and Twisted's buffers), the HTTP
  channel (http_protocol.py, in Twisted's private channel wrapper), and the release of the
  handshake (`create_application`, unregistering Twisted's producer).

Always:
- Close codes. autobahn lets an application close only with 1000 or 3000-4999, although RFC
  6455 gives servers 1008, 1012 and 1013; the protocol sends those itself (ws_protocol.py).
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

- Less work for nobody. Twisted formats an access-log line for every request, which daphne (at
  its default verbosity) sends nowhere while writing its own: not formatted at all then. What
  the process has loaded when it starts serving (modules, settings, the application) stays for
  its life: frozen out of the garbage collector's passes (`gc.freeze`), which otherwise walk it
  all on each full collection, and young objects are collected every GC_YOUNG_THRESHOLD
  allocations rather than Python's 2,000 (an arrival of 1,000 people made 400 collections,
  with full ones of more than a tenth of a second).

On tested versions:
- No POST forms parsed by Twisted: daphne hands the body to the application as it came, so
  Twisted's parsing of it into `request.args` (the content type read through the email
  package, a form body split into a dict) is work for nobody (http_protocol.py).
- No configuration formatted for a debug line: autobahn pretty-prints its whole configuration
  on every connection for a debug line that its log level drops (`_connection_debug_format`).
- Raw sockets. Each WebSocket scope gets a RawSocket under `wire.SOCKET_EXTENSION`, to which the
  application writes frames it has made once for many pages, instead of passing the same text
  through daphne and autobahn page by page.
- Answers to bad request headers: 431 to a header line over 16 KiB (Twisted drops the
  connection without a word), 408 to headers slower than HEADER_SECONDS (Twisted has no
  deadline).
- Requests taken on a bounded number at a time (admission.py). A crowd accepted all at once
  (a restart under thousands of pages) would fill each turn of the event loop with thousands of
  handshakes, and every other call on the loop would wait behind them all.
- No handshake kept: the HTTP channel goes at the upgrade, the request's headers once the
  application has read what it needs (RawSocket.forget_handshake).

The server package imports nothing from the application but the metrics' definitions and the
names both share (liveroom/wire.py): it serves any ASGI application.
"""

import gc
import logging
import pprint
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import autobahn.websocket.protocol
import txaio
from daphne.http_protocol import HTTPFactory
from daphne.server import Server  # (which installed its reactor: liveroom/server/__init__.py)
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import serverFromString
from twisted.web.server import Site

from liveroom.server.admission import Admission
from liveroom.server.http_protocol import HEADER_SECONDS, close_after_response, http_channel
from liveroom.server.raw_socket import RawSocket
from liveroom.server.versions import installed_versions, raw_sockets_supported
from liveroom.server.ws_protocol import LiveroomWebSocketProtocol
from liveroom.wire import SERVICE_RESTART, SOCKET_EXTENSION, STATUS_EXTENSION

logger = logging.getLogger(__name__)

# Probes polled every second: their successful answers stay out of the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz"})
# Seconds the close frames of a drain get before daphne cancels the applications, and the most
# the HTTP requests in flight get to finish.
DRAIN_SECONDS = 0.1
REQUEST_GRACE_SECONDS = 3.0
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
GC_YOUNG_THRESHOLD = 20_000  # allocations between collections of the youngest generation


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
        one_frame_messages: bool = False,
        header_seconds: float = HEADER_SECONDS,
        requests_at_once: int = 0,
        **kwargs,
    ) -> None:
        if kwargs.get("endpoints"):  # daphne's command line passes them by name
            kwargs["endpoints"] = [with_backlog(endpoint) for endpoint in kwargs["endpoints"]]
        super().__init__(*args, **kwargs)
        self.raw_sockets = raw_sockets_supported(installed_versions())
        if self.raw_sockets:
            format_for_debug_only()
        self.metrics_address = metrics_address
        self.max_backlog = max_backlog
        self.one_frame_messages = one_frame_messages
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
        keep_loaded_out_of_collections()
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
        if self.verbosity <= 1:  # daphne sends Twisted's log nowhere
            factory.log = unlogged
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


def unlogged(request) -> None:
    """Twisted's access-log line for `request`, not formatted: daphne writes its own
    (`log_action`) and, at its default verbosity, sends Twisted's log nowhere."""


def keep_loaded_out_of_collections() -> None:
    """Freeze what is loaded (it lives as long as the process) out of the garbage collector's
    passes, and collect the youngest objects every GC_YOUNG_THRESHOLD allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def format_for_debug_only() -> None:
    """autobahn formats its whole configuration with pprint on every connection, for a debug
    line its log level drops unless it is "debug" or finer: formatted only then. On tested
    versions only (it replaces a name inside autobahn's module)."""
    setattr(autobahn.websocket.protocol, "pformat", _connection_debug_format)  # noqa: B010


def _connection_debug_format(anything: object, *args: Any, **kwargs: Any) -> str:
    # txaio sets its functions when a framework is chosen (autobahn has chosen Twisted).
    if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]
        return pprint.pformat(anything, *args, **kwargs)
    return "(formatted at log level debug)"


def with_backlog(endpoint: str) -> str:
    """A tcp or unix endpoint description with a listen queue of LISTEN_BACKLOG, unless it names
    one itself."""
    kind = endpoint.split(":", 1)[0]
    if kind not in {"tcp", "tcp6", "unix"} or re.search(r"(^|:)backlog=", endpoint):
        return endpoint
    return f"{endpoint}:backlog={LISTEN_BACKLOG}"
