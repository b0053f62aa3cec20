"""What the domain announces. Receivers run after the change's transaction has committed."""

from django.dispatch import Signal

# Sent once per membership change, after commit, with keyword arguments:
#   room (Room), version (int, the room's version after the change), member (Member, as after
#   the change), change ("joined", "updated": what it shows changed, "left", or "removed" by a
#   moderator), count (members after the change), before (dict: what the changed shown fields were,
#   for "updated"; empty otherwise).
room_changed = Signal()

# Sent once when a moderator closes a room (its members and its row are gone), after commit,
# with the keyword argument room_slug (str).
room_closed = Signal()
