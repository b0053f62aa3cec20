"""The process's Prometheus metrics, defined once here and updated where things happen.

Each server process counts its own and serves them on its own metrics port
(LIVEROOM_METRICS_ADDRESS, liveroom/server/); Prometheus scrapes every process as a target and
sums across them, so no figure is shared between processes and none is counted twice.
docs/operations.md says what each means and what to alert on.
"""

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

open_pages = Gauge(
    "liveroom_open_pages",
    "Pages with an open socket on this process, by kind (room, rooms)",
    ["kind"],
)
rooms_served = Gauge("liveroom_rooms_served", "Rooms with at least one open page on this process")
changes_published = Counter(
    "liveroom_changes_published_total",
    "Messages this process published to the channel layer, by what they carry",
    ["what"],
)
broadcasts_skipped = Counter(
    "liveroom_broadcasts_skipped_total",
    "Messages this process could not publish (pages heal from the watch), by what and why",
    ["what", "reason"],
)
delivery_seconds = Histogram(
    "liveroom_delivery_seconds",
    "From a message's publish (on any process) to its last socket write on this process",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
snapshots_sent = Counter(
    "liveroom_snapshots_sent_total",
    "Snapshots sent to pages, by whether they carried the whole list or only the page's part",
    ["kind"],
)
sockets_closed = Counter(
    "liveroom_sockets_closed_total",
    "Sockets the app closed, by close code (1013: try again later, so the page reconnects "
    "later; 1012: reconnect now; 4403: not a member; 1008: a client that talks)",
    ["code"],
)
presence_errors = Counter(
    "liveroom_presence_store_errors_total",
    "Presence store calls that failed (Redis unreachable or slow)",
    ["operation"],
)
live_task_restarts = Counter(
    "liveroom_live_task_restarts_total",
    "Tasks of the live core that died and were started again, by task",
    ["task"],
)

# Read when scraped: the app sets its function (liveroom/apps.py).
database_connections_in_use = Gauge(
    "liveroom_database_connections_in_use",
    "Connections of this process's database pool (PostgreSQL) that are checked out or being "
    "opened: requests and reads at work, and any never given back (DATABASE_POOL_SIZE bounds "
    "them; past it, requests wait, then 503)",
)

# The server's own (liveroom/server/).
requests_under_way = Gauge(
    "liveroom_server_requests_under_way",
    "Requests this process is working on, sockets' handshakes among them "
    "(LIVEROOM_REQUESTS_AT_ONCE bounds them)",
)
accept_pauses = Counter(
    "liveroom_server_accept_pauses_total",
    "Times this process stopped accepting connections with LIVEROOM_REQUESTS_AT_ONCE requests "
    "under way",
)
page_sockets = Counter(
    "liveroom_page_sockets_total",
    "Pages' sockets opened on this process, by how their frames are written: raw (liveroom's "
    "server, a frame made once for many pages) or asgi (through ASGI, a page at a time: the "
    "server's raw sockets are off, or it is another server)",
    ["kind"],
)


class Tally(Collector):
    """A counter kept as a plain integer and read when scraped: for a path too hot for a
    Prometheus counter's lock (a frame to each of thousands of pages). Event loop only."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.total = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.total)


page_bytes = Tally(
    "liveroom_page_bytes",
    "Bytes of the frames this process wrote to pages' sockets (room and /rooms/ pages)",
)
REGISTRY.register(page_bytes)

admin_login_failures = Counter(
    "liveroom_admin_login_failures_total", "Failed sign-ins to the admin on this process"
)
admin_logins_refused = Counter(
    "liveroom_admin_logins_refused_total",
    "Admin sign-ins refused with 429 (too many failures for the account or from the address)",
)

# Known label values start at 0, so a dashboard has a series before the first event.
for kind in ("room", "rooms"):
    open_pages.labels(kind)
for kind in ("room.change", "room.presence", "room.closed", "rooms.change"):
    changes_published.labels(kind)
for kind in ("list", "own part"):
    snapshots_sent.labels(kind)
for kind in ("raw", "asgi"):
    page_sockets.labels(kind)
