"""What a room page may say over its socket: its person pressed "pause"/"resume" or turned
spoken announcements "off"/"on" (templates/liveroom/room/live_controls.html, sent by htmx's
ws-send as the form's values in JSON). Nothing else is read; a page that says anything else, or
presses faster than a person does, is closed by its consumer.
"""

import json
import time
from collections import deque

MOST_BYTES = 4096  # a form's values (and htmx's headers) are far less
MOST_PRESSES = 10  # in PRESS_WINDOW seconds
PRESS_WINDOW = 10.0

SETTINGS = {"live": {"pause", "resume"}, "spoken": {"on", "off"}}


class PageControls:
    """Reads one page's presses."""

    def __init__(self) -> None:
        self.presses: deque[float] = deque(maxlen=MOST_PRESSES)

    def read(self, text: str | None) -> tuple[str, str] | None:
        """("live", "pause"|"resume") or ("spoken", "on"|"off"); None for anything else."""
        now = time.monotonic()
        if len(self.presses) == MOST_PRESSES and now - self.presses[0] < PRESS_WINDOW:
            return None
        self.presses.append(now)
        if text is None or len(text) > MOST_BYTES:
            return None
        try:
            values = json.loads(text)
        except ValueError:
            return None
        if not isinstance(values, dict):
            return None
        asked = [(key, values[key]) for key in SETTINGS if key in values]
        if len(asked) != 1 or asked[0][1] not in SETTINGS[asked[0][0]]:
            return None
        return asked[0]
