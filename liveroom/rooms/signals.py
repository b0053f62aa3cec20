"""What the domain announces. Receivers run after the change's transaction has committed."""

from django.dispatch import Signal

# Sent once per membership change, after commit, with keyword arguments:
#   room (Room), version (int, the room's version after the change), member (Member, as after
#   the change), change ("joined", "updated": what it shows changed, "left", or "removed" by a
#   moderator), count (members after the change), before (dict: what the changed shown fields were,
#   for "updated"; empty otherwise), window (liveroom/rooms/crowds.WindowMove: what the change
#   does to the list every page shows besides the member's own entry: in a crowded room, the
#   arrival a join pushed out of the window or the one a leave brought back; the list whole
#   when a crowd starts or ends).
room_changed = Signal()

# Sent once when a moderator closes a room (its members and its row are gone), after commit,
# with the keyword argument room_slug (str).
room_closed = Signal()
