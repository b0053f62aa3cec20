"""What the domain announces. Receivers run after the change's transaction has committed."""

from django.dispatch import Signal

# Sent once per membership change, after commit, with keyword arguments:
#   room (Room), version (int, the room's version after the change), member (Member, as after
#   the change), change ("joined", "updated": what it shows changed, "left", or "removed" by a
#   moderator), count (members after the change), before (dict: what the changed shown fields were,
#   for "updated"; empty otherwise), listed (list of Member, or None: when every page is to be
#   sent the list whole, the members it lists after the change, in the order they joined: a
#   crowded room's recent arrivals, or everyone in a room a leave took back under
#   LIVEROOM_FULL_LIST_MAX; liveroom/rooms/crowds.py).
room_changed = Signal()

# Sent once when a moderator closes a room (its members and its row are gone), after commit,
# with the keyword argument room_slug (str).
room_closed = Signal()
