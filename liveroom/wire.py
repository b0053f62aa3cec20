"""The names liveroom's server (liveroom/server/) and its application share: what the server
offers in a scope's `extensions`, and the WebSocket close codes. Defined here once: if the two
sides named an extension differently, the application would quietly stop using the server's
fast socket path (tests/test_server.py checks that liveroom's own pages get it).

The htmx ws extension reconnects after 1006, 1011, 1012 and 1013 only. So:
- a page that must not come back (not a member, a misbehaving client) gets a code it does not
  retry: NOT_A_MEMBER, POLICY_VIOLATION;
- a page that should come back and fetch a fresh list gets SERVICE_RESTART (this process is
  going away, or Redis restarted) or TRY_AGAIN_LATER (Redis or the database is unreachable).
autobahn lets an application close only with 1000 or 3000-4999; liveroom's server sends the
three standard codes itself.
"""

# Each WebSocket scope's `extensions` carry a raw socket here: frames made once for many pages
# are written straight to the connection (liveroom/server/raw_socket.py).
SOCKET_EXTENSION = "liveroom.socket"
# Every HTTP scope's `extensions` carry the server's status here (readiness reads `draining`).
STATUS_EXTENSION = "liveroom.server"

NOT_A_MEMBER = 4403
POLICY_VIOLATION = 1008
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013
STANDARD_SERVER_CODES = frozenset({POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER})
