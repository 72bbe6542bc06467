"""benchmarks/gpu_suite.sh in its CPU-sized dry mode: every section runs and lands in one JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Each section starts a process that imports torch, transformers and TensorFlow: minutes
# on two cores, so the suite runs with the other long tests (`pytest -m slow`).
pytestmark = pytest.mark.slow

SUITE = REPO / "benchmarks" / "gpu_suite.sh"
SECTIONS = ("robotseg", "sam3", "diffusion", "pipeline")


def run_suite(out, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SUITE), "--dry-run", "--out", str(out), *extra],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


def numbers(value):
    """Every int/float inside ``value`` (bools excluded)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)


def test_dry_run_writes_every_section_without_errors(tmp_path):
    out = tmp_path / "gpu.json"
    done = run_suite(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["dry_run"] is True
    assert result["errors"] == {}
    env = result["environment"]
    assert env["torch"] and "cuda_runtime" in env and "gpu" in env

    for name in SECTIONS:
        section = result[name]
        assert section["status"] == "ok", (name, section)
        assert section["errors"] == [], (name, section["errors"])
        assert section["records"], name
        assert section["weights"], name  # which weights were measured is always said
        for record in section["records"]:
            assert "error" not in record
        figures = [v for r in section["records"] for k, v in r.items() if "per_second" in k and v is not None]
        assert figures and all(v > 0 for v in figures), (name, figures)

    # RobotSeg: both sizes, fp32 and bf16, eager and compiled; one compiled graph per size.
    robotseg = result["robotseg"]["records"]
    assert {(r["image_size"], r["dtype"], r["compile"]) for r in robotseg} == {
        (size, dtype, compiled) for size in (64, 128) for dtype in ("fp32", "bf16") for compiled in (False, True)
    }
    assert all(r["frames_per_second"] > 0 for r in robotseg)
    assert max(r["dynamo_graphs_so_far"] for r in robotseg) == 2
    assert "tiny" in result["robotseg"]["config"]

    sam3 = result["sam3"]["records"][0]
    assert sam3["parameters"] > 0 and set(sam3["pixels_found"]) == set(result["sam3"]["prompts"])
    diffusion = result["diffusion"]["records"][0]
    assert diffusion["backgrounds_per_second"] > 0 and result["diffusion"]["resolution"] == 64
    pipeline = result["pipeline"]["records"][0]
    # 2 episodes x 4 steps x 2 cameras, all written, segmented by RobotSeg (tiny, CPU).
    assert pipeline["episodes_written"] == 2 and pipeline["frames"] > 0
    assert pipeline["frames_per_second"] > 0 and pipeline["segment_seconds"] > 0

    assert all(v >= 0 for v in numbers(result))


def test_a_failing_section_is_recorded_and_the_next_one_still_runs(tmp_path):
    out = tmp_path / "gpu.json"
    missing = tmp_path / "nowhere" / "robotseg.pt"
    done = run_suite(out, "--sections", "robotseg", "sam3", "--robotseg-checkpoint", str(missing), "--robotseg-sizes", "64")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())

    robotseg = result["robotseg"]
    assert robotseg["status"] == "error" and robotseg["records"] == []
    assert len(robotseg["errors"]) == 4  # 1 size x fp32/bf16 x eager/compiled, each tried
    assert all(str(missing) in e["error"] for e in robotseg["errors"])
    assert robotseg["weights"] == str(missing)
    assert result["errors"] == {"robotseg": robotseg["errors"]}

    assert result["sam3"]["status"] == "ok" and result["sam3"]["records"][0]["frames_per_second"] > 0
    assert "diffusion" not in result and "pipeline" not in result
