"""Every benchmark at a small size, so none can rot. Figures are not judged here."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.servers import ROOT


def test_the_fanout_benchmark_runs_and_loses_nothing(tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--smoke", "--json", str(results_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads(results_path.read_text())
    (result,) = data["results"]
    assert result["members"] == 20
    assert result["lost"] == 0
    assert result["events"] == 6
    assert result["resyncs"] == 0
    assert 0 < result["socket_p50_ms"] <= result["socket_p99_ms"]
    assert "N=20" in completed.stdout

    svg = tmp_path / "plot.svg"
    data["results"].append({**result, "members": 40})
    results_path.write_text(json.dumps(data))
    subprocess.run(
        [sys.executable, "-m", "bench.plot", str(results_path), str(svg)], cwd=ROOT, check=True
    )
    assert svg.read_text().startswith("<svg")


def run_bench(*args: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_the_arrival_benchmark_runs_against_liveroom_and_its_reference(tmp_path: Path) -> None:
    figures = tmp_path / "arrival.json"
    output = run_bench(
        "bench.arrival", "--people", "20", "--at-once", "5", "--floor", "--json", str(figures)
    )
    liveroom, floor, bare = json.loads(figures.read_text())
    assert (liveroom["server"], liveroom["arrived"], liveroom["failures"]) == ("liveroom", 20, 0)
    assert (floor["server"], floor["arrived"], floor["failures"]) == ("floor", 20, 0)
    assert (bare["server"], bare["arrived"], bare["failures"]) == ("bare", 20, 0)
    assert "liveroom / bare: server CPU x" in output
    assert "floor / liveroom: server CPU x" in output
    assert liveroom["watch_lists"] is not None  # read from the server's log
    assert f"watch's whole lists {liveroom['watch_lists']}" in output
    assert liveroom["sent_to_pages_mib"] > 0  # each page's first message, at least
    assert f"{liveroom['sent_to_pages_mib']:,.1f} MiB written to pages" in output
    assert bare["sent_to_pages_mib"] is None
    # Where liveroom's CPU went: its event loop and its request threads both worked, and the
    # parts add up to the whole (to the clock's tick, once for each reading).
    threads = liveroom["threads"]
    assert threads["event_loop_cpu_s"] > 0
    assert threads["other_threads_cpu_s"] > 0
    assert threads["context_switches"] > 0
    parts = threads["event_loop_cpu_s"] + threads["other_threads_cpu_s"]
    assert abs(parts - liveroom["server_cpu_s"]) <= 0.05
    assert f"threads switched out {threads['context_switches']:,} times" in output


def test_the_arrival_benchmark_gives_liveroom_the_settings_it_is_asked_to() -> None:
    def arrival(*settings: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bench.arrival", "--people", "2", "--no-reference", *settings],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    refused = arrival("--set", "LIVEROOM_EMPTY_ROOM_SECONDS=-1")  # the server will not start
    assert refused.returncode != 0
    assert "LIVEROOM_EMPTY_ROOM_SECONDS must be 0 or more" in refused.stderr
    malformed = arrival("--set", "LIVEROOM_PRESENCE")
    assert malformed.returncode == 2
    assert "expected NAME=VALUE, got 'LIVEROOM_PRESENCE'" in malformed.stderr


def test_the_against_benchmark_alternates_an_older_commit_with_this_checkout() -> None:
    before = worktrees()
    output = run_bench(
        "bench.against", "HEAD~1", "--rounds", "2", "--", "--people", "10", "--at-once", "5"
    )
    older = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD~1"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert output.count(f"  {older} ") == 2, output  # the older commit's line in each round
    ratios = re.findall(r"server CPU x([0-9.]+), arrival p99 x([0-9.]+)", output)
    assert len(ratios) == 2, output
    assert all(float(cpu) > 0 for cpu, _ in ratios), output
    assert "median of 2 rounds, " in output
    assert "failures 0" in output
    assert worktrees() == before  # the older checkout is gone


def test_the_against_benchmark_says_what_it_cannot_compare_with() -> None:
    before = worktrees()
    completed = subprocess.run(
        [sys.executable, "-m", "bench.against", "no-such-commit"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 1
    assert "bench.against: git rev-parse" in completed.stderr
    assert worktrees() == before


def worktrees() -> int:
    """The repository's checkouts, its own included (a developer may have more)."""
    listed = subprocess.run(
        ["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return listed.count("worktree ")


def test_the_burst_benchmark_sees_everyone_arrive_on_the_open_page(tmp_path: Path) -> None:
    figures = tmp_path / "burst.json"
    output = run_bench("bench.burst", "--joins", "40", "--at-once", "10", "--json", str(figures))
    result = json.loads(figures.read_text())["result"]
    assert (result["joined"], result["failures"], result["broadcasts_skipped"]) == (40, 0, 0)
    assert result["shown_all_after_last_join_s"] is not None, output
    assert result["frames"] > 0
    assert 0 < result["most_frames_in_a_second"] <= result["frames"]
    assert result["kib"] > 0
    assert f"the open page got {result['frames']} frames ({result['kib']:,.0f} KiB)" in output


def test_the_burst_benchmark_joins_and_leaves_rooms_nobody_has_open(tmp_path: Path) -> None:
    figures = tmp_path / "burst.json"
    output = run_bench(
        "bench.burst", "--no-page", "--joins", "20", "--at-once", "10", "--rooms", "5",
        "--leave", "--json", str(figures),
    )  # fmt: skip
    result = json.loads(figures.read_text())["result"]
    assert (result["rooms"], result["page_open"], result["frames"]) == (5, False, 0)
    assert (result["joined"], result["left"], result["failures"]) == (20, 20, 0)
    assert result["broadcasts_skipped"] == 0
    assert "20 joined, 20 left again" in output
    assert "no page open" in output


@pytest.mark.services
def test_the_crowd_benchmark_loads_a_seeded_room_and_finds_its_members(tmp_path: Path) -> None:
    figures = tmp_path / "crowd.json"
    output = run_bench(
        "bench.crowd", "--members", "300", "--loads", "5", "--searches", "5",
        "--json", str(figures),
    )  # fmt: skip
    result = json.loads(figures.read_text())["result"]
    assert (result["members"], result["shows_count"], result["searches_found"]) == (301, True, 5)
    assert 0 < result["page_kib"] < 64
    assert "a room of 301" in output


def test_the_request_cost_benchmark_times_each_request_of_an_arrival() -> None:
    output = run_bench("bench.request_cost", "--people", "3")
    lines = re.findall(
        r"^(\S+ \S+) +([0-9.]+) ms of CPU a request \(templates ([0-9.]+), database ([0-9.]+), "
        r"Redis ([0-9.]+), the rest (-?[0-9.]+)\)$",
        output,
        re.MULTILINE,
    )
    costs = {step: [float(figure) for figure in figures] for step, *figures in lines}
    assert list(costs) == ["GET /room/join/", "POST /room/join/", "GET /room/", "GET /healthz"]
    assert all(rest >= 0 for *_, rest in costs.values())  # parts counted once, within the whole
    assert costs["GET /room/join/"][1] > 0  # its form, rendered
    assert costs["POST /room/join/"][2] > 0  # the session and the member, written
    assert costs["GET /healthz"][1:4] == [0.0, 0.0, 0.0]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):  # a pool to give back to
        assert "database connections the run left checked out of the pool: 0" in output


def test_the_shutdown_benchmark_runs() -> None:
    output = run_bench("bench.shutdown", "--pages", "20", "--runs", "1")
    assert "1 of 1 runs exited within 5 s with every page told 1012" in output


@pytest.mark.slow
def test_the_restart_benchmark_runs() -> None:
    output = run_bench("bench.restart", "--pages", "20", "--runs", "1")
    assert output.count("20 of 20 pages had their list again") == 2, output
    assert "held socket:" in output
    assert "bound socket:" in output


@pytest.mark.slow
@pytest.mark.services
def test_the_soak_benchmark_finds_every_page_right_and_nothing_left_behind() -> None:
    output = run_bench(
        "bench.soak", "--minutes", "0.5", "--rooms", "2", "--watchers", "2", "--churners", "2"
    )
    assert "4 of 4 pages matched PostgreSQL and Redis" in output
    assert "after everyone left: 0 rooms, 0 members" in output
    assert ", 0 without an expiry" in output


@pytest.mark.browser
def test_the_browser_benchmark_runs() -> None:
    output = run_bench("bench.browser", "--members", "50", "--changes", "3")
    assert "50 members, a " in output
    assert "later changes swapped in" in output  # the page got them
