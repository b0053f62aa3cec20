"""What the domain announces. Receivers run after the change's transaction has committed."""

from django.dispatch import Signal

# Sent once per membership change, after commit, with keyword arguments:
#   room (Room), version (int, the room's version after the change), member (Member),
#   change ("joined", "renamed" or "left"), count (members after the change),
#   previous_name (str, for "renamed").
room_changed = Signal()
