"""Log lines an operator can use: LOG_FORMAT=plain (the default) or json.

Events worth knowing carry an `event` field (ready, draining, stopped, redis_lost, redis_back,
database_lost, database_back, broadcast_skipped) and the same fields each time; in JSON each line
is one object with `time`, `level`, `logger`, `message`, and `event` and its fields where the
line has them, for log collectors.
"""

import json
import logging
from datetime import UTC, datetime

# What every LogRecord has; anything else on a record came from `extra=` and goes out as a field.
STANDARD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {
            name: value for name, value in record.__dict__.items() if name not in STANDARD_FIELDS
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class PlainFormatter(logging.Formatter):
    """One line per record; an event's fields follow its message as name=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if "event" not in record.__dict__:
            return line
        fields = {
            name: value for name, value in record.__dict__.items() if name not in STANDARD_FIELDS
        }
        if fields:
            line += " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]"
        return line
