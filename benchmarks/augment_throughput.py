"""Augmentation against the copy baseline, in one run on the same data.

Renders sample data at 256x256 (once, cached in the scratch folder), then runs
configs/copy.yaml and configs/demo.yaml on it with the default local runner, and
reports wall time, frames per second, peak memory and the augment/copy time ratio
(target: <= 1.5).

    .venv/bin/python benchmarks/augment_throughput.py [--episodes 16] [--steps 16] [--size 256]

Results go to benchmarks/results/augment_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import shutil

from measure import OXE_AUGMENT, measure, run_recipe, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="0: every core")
    parser.add_argument("--scratch", default="/tmp/oxe-augment-bench")
    args = parser.parse_args()

    dataset = os.path.join(args.scratch, f"sample-{args.episodes}x{args.steps}-{args.size}", "oxe_augment_sample", "1.0.0")
    if not os.path.exists(os.path.join(dataset, "dataset_info.json")):
        rendered = measure([OXE_AUGMENT, "sample-data", dataset, "--episodes", str(args.episodes),
                            "--steps", str(args.steps), "--size", str(args.size)])
        assert rendered.returncode == 0, rendered

    runs = {}
    for recipe in ("copy", "demo"):
        out = os.path.join(args.scratch, f"out-{recipe}")
        shutil.rmtree(out, ignore_errors=True)
        measurement, report = run_recipe(
            f"configs/{recipe}.yaml",
            [f"input.dir={dataset}", f"output.dir={out}", f"runner.workers={args.workers}", "output.previews=0"],
        )
        assert measurement.returncode == 0, measurement
        runs[recipe] = {
            "episodes_in": report["episodes_in"],
            "output_episodes": report["output_episodes"],
            "frames": report["frames"],
            "wall_seconds": round(measurement.wall_seconds, 2),
            "frames_per_second": round(report["frames"] / measurement.wall_seconds, 1),
            "peak_rss_mb": round(measurement.peak_rss_mb),
            "worker_seconds_per_stage": report["seconds_per_stage"],
        }
        print(recipe, runs[recipe], flush=True)
    ratio = runs["demo"]["wall_seconds"] / runs["copy"]["wall_seconds"]
    path = write_results("augment_throughput", {
        "dataset": f"sample data, {args.episodes} episodes x {args.steps} steps x 2 cameras at {args.size}x{args.size}",
        "augment_recipe": "configs/demo.yaml (dataset masks, mix of procedural and re-lit clean plate, 2 variants)",
        "runs": runs,
        "augment_over_copy_wall_time": round(ratio, 2),
        "target": "<= 1.5",
    })
    print(f"augment / copy wall time: {ratio:.2f} (target <= 1.5); results: {path}")


if __name__ == "__main__":
    main()
