"""WebSocket close codes this app sends.

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
