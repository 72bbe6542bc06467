"""Augmentation against the copy: wall time and peak memory of the demo recipe over the copy's, 1 and 2 workers.

The workload: ``oxe-augment sample-data`` (16 episodes x 24 steps x 2 cameras at 256 px by
default; rendered once and kept in ``--scratch``), and on it

* the copy, ``configs/copy.yaml``;
* the augmentation, ``configs/demo.yaml`` with its background section replaced by
  ``source: procedural`` (written to a temporary recipe): stored robot and object masks,
  procedural backgrounds re-lit per variant, 2 variants per episode, masks written, previews
  of the first 4 episodes, as the demo does.

Measured as ``benchmarks/copy_throughput.py --floor`` measures the copy against its floor:
at each worker count the two alternate (copy, augment, copy, augment, ...) so both see the
same machine load, each figure is the median of ``--repeats`` runs, memory is the peak of
the summed RSS of every process (launcher and workers), the launcher's own beside it, and
the load average is recorded before each pair. Every run must account for every episode
(written + failed = in, none failed; the augmentation writes 2 per episode). The ratios
augment / copy are printed and written.

    .venv/bin/python benchmarks/augment_throughput.py [--episodes 16] [--steps 24] [--size 256] [--workers 1 2] [--repeats 3]

Results go to benchmarks/results/augment_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from measure import OXE_AUGMENT, REPO, Measurement, measure, ratios, summary, write_results

VARIANTS = 2  # configs/demo.yaml's output.variants_per_episode


def procedural_demo_recipe(path: str) -> None:
    """``configs/demo.yaml`` with the background section replaced by ``source: procedural``."""
    with open(os.path.join(REPO, "configs", "demo.yaml"), encoding="utf-8") as f:
        text = f.read()
    start, end = text.index("\nbackground:\n"), text.index("\ncomposite:\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:start] + "\nbackground:\n  source: procedural\n" + text[end:])


def sample_data(dataset: str, episodes: int, steps: int, size: int) -> None:
    """Render the sample dataset unless it is already there (the same arguments give the same files)."""
    if os.path.exists(os.path.join(dataset, "dataset_info.json")):
        return
    shutil.rmtree(dataset, ignore_errors=True)
    command = [OXE_AUGMENT, "sample-data", dataset, "--episodes", str(episodes), "--steps", str(steps), "--size", str(size)]
    rendered = measure(command)
    assert rendered.returncode == 0, rendered.output[-4000:]


def run(recipe: str, dataset: str, out: str, workers: int, per_episode: int) -> tuple[Measurement, dict]:
    """``oxe-augment run RECIPE`` on ``dataset``; checks that every episode was written."""
    command = [OXE_AUGMENT, "run", recipe]
    for override in (f"input.dir={dataset}", f"output.dir={out}", f"runner.workers={workers}"):
        command += ["--set", override]
    result = measure(command)
    assert result.returncode == 0, result.output[-4000:]
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["episodes_failed"] == 0 and report["episodes_written"] == report["episodes_in"], report
    assert report["output_episodes"] == per_episode * report["episodes_in"], report
    return result, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", default="/tmp/oxe-augment-bench", help="where the sample data is kept between runs")
    args = parser.parse_args()

    dataset = os.path.join(args.scratch, f"sample-{args.episodes}x{args.steps}-{args.size}", "oxe_augment_sample", "1.0.0")
    sample_data(dataset, args.episodes, args.steps, args.size)
    work = tempfile.mkdtemp(prefix="augment-bench-")
    recipe = os.path.join(work, "demo_procedural.yaml")
    procedural_demo_recipe(recipe)
    recipes = {"copy": ("configs/copy.yaml", 1), "augment": (recipe, VARIANTS)}
    results = []
    try:
        for workers in args.workers:
            runs: dict[str, list[Measurement]] = {"copy": [], "augment": []}
            stages: dict[str, list[dict]] = {"copy": [], "augment": []}
            loads = []
            frames = 0
            for repeat in range(args.repeats):
                loads.append([round(x, 2) for x in os.getloadavg()])
                for name, (path, per_episode) in recipes.items():
                    out = os.path.join(work, f"{name}-{workers}-{repeat}")
                    measurement, report = run(path, dataset, out, workers, per_episode)
                    runs[name].append(measurement)
                    stages[name].append(report["seconds_per_stage"])
                    frames = report["frames"]
                    print(
                        f"workers {workers} {name:7}: {measurement.wall_seconds:.1f} s, {measurement.peak_rss_mb:.0f} MB",
                        flush=True,
                    )
                    shutil.rmtree(out, ignore_errors=True)  # the outputs are not needed afterwards; the disk is
            copy, augment = summary(runs["copy"]), summary(runs["augment"])
            entry = {
                "workers": workers,
                "episodes": args.episodes,
                "frames": frames,
                "load_average_before_each_repeat": loads,
                "copy": copy,
                "augment": augment,
                "augment_worker_seconds_per_stage": stages["augment"],
                "ratio": ratios(f"workers {workers}: augment/copy", augment, copy),
            }
            results.append(entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_results(
        "augment_throughput",
        {
            "dataset": f"sample data, {args.episodes} episodes x {args.steps} steps x 2 cameras at {args.size}x{args.size}",
            "copy_recipe": "configs/copy.yaml",
            "augment_recipe": "configs/demo.yaml with background: {source: procedural} (stored masks, procedural "
            f"backgrounds re-lit per variant, {VARIANTS} variants, masks written, previews of 4 episodes)",
            "method": f"median of {args.repeats}; copy and augment alternate; memory: summed RSS of all processes, "
            "sampled every 0.2 s",
            "target": "ratio.wall <= 1.2",
            "runs": results,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
