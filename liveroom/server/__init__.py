"""The server integration: daphne as liveroom runs it, started by `python -m liveroom.server`.
It imports nothing from the application. Split as daphne splits itself: server.py (the
Server, draining), http_protocol.py and ws_protocol.py (connections), raw_socket.py,
admission.py, versions.py (the gate for what reads library internals) and cli.py."""

# First, before any module here imports Twisted's reactor: daphne installs the asyncio one.
import daphne.server  # noqa: F401
