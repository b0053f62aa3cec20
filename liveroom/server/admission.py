"""The requests a server works on at once."""

from typing import Any

from liveroom import metrics


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
