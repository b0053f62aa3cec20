"""Testing a project built on liveroom (docs/testing.md): open a room page as a member, the page's
real HTML and the socket it names, apply every pushed message as htmx does, and ask what the page
shows. `room_page` is the pytest fixture (liveroom/testing/plugin.py).

`Page` and `Document` (dom.py) need no Django: a client that follows a page over a real socket
(a benchmark's) reads it with them. `RoomPage`, `join` and `socket_headers` (page.py) are
imported when first used, once Django is set up."""

from liveroom.testing.dom import Document, Page

PAGE = {"RoomPage", "join", "socket_headers", "new_member", "open_socket", "receive_snapshot",
        "open_room_socket"}  # fmt: skip

__all__ = ["Document", "Page", *sorted(PAGE)]


def __getattr__(name: str) -> object:
    if name in PAGE:
        from liveroom.testing import page

        return getattr(page, name)
    raise AttributeError(f"module 'liveroom.testing' has no attribute {name!r}")
