"""The console: a run prints only the tool's own lines, and its progress agrees with its summary."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from pipelines.console import Console, ProgressMonitor, Totals
from tests.conftest import REPO, read_report

PROGRESS = re.compile(
    r"^(?P<done>\d+)/(?P<total>\d+) episodes, (?P<failed>\d+) failed, (?P<frames>\d+) frames, "
    r"(?P<rate>[\d.]+) frames/s, (ETA .+|writing shards|done in \d+ s)$"
)


def test_a_run_prints_only_its_own_lines_and_true_progress(sample_dir, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "run",
        "configs/demo.yaml",
        "--set",
        f"input.dir={sample_dir}",
        "--set",
        f"output.dir={out}",
        "--set",
        "runner.workers=2",
        "--set",
        "runner.progress_seconds=1",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr

    # stderr: progress lines and nothing else (no TensorFlow, absl, Beam or TFDS lines).
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no progress was shown"
    assert [line for line in lines if not PROGRESS.match(line)] == []

    # The last progress line agrees with the summary and the report.
    last = PROGRESS.match(lines[-1])
    report = read_report(out)
    assert int(last["done"]) == int(last["total"]) == report["episodes_in"] == 3
    assert int(last["failed"]) == report["episodes_failed"] == 0
    assert int(last["frames"]) == report["frames"]
    rate = float(last["rate"])
    assert abs(rate - report["frames_per_second"]) <= 0.1 * report["frames_per_second"]
    assert "done in" in lines[-1]

    # stdout: where things are, and the summary.
    assert f"dataset: {out}" in result.stdout and "episodes in 3, written 3, failed 0" in result.stdout


def test_progress_line_counts_rate_and_eta_from_the_workers_files(tmp_path):
    stream = io.StringIO()
    monitor = ProgressMonitor(str(tmp_path), expected=10, console=Console(stream), every_seconds=1.0)
    (tmp_path / "train-a.json").write_text('{"split": "train", "episodes": 3, "failed": 1, "frames": 30}')
    (tmp_path / "val-b.json").write_text('{"split": "val", "episodes": 1, "failed": 0, "frames": 10}')
    (tmp_path / "val-c.json").write_text('{"split": "val", "epis')  # being written: skipped
    line = monitor.show()
    assert line.startswith("4/10 episodes, 1 failed, 40 frames, ")
    assert "ETA" in line
    # A window of history gives the recent rate: 60 more frames over 2 s.
    monitor._history.clear()
    monitor._history.append((100.0, Totals(episodes=4, failed=1, frames=40)))
    text = monitor.describe(Totals(episodes=10, failed=1, frames=100), 102.0, final=False)
    assert text == "10/10 episodes, 1 failed, 100 frames, 30.0 frames/s, writing shards"
    assert stream.getvalue().count("\n") == 1  # not a terminal: one plain line per update
