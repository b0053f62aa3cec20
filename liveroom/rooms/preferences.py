"""A person's choices for their room pages, kept in their session: live updates paused, spoken
announcements off. A page starts as its session says; its buttons change the page at once
(over its socket, liveroom/live/controls.py) or through a plain post (views.live), and the
session remembers for the next pages.
"""

from collections.abc import Mapping

from django.contrib.sessions.backends.base import SessionBase

from liveroom.rooms.sessions import session_engine

PAUSED_KEY = "liveroom_paused"
QUIET_KEY = "liveroom_quiet"


def preferences(session: SessionBase, read_with: object = None) -> tuple[bool, bool]:
    """(paused, quiet) as the session says: from the `session_data` of `read_with` where it has
    one (read in the same statement: sessions.stored_data; None once expired), so the session
    is not loaded again; otherwise (or once this request has used the session) from it."""
    stored: Mapping = session
    if hasattr(read_with, "session_data") and not session.accessed:
        stored = session.decode(read_with.session_data) if read_with.session_data else {}
    return bool(stored.get(PAUSED_KEY, False)), bool(stored.get(QUIET_KEY, False))


def remember(session_key: str, *, paused: bool, quiet: bool) -> None:
    """Keep a page's choices in its session (if it still has one), for the session's next
    pages."""
    session = session_engine()(session_key)
    if preferences(session) == (paused, quiet) or session.session_key is None:
        return  # the same already, or the session is gone
    session[PAUSED_KEY], session[QUIET_KEY] = paused, quiet
    session.save()
