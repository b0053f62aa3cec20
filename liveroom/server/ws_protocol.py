"""WebSocket connections: the standard close codes sent by the server itself, client messages
refused, and a handshake counted by the server's Admission until it is answered."""

from daphne.ws_protocol import WebSocketProtocol

from liveroom.wire import POLICY_VIOLATION, STANDARD_SERVER_CODES


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
