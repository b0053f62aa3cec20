"""HTTP connections: an answer for headers too long (431) or too slow (408), requests counted by
the server's Admission, no POST form parsed by Twisted, and a request's connection closed once
it is answered (draining)."""

from functools import partial
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http

from liveroom.server.admission import Admission

# Seconds a request's line and headers get to arrive, from their first byte.
HEADER_SECONDS = 10.0


class LiveroomHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP channel, with an answer for headers too long or too slow, and its
    requests counted by the server's Admission."""

    awaiting_headers = True  # the next bytes start a request
    header_deadline: Any = None  # an IDelayedCall (zope interfaces type badly)
    header_seconds = HEADER_SECONDS
    admission: Admission | None = None
    _request_factory: Any = http.Request

    @property
    def requestFactory(self) -> Any:
        return self._request_factory

    @requestFactory.setter
    def requestFactory(self, factory: Any) -> None:
        # Twisted would parse a POST's form body into `request.args` (its content type read
        # through the email package): daphne passes the body on as it came, and reads no args.
        self._request_factory = partial(factory, parsePOSTFormSubmission=False)

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


def http_channel(header_seconds: float, admission: Admission) -> Any:
    """A connection's protocol: LiveroomHTTPChannel in Twisted's wrapper, which switches a
    connection to HTTP/2 when asked. The wrapper is not an API: called on tested versions only
    (liveroom/server/versions.py), so a Twisted without it runs the stock way, not crashes."""
    from twisted.web.http import _GenericHTTPChannelProtocol

    channel = LiveroomHTTPChannel()
    channel.header_seconds = header_seconds
    channel.admission = admission
    return _GenericHTTPChannelProtocol(channel)


def close_after_response(request) -> None:
    """Let an HTTP request's connection close once its response is out."""
    if getattr(request, "channel", None) is None:  # answered already
        return
    request.channel.persistent = False
    if not request.startedWriting:
        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
