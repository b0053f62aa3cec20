"""WebSocket close codes this app sends, and teaching daphne to send the standard ones.

The htmx ws extension reconnects after 1006, 1011, 1012 and 1013 only. So:
- a page that must not come back (not a member, a misbehaving client) gets a code it does not
  retry: NOT_A_MEMBER, POLICY_VIOLATION;
- a page that should come back and fetch a fresh list gets SERVICE_RESTART (this process is
  going away, or Redis restarted) or TRY_AGAIN_LATER (Redis or the database is unreachable).
"""

NOT_A_MEMBER = 4403
POLICY_VIOLATION = 1008
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013

# Registered in RFC 6455's registry for servers to send, but refused by autobahn's sendClose.
STANDARD_SERVER_CODES = frozenset({POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER})


def allow_standard_close_codes() -> None:
    """Let applications under daphne close with 1008, 1012 and 1013.

    autobahn (daphne's WebSocket engine) lets an application close only with 1000 or
    3000-4999. Its lower-level sendCloseFrame takes any code; use it for the three above.
    """
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol.serverClose, "allows_standard_codes", False):
        return
    strict_server_close = WebSocketProtocol.serverClose

    def server_close(self, code=None):
        if code in STANDARD_SERVER_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            strict_server_close(self, code)

    server_close.allows_standard_codes = True
    WebSocketProtocol.serverClose = server_close
