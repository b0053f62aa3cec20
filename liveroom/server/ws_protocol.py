"""WebSocket connections: the standard close codes sent by the server itself, client messages
kept to one frame, and a handshake counted by the server's Admission until it is answered."""

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
        # A server whose application's clients send only a few small messages (a room page's
        # buttons) closes the socket at the end of a message's first frame if it is not the
        # whole message: the application sees only whole messages, and a client trickling
        # fragments would count as active forever. At the end, so that a frame too big (1009)
        # or not UTF-8 (1007) is told so first; what a whole message says is the app's to judge.
        if (
            self.server.one_frame_messages
            and self.state == self.STATE_OPEN
            and not self.current_frame.fin
        ):
            self.sendCloseFrame(code=POLICY_VIOLATION, isReply=False)
        super().onMessageFrameEnd()

    def serverClose(self, code: int | None = None) -> None:
        if code in STANDARD_SERVER_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            super().serverClose(code)
