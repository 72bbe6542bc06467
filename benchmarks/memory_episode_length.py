"""Peak memory against episode length: the demo recipe on 16-, 500- and 2,000-step episodes.

For each image size, two short episodes are rendered once with the sample-data code
(``pipelines.sample_data``: pybullet robots, exact robot and object masks, 16 steps), then
datasets of 2 episodes x N steps are written with the same TFDS builder and features by
repeating the rendered steps back and forth (0..15, 14..1, 0..15, ...: the motion stays
continuous, every step keeps its frames, masks and object masks). The 16-step dataset is the
rendered one unchanged: the same shards and features.json, byte for byte, as
``oxe-augment sample-data OUT --episodes 2 --steps 16 --size S`` writes.

Each case runs ``oxe-augment run configs/demo.yaml --set runner.workers=1`` (one worker: the
DirectRunner in one process) in a subprocess; psutil samples the resident set size of the
whole process tree every 0.1 s and the peak of the sum is reported. The target (issue 12,
item 4): the 2,000-step run within 1.3x the 16-step run's peak, per size.

    .venv/bin/python benchmarks/memory_episode_length.py                      # 128 and 256 px, 16/500/2000 steps
    .venv/bin/python benchmarks/memory_episode_length.py --sizes 128 --steps 16 2000

With ``--control-copy`` each dataset is also copied (``configs/copy.yaml``: no decoding at
all), which shows what Beam's runner and TFDS's writer hold for the same episodes' bytes
whatever the recipe does.

Writes ``benchmarks/results/memory_episode_length.json`` (after every case, so an interrupted
run keeps what it measured). The machine may be shared: the load average before and after
each case is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
import psutil

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from measure import OXE_AUGMENT, measure  # noqa: E402 - after the sys.path line above

import pipelines  # noqa: E402,F401 - triton before TensorFlow (pipelines/__init__.py)

RESULTS = REPO / "benchmarks" / "results" / "memory_episode_length.json"
TARGET_RATIO = 1.3
EPISODES = 2
BASE_STEPS = 16


def step_order(base_steps: int, steps: int) -> np.ndarray:
    """Indices into a ``base_steps`` clip for a ``steps`` clip, going back and forth (no jumps)."""
    if base_steps == 1:
        return np.zeros(steps, dtype=int)
    cycle = list(range(base_steps)) + list(range(base_steps - 2, 0, -1))
    return np.array([cycle[t % len(cycle)] for t in range(steps)])


def stretched(episode, steps: int):
    """``episode`` (a ``render.RenderedEpisode``) with ``steps`` steps, its steps repeated back and forth."""
    order = step_order(len(episode.states), steps)
    return dataclasses.replace(
        episode,
        frames={camera: frames[order] for camera, frames in episode.frames.items()},
        label_maps={camera: maps[order] for camera, maps in episode.label_maps.items()},
        object_maps={camera: maps[order] for camera, maps in episode.object_maps.items()},
        states=episode.states[order],
        actions=episode.actions[order],
    )


def write_long_dataset(out: pathlib.Path, size: int, steps: int, rendered: list) -> pathlib.Path:
    """A sample dataset (same builder, features and layout) of ``len(rendered)`` episodes x ``steps`` steps."""
    import tensorflow_datasets as tfds

    from pipelines import sample_data
    from pipelines.rlds_io import deterministic_serialization

    tfds.disable_progress_bar()
    spec = sample_data.SampleSpec(episodes=len(rendered), steps=steps, size=size)

    class LongSampleBuilder(sample_data._SampleDatasetBuilder, skip_registration=True):
        name = sample_data.DATASET_NAME

        def _generate_examples(self):
            for index, episode in enumerate(rendered):
                yield index, sample_data.episode_example(index, stretched(episode, steps))

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".long-", dir=out.parent) as scratch:
        builder = LongSampleBuilder(spec=spec, data_dir=scratch)
        with contextlib.redirect_stdout(io.StringIO()), deterministic_serialization():
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP
                )
            )
        built = pathlib.Path(scratch) / sample_data.DATASET_NAME / sample_data.DATASET_VERSION
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(built.iterdir()):
            shutil.move(str(path), out / path.name)
    return out


def dataset_for(scratch: pathlib.Path, size: int, steps: int, cache: dict) -> pathlib.Path:
    """The (cached) dataset of EPISODES x ``steps`` steps at ``size`` px."""
    out = scratch / f"sample-{EPISODES}x{steps}-{size}" / "oxe_augment_sample" / "1.0.0"
    if (out / "dataset_info.json").exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    if size not in cache:
        from pipelines import sample_data

        spec = sample_data.SampleSpec(episodes=EPISODES, steps=BASE_STEPS, size=size)
        cache[size] = [sample_data.render_sample_episode(spec, i) for i in range(EPISODES)]
    start = time.perf_counter()
    write_long_dataset(out, size, steps, cache[size])
    print(f"  wrote {out} in {time.perf_counter() - start:.1f} s", flush=True)
    return out


def run_case(dataset: pathlib.Path, output: pathlib.Path, poll: float, recipe: str = "configs/demo.yaml") -> dict:
    """``oxe-augment run RECIPE`` on ``dataset`` with one worker; peak RSS of the tree."""
    command = [
        OXE_AUGMENT,
        "run",
        recipe,
        "--set",
        f"input.dir={dataset}",
        "--set",
        f"output.dir={output}",
        "--set",
        "runner.workers=1",
    ]
    load_before = os.getloadavg()
    result = measure(command, poll_seconds=poll)
    load_after = os.getloadavg()
    case = {
        "returncode": result.returncode,
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "wall_seconds": round(result.wall_seconds, 1),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        "command": " ".join(command[1:]),
    }
    report = output / "report.json"
    if report.exists():
        r = json.loads(report.read_text())
        case.update({k: r.get(k) for k in ("episodes_in", "episodes_written", "episodes_failed", "frames", "frames_per_second")})
    return case


def summarise(cases: list[dict], steps: list[int]) -> dict:
    """Per size: peak by step count and the longest/shortest peak ratio against the target."""
    by_size: dict[str, dict] = {}
    for case in cases:
        if case["returncode"] == 0:
            by_size.setdefault(str(case["size"]), {})[str(case["steps"])] = case["peak_rss_mb"]
    summary = {}
    copies: dict[str, dict] = {}
    for case in cases:
        if case.get("copy_control", {}).get("returncode") == 0:
            copies.setdefault(str(case["size"]), {})[str(case["steps"])] = case["copy_control"]["peak_rss_mb"]
    for size, peaks in by_size.items():
        entry = {"peak_rss_mb_by_steps": peaks}
        if size in copies:
            entry["copy_control_peak_rss_mb_by_steps"] = copies[size]
        short, long = str(min(steps)), str(max(steps))
        if short in peaks and long in peaks and short != long:
            ratio = peaks[long] / peaks[short]
            entry[f"ratio_{long}_over_{short}"] = round(ratio, 3)
            entry["target_ratio"] = TARGET_RATIO
            entry["meets_target"] = ratio <= TARGET_RATIO
        summary[size] = entry
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 500, 2000])
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between memory samples")
    parser.add_argument("--scratch", type=pathlib.Path, default=pathlib.Path("/tmp/oxe-augment-memory"))
    parser.add_argument("--keep", action="store_true", help="keep the datasets and outputs in --scratch")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--control-copy",
        action="store_true",
        help="also run configs/copy.yaml on each dataset: what the runner and TFDS's writer hold for the same bytes",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    cache: dict = {}
    cases: list[dict] = []
    payload = {
        "benchmark": "memory_episode_length",
        "recipe": "configs/demo.yaml (dataset masks, mix of procedural and re-lit clean plate, 2 variants, previews 4)",
        "runner": "runner.workers=1 (DirectRunner, one process)",
        "measure": f"peak of the summed RSS of the whole process tree, sampled every {args.poll} s (psutil)",
        "datasets": (
            f"{EPISODES} episodes x N steps, 2 cameras; {BASE_STEPS} rendered steps (pipelines.sample_data) "
            "repeated back and forth per step (frames, robot and object masks, state, action)"
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "note": "shared with other jobs: see each case's load averages",
        },
        "target": f"per size, peak({max(args.steps)} steps) <= {TARGET_RATIO} x peak({min(args.steps)} steps)",
    }

    def write() -> None:
        payload["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
        payload["cases"] = cases
        payload["summary"] = summarise(cases, args.steps)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n")

    for size in args.sizes:
        for steps in args.steps:
            print(f"{size} px, {steps} steps:", flush=True)
            dataset = dataset_for(args.scratch, size, steps, cache)
            output = args.scratch / f"out-{steps}-{size}"
            shutil.rmtree(output, ignore_errors=True)
            case = {"size": size, "steps": steps, "episodes": EPISODES, **run_case(dataset, output, args.poll)}
            cases.append(case)
            print("  " + json.dumps({k: case[k] for k in ("returncode", "peak_rss_mb", "wall_seconds")}), flush=True)
            if args.control_copy:
                shutil.rmtree(output, ignore_errors=True)
                copy = run_case(dataset, output, args.poll, "configs/copy.yaml")
                case["copy_control"] = {k: copy[k] for k in ("returncode", "peak_rss_mb", "wall_seconds")}
                print("  copy: " + json.dumps(case["copy_control"]), flush=True)
            write()
            if not args.keep:
                shutil.rmtree(output, ignore_errors=True)
                if steps != BASE_STEPS:
                    shutil.rmtree(dataset.parents[1], ignore_errors=True)
    print(json.dumps(payload["summary"], indent=2))
    print(f"wrote {args.out}")
    return 0 if all(c["returncode"] == 0 for c in cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
