"""The fan-out benchmark in smoke mode, so it cannot rot. Figures are not judged here."""

import json
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT


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
