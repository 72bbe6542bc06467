"""Throughput of the copy recipe against the copy floor: wall time and peak memory, 1 and 2 workers.

The workload is the shared Bridge debug set replicated by ``../shared/bench/make_big_bridge.py``
(``--shards`` shards per split of 25 episodes each; 10: 500 episodes, 20,000 64x64 frames).
``configs/copy.yaml`` copies it with the default local runner at each worker count.

With ``--floor``, each copy run alternates with a run of ``../shared/bench/copy_floor.py`` (the
least a TFDS Beam writer does for the same copy: records parsed, images passed through
encoded), given the same runner options ``oxe-augment run`` gives Beam for that many
workers, so both see the same machine load. Each figure is the median of ``--repeats`` runs;
memory is the peak of the summed RSS of every process (launcher and workers), the launcher's
own peak beside it. The ratios copy / floor are printed and written.

    .venv/bin/python benchmarks/copy_throughput.py --floor [--shards 10] [--workers 1 2] [--repeats 3]

Results go to benchmarks/results/copy_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from measure import OXE_AUGMENT, REPO, Measurement, measure, ratios, summary, write_results

sys.path.insert(0, REPO)
from pipelines.pipeline import local_runner_args  # noqa: E402 - the runner options `run` uses

SHARED = os.path.join(os.path.dirname(REPO), "shared")
BRIDGE = os.path.join(SHARED, "data", "bridge_dataset", "1.0.0")
MAKE_BIG_BRIDGE = os.path.join(SHARED, "bench", "make_big_bridge.py")
COPY_FLOOR = os.path.join(SHARED, "bench", "copy_floor.py")


def run_copy(dataset: str, out: str, workers: int) -> Measurement:
    """``oxe-augment run configs/copy.yaml`` on ``dataset``; checks every episode was written."""
    command = [OXE_AUGMENT, "run", "configs/copy.yaml"]
    for override in (f"input.dir={dataset}", f"output.dir={out}", f"runner.workers={workers}"):
        command += ["--set", override]
    result = measure(command)
    assert result.returncode == 0, result.output[-4000:]
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["episodes_failed"] == 0 and report["episodes_written"] == report["episodes_in"], report
    return result


def run_floor(dataset: str, out: str, workers: int) -> Measurement:
    """``copy_floor.py`` with the runner options ``oxe-augment run`` would give Beam."""
    beam_args = [*local_runner_args(workers), "--default_sdk_harness_log_level=WARNING"]
    result = measure([sys.executable, COPY_FLOOR, dataset, out, *beam_args])
    assert result.returncode == 0, result.output[-4000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor", action="store_true", help="alternate with copy_floor.py runs and print the ratios")
    parser.add_argument("--shards", type=int, default=10, help="shards per split (25 episodes each)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="copy-bench-")
    dataset = os.path.join(scratch, "bridge_dataset", "1.0.0")
    subprocess.run([sys.executable, MAKE_BIG_BRIDGE, BRIDGE, dataset, str(args.shards)], check=True)
    episodes = 2 * 25 * args.shards
    results = []
    try:
        for workers in args.workers:
            copies, floors, loads = [], [], []
            for repeat in range(args.repeats):
                loads.append([round(x, 2) for x in os.getloadavg()])
                if args.floor:
                    floors.append(run_floor(dataset, os.path.join(scratch, f"floor-{workers}-{repeat}"), workers))
                    print(
                        f"workers {workers} floor: {floors[-1].wall_seconds:.1f} s, {floors[-1].peak_rss_mb:.0f} MB", flush=True
                    )
                copies.append(run_copy(dataset, os.path.join(scratch, f"copy-{workers}-{repeat}"), workers))
                print(f"workers {workers} copy:  {copies[-1].wall_seconds:.1f} s, {copies[-1].peak_rss_mb:.0f} MB", flush=True)
                # The outputs of a run are not needed afterwards; the disk is.
                for name in (f"floor-{workers}-{repeat}", f"copy-{workers}-{repeat}"):
                    shutil.rmtree(os.path.join(scratch, name), ignore_errors=True)
            copy = summary(copies)
            entry = {
                "workers": workers,
                "episodes": episodes,
                "frames": episodes * 40,
                "load_average_before_each_repeat": loads,
                "copy": copy,
                "episodes_per_second": round(episodes / copy["wall_seconds"], 2),
            }
            if args.floor:
                floor = summary(floors)
                entry["floor"] = floor
                entry["ratio"] = ratios(f"workers {workers}: copy/floor", copy, floor)
            results.append(entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = write_results(
        "copy_throughput",
        {
            "dataset": f"bridge x{args.shards} shards per split ({episodes} episodes, 4 cameras 64x64, 10 steps)",
            "method": f"median of {args.repeats}; floor and copy alternate; memory: summed RSS of all processes, sampled every 0.2 s",
            "runs": results,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
