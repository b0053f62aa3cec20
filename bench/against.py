"""Against: an arrival run by turns on an older commit and on this checkout, in one invocation.

    python -m bench.against 0ff6ab0                            # three rounds of bench.arrival
    python -m bench.against 0ff6ab0 --rounds 5 -- --people 2000 --at-once 100

This machine's speed moves by half within an hour, so code is compared only with code run in
the same minutes: each round runs `python -m bench.arrival --no-reference` (and what follows
`--`) on the older commit first, then on this checkout, and prints each one's server CPU and
arrival p99 with this checkout's ratios to the older's; the end gives the median ratios. The
older commit is checked out in a temporary git worktree (removed after) and run with this
checkout's Python environment; its bench.arrival must write `--json` as this one does.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.servers import ROOT

ARRIVAL = ["-m", "bench.arrival", "--no-reference"]


class Failed(Exception):
    """A step that cannot go on: what it was, and what it printed."""


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise Failed(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def arrival(checkout: Path, extra: list[str], work: Path) -> dict:
    """One bench.arrival in `checkout`: liveroom's figures, as its --json writes them."""
    figures = work / "figures.json"
    figures.unlink(missing_ok=True)
    command = [sys.executable, *ARRIVAL, *extra, "--json", str(figures)]
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
    if done.returncode != 0 or not figures.exists():
        raise Failed(
            f"bench.arrival in {checkout} exited {done.returncode}:\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    (liveroom,) = [result for result in json.loads(figures.read_text())
                   if result["server"] == "liveroom"]  # fmt: skip
    return liveroom


def line(name: str, result: dict) -> str:
    watch, written = result.get("watch_lists"), result.get("sent_to_pages_mib")
    return (
        f"  {name:<9} server CPU {result['server_cpu_s']:6.1f} s, arrival p99 "
        f"{result['p99_s']:5.2f} s, failures {result['failures']}"
        + ("" if watch is None else f", watch's whole lists {watch}")
        + ("" if written is None else f", {written:,.1f} MiB written to pages")
    )


def compare(commit: str, rounds: int, extra: list[str]) -> list[tuple[float, float]]:
    """The rounds' ratios (server CPU, arrival p99) of this checkout to `commit`."""
    older = git("rev-parse", "--short", f"{commit}^{{commit}}")
    this = git("rev-parse", "--short", "HEAD")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="liveroom-against-") as work:
        checkout = Path(work) / older
        git("worktree", "add", "--detach", str(checkout), older)
        try:
            for number in range(1, rounds + 1):
                before = arrival(checkout, extra, Path(work))
                now = arrival(ROOT, extra, Path(work))
                cpu = now["server_cpu_s"] / max(before["server_cpu_s"], 0.01)
                p99 = now["p99_s"] / max(before["p99_s"], 0.001)
                ratios.append((cpu, p99))
                print(f"round {number}:", flush=True)
                print(line(older, before), flush=True)
                print(line(this, now), flush=True)
                print(f"  {this} / {older}: server CPU x{cpu:.2f}, arrival p99 x{p99:.2f}")
        finally:
            git("worktree", "remove", "--force", str(checkout))
    cpu = statistics.median(cpu for cpu, _ in ratios)
    p99 = statistics.median(p99 for _, p99 in ratios)
    print(f"median of {rounds} rounds, {this} / {older}: server CPU x{cpu:.2f}, p99 x{p99:.2f}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Arguments after -- go to bench.arrival."
    )
    parser.add_argument("commit", help="the older code: a commit, tag or branch")
    parser.add_argument("--rounds", type=int, default=3)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        compare(args.commit, args.rounds, extra)
    except Failed as failure:
        sys.exit(f"bench.against: {failure}")


if __name__ == "__main__":
    main()
