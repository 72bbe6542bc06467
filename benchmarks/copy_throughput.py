"""Throughput of the copy recipe: episodes and frames per second, peak memory, 1 and 2 workers.

The Bridge sample (25 + 25 episodes) is replicated into a few hundred episodes (each
shard copied N times, dataset_info.json updated), then copied with the default local
runner (DirectRunner, multi-processing) at each worker count.

    .venv/bin/python benchmarks/copy_throughput.py [--copies 6] [--workers 1 2]

Results go to benchmarks/results/copy_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from measure import REPO, run_recipe, write_results

BRIDGE = os.path.join(os.path.dirname(REPO), "shared", "data", "bridge_dataset", "1.0.0")


def replicate_bridge(target: str, copies: int) -> int:
    """A Bridge folder whose splits hold ``copies`` shards each; returns the episode count."""
    os.makedirs(target, exist_ok=True)
    shutil.copy(os.path.join(BRIDGE, "features.json"), target)
    with open(os.path.join(BRIDGE, "dataset_info.json"), encoding="utf-8") as f:
        info = json.load(f)
    episodes = 0
    for split in info["splits"]:
        source = os.path.join(BRIDGE, f"bridge_dataset-{split['name']}.tfrecord-00000-of-00001")
        for i in range(copies):
            os.symlink(source, os.path.join(target, f"bridge_dataset-{split['name']}.tfrecord-{i:05d}-of-{copies:05d}"))
        split["shardLengths"] = split["shardLengths"] * copies
        episodes += int(split["shardLengths"][0]) * copies
    with open(os.path.join(target, "dataset_info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f)
    return episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6, help="copies of each split's shard (50 episodes each)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="copy-bench-")
    dataset = os.path.join(scratch, "bridge_dataset", "1.0.0")
    episodes = replicate_bridge(dataset, args.copies)
    runs = []
    for workers in args.workers:
        out = os.path.join(scratch, f"out-{workers}")
        measurement, report = run_recipe(
            "configs/copy.yaml", [f"input.dir={dataset}", f"output.dir={out}", f"runner.workers={workers}"]
        )
        assert measurement.returncode == 0, measurement
        # The same run on one episode per split: the fixed cost (worker start-up, imports).
        startup, _ = run_recipe(
            "configs/copy.yaml",
            [f"input.dir={dataset}", f"output.dir={out}-startup", f"runner.workers={workers}", "input.max_episodes=1"],
        )
        runs.append(
            {
                "startup_wall_seconds": round(startup.wall_seconds, 2),
                "marginal_episodes_per_second": round(
                    (report["episodes_written"] - 2) / max(measurement.wall_seconds - startup.wall_seconds, 1e-9), 2
                ),
                "workers": workers,
                "episodes": report["episodes_written"],
                "frames": report["frames"],
                "wall_seconds": round(measurement.wall_seconds, 2),
                "episodes_per_second": round(report["episodes_written"] / measurement.wall_seconds, 2),
                "frames_per_second": round(report["frames"] / measurement.wall_seconds, 1),
                "peak_rss_mb": round(measurement.peak_rss_mb),
            }
        )
        print(runs[-1], flush=True)
    path = write_results(
        "copy_throughput", {"dataset": f"bridge x{args.copies} ({episodes} episodes, 4 cameras 64x64)", "runs": runs}
    )
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
