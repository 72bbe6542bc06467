"""Augmentation against the copy baseline, in one run on the same data.

Renders sample data at 256x256 (once, cached in the scratch folder), then runs
configs/copy.yaml and configs/demo.yaml on it with the default local runner, and
reports the median wall time of --repeat runs, frames per second, peak memory and the augment/copy time ratio
(target: <= 1.5).

    .venv/bin/python benchmarks/augment_throughput.py [--episodes 16] [--steps 16] [--size 256]

Results go to benchmarks/results/augment_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics

from measure import OXE_AUGMENT, measure, run_recipe, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 0], help="local worker counts to try (0: every core)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per recipe; the median wall time is reported")
    parser.add_argument("--scratch", default="/tmp/oxe-augment-bench")
    args = parser.parse_args()

    dataset = os.path.join(args.scratch, f"sample-{args.episodes}x{args.steps}-{args.size}", "oxe_augment_sample", "1.0.0")
    if not os.path.exists(os.path.join(dataset, "dataset_info.json")):
        rendered = measure(
            [
                OXE_AUGMENT,
                "sample-data",
                dataset,
                "--episodes",
                str(args.episodes),
                "--steps",
                str(args.steps),
                "--size",
                str(args.size),
            ]
        )
        assert rendered.returncode == 0, rendered

    runs = []
    for workers in args.workers:
        run = {"workers": workers or os.cpu_count()}
        for recipe in ("copy", "demo"):
            out = os.path.join(args.scratch, f"out-{recipe}")
            walls = []
            for _ in range(args.repeat):
                shutil.rmtree(out, ignore_errors=True)
                measurement, report = run_recipe(
                    f"configs/{recipe}.yaml",
                    [f"input.dir={dataset}", f"output.dir={out}", f"runner.workers={workers}", "output.previews=0"],
                )
                assert measurement.returncode == 0, measurement
                walls.append(measurement.wall_seconds)
            wall = statistics.median(walls)
            run[recipe] = {
                "episodes_in": report["episodes_in"],
                "output_episodes": report["output_episodes"],
                "frames": report["frames"],
                "wall_seconds": round(wall, 2),
                "wall_seconds_all": [round(w, 2) for w in walls],
                "frames_per_second": round(report["frames"] / wall, 1),
                "peak_rss_mb": round(measurement.peak_rss_mb),
                "worker_seconds_per_stage": report["seconds_per_stage"],
            }
        run["augment_over_copy_wall_time"] = round(run["demo"]["wall_seconds"] / run["copy"]["wall_seconds"], 2)
        print(run, flush=True)
        runs.append(run)
    path = write_results(
        "augment_throughput",
        {
            "dataset": f"sample data, {args.episodes} episodes x {args.steps} steps x 2 cameras at {args.size}x{args.size}",
            "augment_recipe": "configs/demo.yaml (dataset masks, mix of procedural and re-lit clean plate, 2 variants)",
            "runs": runs,
            "target": "augment_over_copy_wall_time <= 1.5",
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
