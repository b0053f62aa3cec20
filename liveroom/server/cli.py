"""daphne's command line, starting LiveroomServer (`python -m liveroom.server`)."""

from functools import partial

from daphne.cli import CommandLineInterface

from liveroom.server.server import LiveroomServer


class LiveroomCommandLine(CommandLineInterface):
    def __init__(self, **server_options) -> None:
        """`server_options`: LiveroomServer's own (metrics_address, max_backlog,
        one_frame_messages, header_seconds, requests_at_once)."""
        super().__init__()
        self.server_class = partial(LiveroomServer, **server_options)
