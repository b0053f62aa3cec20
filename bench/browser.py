"""A big room in a real browser: how soon does the list show, and what does each swap cost?

    python -m bench.browser                       # 5,000 members, 30 later changes
    python -m bench.browser --members 200 --changes 6

One server started the way production runs it (`python -m liveroom.server`, presence and
heartbeats on; DATABASE_URL and REDIS_URL from the environment, or the embedded default). The
room is given --members - 1 members straight in the database, then Debian's Chromium (driven by
Playwright) joins through the form as the last one and loads the room page again. In the page,
a PerformanceObserver counts long tasks and the htmx ws extension's own events time each
message's swap. Prints, from the response's first byte: when the page's list showed (parsed and
painted), when its socket's first message came and how long it took to swap; then --changes
joins, renames and leaves by other people, 0.3 s apart, and how long each swap took; and every
long task after the list showed.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.fanout import production_environment
from harness.browsers import CHROMIUM, CHROMIUM_ARGS
from harness.servers import Daphne, Visitor, manage

# Test instruments, added by Playwright before the page's own scripts (not part of the page).
INSTRUMENTS = """
window.liveroomBench = {longTasks: [], swaps: [], shown: null};
new PerformanceObserver((list) => {
  for (const task of list.getEntries()) {
    liveroomBench.longTasks.push([task.startTime, task.duration]);
  }
}).observe({type: "longtask", buffered: true});
document.addEventListener("htmx:wsBeforeMessage", () => {
  liveroomBench.began = performance.now();
});
document.addEventListener("htmx:wsAfterMessage", (event) => {
  const began = liveroomBench.began;
  liveroomBench.swaps.push([began, performance.now() - began, event.detail.message.length]);
});
document.addEventListener("DOMContentLoaded", () => {
  requestAnimationFrame(() => setTimeout(() => { liveroomBench.shown = performance.now(); }));
});
"""

SEED = """
from liveroom.models import Member, Room
room, _ = Room.objects.get_or_create(slug="lobby")
Member.objects.bulk_create(
    [Member(room=room, session_key=f"seeded{i:034}", name=f"Member {i}") for i in range(COUNT)],
    batch_size=1000,
)
Room.objects.filter(pk=room.pk).update(version=COUNT)
"""


def change_the_room(server: Daphne, changes: int) -> None:
    """Other people join, rename and leave, 0.3 s apart: `changes` changes in all."""
    people: list[Visitor] = []
    for number in range(changes):
        if number % 3 == 0:
            people.append(Visitor())
            response = people[-1].join(server, f"Newcomer {number}")
        elif number % 3 == 1:
            response = people[-1].post_join(server, f"Renamed {number}")
        else:
            response = people[-1].leave(server)
        if response.status_code != 302:
            raise RuntimeError(f"change {number} answered {response.status_code}")
        time.sleep(0.3)


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="liveroom-browser-"))
    env = production_environment(work)
    manage(env, "shell", "-v", "0", "-c", SEED.replace("COUNT", str(args.members - 1)))
    server = Daphne(env, work / "server.log").start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 480, "height": 640})
            context.add_init_script(INSTRUMENTS)
            page = context.new_page()
            page.goto(f"{server.url}/room/join/")
            page.get_by_label("Your name").fill("Browser")
            page.get_by_role("button", name="Join").click()
            page.wait_for_url(f"{server.url}/room/")
            page.wait_for_timeout(1000)  # the join's own message and presence are in
            with page.expect_websocket() as socket_info:
                page.goto(f"{server.url}/room/")  # the page load measured
            socket_info.value.expect_event("framereceived", timeout=60_000)
            while not page.evaluate(
                "() => liveroomBench.shown !== null && liveroomBench.swaps.length"
            ):
                page.wait_for_timeout(100)  # (wait_for_function would need the CSP's unsafe-eval)
            page.wait_for_timeout(500)
            first_swaps = page.evaluate("liveroomBench.swaps.length")
            change_the_room(server, args.changes)
            page.wait_for_timeout(1000)
            figures = page.evaluate(
                """() => {
                  const navigation = performance.getEntriesByType("navigation")[0];
                  return {
                    responseStart: navigation.responseStart,
                    responseEnd: navigation.responseEnd,
                    bytes: navigation.encodedBodySize,
                    members: document.querySelectorAll("#members > li").length,
                    ...liveroomBench,
                  };
                }"""
            )
            browser.close()
    finally:
        server.stop()
    start, shown = figures["responseStart"], figures["shown"]
    first_at, first_ms, first_bytes = figures["swaps"][0]
    later = [duration for _, duration, _ in figures["swaps"][first_swaps:]]
    long_after = [duration for began, duration in figures["longTasks"] if began >= shown]
    return {
        "members": figures["members"],
        "page_bytes": figures["bytes"],
        "response_ms": round(figures["responseEnd"] - start, 1),
        "list_shown_ms": round(shown - start, 1),
        "first_message_ms": round(first_at - start, 1),
        "first_message_bytes": first_bytes,
        "first_swap_ms": round(first_ms, 1),
        "later_swaps": len(later),
        "later_swap_p50_ms": round(statistics.median(later), 1) if later else None,
        "later_swap_max_ms": round(max(later), 1) if later else None,
        "long_tasks_after_shown": len(long_after),
        "longest_task_after_shown_ms": round(max(long_after, default=0), 1),
        "long_tasks_before_shown_ms": [
            round(duration) for began, duration in figures["longTasks"] if began < shown
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result), flush=True)
    print(
        f"{result['members']} members, a {result['page_bytes'] / 1024:.0f} KiB page: response "
        f"{result['response_ms']} ms, list shown {result['list_shown_ms']} ms after its first "
        f"byte; first socket message at {result['first_message_ms']} ms "
        f"({result['first_message_bytes']} bytes, swapped in {result['first_swap_ms']} ms); "
        f"{result['later_swaps']} later changes swapped in {result['later_swap_p50_ms']} ms "
        f"median, {result['later_swap_max_ms']} ms at most; long tasks after the list showed: "
        f"{result['long_tasks_after_shown']} (longest {result['longest_task_after_shown_ms']} ms)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["members"] != args.members:
        sys.exit(f"the page showed {result['members']} members, not {args.members}")


if __name__ == "__main__":
    main()
