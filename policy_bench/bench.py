"""The benchmark run: demonstrations -> RLDS -> ``oxe-augment run`` per recipe -> training -> rollouts.

:func:`run_bench` does everything for one :class:`Size`; ``oxe-augment policy-bench`` (see
``policy_bench.cli``) calls it. Arms train on the same demonstrations with the same
network, optimiser, steps and batch size, and are evaluated on the same rollout seeds:

* ``none``: the demonstrations as recorded;
* ``baseline``: the same, with random crop + colour jitter on every training batch;
* ``recipe:NAME``: the dataset ``oxe-augment run NAME`` wrote from the demonstrations;
* ``recipe:NAME+baseline``: that, with the baseline's augmentation on top;
* ``degraded-masks:NAME``: the first recipe run on a copy of the demonstrations whose
  stored masks were eroded or dilated and lost on some frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import pathlib
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import torch
import yaml

from policy_bench import augment, demos, policy, rollout, scenes
from policy_bench.tasks import TASKS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclasses.dataclass(frozen=True)
class Size:
    """How big a run is."""

    name: str
    demos_per_task: int
    seeds: int
    rollouts: int  # per (arm, seed, condition); they alternate between the tasks
    train_steps: int
    batch: int
    conditions: tuple[str, ...] | None  # None: every condition
    workers: int
    image_size: int = 64


SIZES = {
    # Checks the machinery, not the effect: everything runs, on a few episodes.
    "quick": Size(
        "quick",
        demos_per_task=2,
        seeds=1,
        rollouts=2,
        train_steps=20,
        batch=16,
        conditions=("train", "backdrop", "all"),
        workers=1,
    ),
    "standard": Size("standard", demos_per_task=20, seeds=3, rollouts=20, train_steps=1500, batch=64, conditions=None, workers=2),
    "large": Size("large", demos_per_task=50, seeds=5, rollouts=50, train_steps=4000, batch=64, conditions=None, workers=4),
}


class BenchError(ValueError):
    """Bad input to the benchmark (a recipe, a backgrounds folder); exit status 2."""


def eval_background_files(folder: str | None) -> list[str]:
    """The photographs in ``--eval-backgrounds`` (sorted); a clear error if there are none."""
    if folder is None:
        return []
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise BenchError(f"--eval-backgrounds: {folder} is not a folder")
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BenchError(f"--eval-backgrounds: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def check_no_leak(recipes: list[pathlib.Path], eval_files: list[str]) -> None:
    """Refuse test photographs that a recipe could draw as a training background.

    A photograph must not lie in (or be byte-identical to a file in) any recipe's image
    library, so the test backdrop cannot appear in the augmented training data.
    """
    if not eval_files:
        return
    digests = {hashlib.sha256(pathlib.Path(f).read_bytes()).hexdigest(): f for f in eval_files}
    for recipe in recipes:
        library = augment.recipe_image_library(recipe)
        if not library:
            continue
        # A glob's folder is the part before its first wildcard.
        base = pathlib.Path(library.split("*")[0].split("?")[0].split("[")[0])
        base = base if base.is_dir() else base.parent
        for f in eval_files:
            if base.resolve() in pathlib.Path(f).resolve().parents:
                raise BenchError(
                    f"--eval-backgrounds: {f} lies inside {recipe}'s image library {library}; the test scene would leak into training"
                )
        if base.is_dir():
            for p in base.rglob("*"):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                    digest = hashlib.sha256(p.read_bytes()).hexdigest()
                    if digest in digests:
                        raise BenchError(
                            f"--eval-backgrounds: {digests[digest]} is the same image as {p} in {recipe}'s image library"
                        )


def _train_and_evaluate(job: dict) -> list[dict]:
    """One (arm, seed): train, then roll out in every condition. Runs in a worker process."""
    torch.set_num_threads(1)
    started = time.monotonic()
    data = policy.TrainingData.of(demos.read_dataset(job["dataset"]))
    # `large` trains on a GPU when there is one; the other sizes stay on the CPU, like the tests.
    device = "cuda" if job["gpu"] and torch.cuda.is_available() else "cpu"
    model = policy.train(data, seed=job["seed"], steps=job["steps"], batch=job["batch"], augment=job["baseline"], device=device)
    trained = time.monotonic()
    records = []
    for condition, scene in job["conditions"].items():
        for r in rollout.evaluate(model, scene, job["rollouts"], job["tasks"], job["size"], job["cache"]):
            records.append({"arm": job["arm"], "seed": job["seed"], "condition": condition, **r})
    timing = {"arm": job["arm"], "seed": job["seed"], "train_s": trained - started, "rollout_s": time.monotonic() - trained}
    return [{"timing": timing}, *records]


def run_bench(
    size: Size,
    out: pathlib.Path,
    recipes: list[pathlib.Path] | None = None,
    eval_backgrounds: str | None = None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Run the benchmark into ``out``; returns the results (also written to ``out/results.json``).

    ``progress`` gets one line per stage and per trained policy; the table is in ``out/summary.md``.
    """
    from policy_bench import report

    recipes = [pathlib.Path(r) for r in (recipes or [augment.DEFAULT_RECIPE])]
    for recipe in recipes:
        if not recipe.is_file():
            raise BenchError(f"--recipe: {recipe} does not exist")
    try:
        names = [augment.recipe_name(r) for r in recipes]
    except (OSError, yaml.YAMLError) as e:
        raise BenchError(f"--recipe: cannot read a recipe: {e}") from e
    if len(set(names)) < len(names):
        raise BenchError(f"--recipe: two recipes share a name ({', '.join(names)}); arms are named after recipes")
    eval_files = eval_background_files(eval_backgrounds)
    check_no_leak(recipes, eval_files)
    conditions = scenes.test_conditions(eval_files)
    if size.conditions:
        conditions = {name: conditions[name] for name in size.conditions}
    tasks = list(TASKS)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    cache = str(work / "textures")
    timings: dict[str, float] = {}
    start = time.monotonic()

    progress(f"policy-bench {size.name}: tasks {', '.join(tasks)}; conditions {', '.join(conditions)}")
    t = time.monotonic()
    recorded = demos.record_demos(tasks, size.demos_per_task, size.image_size, seed=0, cache_dir=cache, progress=progress)
    source = demos.write_dataset(recorded, work / "source" / "demos" / demos.DATASET_NAME / demos.DATASET_VERSION)
    degraded = demos.write_dataset(
        demos.degrade_masks(recorded, seed=1), work / "source" / "degraded" / demos.DATASET_NAME / demos.DATASET_VERSION
    )
    timings["demos_s"] = time.monotonic() - t
    progress(f"  wrote {len(recorded)} demonstrations to {source} ({timings['demos_s']:.0f} s)")

    # Each recipe augments the demonstrations; the first also augments the degraded copy.
    t = time.monotonic()
    datasets = {"none": source, "baseline": source}
    runs = [(augment.recipe_name(r), r, source, f"recipe-{i}") for i, r in enumerate(recipes)]
    runs.append((augment.recipe_name(recipes[0]), recipes[0], degraded, "degraded"))
    progress(f"  oxe-augment run: {len(runs)} runs in parallel ({', '.join(str(r[1].name) for r in runs)}) ...")
    augmented = augment.run_recipes(
        [(recipe, input_dir, work / "augmented" / folder) for _, recipe, input_dir, folder in runs], work
    )
    for (name, _, _, folder), dataset in zip(runs, augmented):
        if folder == "degraded":
            datasets[f"degraded-masks:{name}"] = dataset
        else:
            datasets[f"recipe:{name}"] = dataset
            datasets[f"recipe:{name}+baseline"] = dataset
    timings["augment_s"] = time.monotonic() - t
    progress(f"  augmented ({timings['augment_s']:.0f} s)")

    arms = list(datasets)
    jobs = [
        {
            "arm": arm,
            "seed": seed,
            "dataset": str(datasets[arm]),
            "baseline": arm == "baseline" or arm.endswith("+baseline"),
            "steps": size.train_steps,
            "batch": size.batch,
            "conditions": conditions,
            "rollouts": size.rollouts,
            "tasks": tasks,
            "size": size.image_size,
            "cache": cache,
            "gpu": size.name == "large",
        }
        for seed in range(size.seeds)
        for arm in arms
    ]
    progress(f"  training and rolling out {len(jobs)} policies ({len(arms)} arms x {size.seeds} seeds), {size.workers} worker(s)")
    t = time.monotonic()
    records, job_timings = [], []
    # A worker that dies (a native crash) fails the run instead of leaving it waiting forever.
    executor = ProcessPoolExecutor(size.workers, mp_context=multiprocessing.get_context("spawn")) if size.workers > 1 else None
    if executor is not None:
        results = (future.result() for future in as_completed([executor.submit(_train_and_evaluate, job) for job in jobs]))
    else:
        results = map(_train_and_evaluate, jobs)
    try:
        for done, result in enumerate(results, start=1):
            timing, rows = result[0]["timing"], result[1:]
            job_timings.append(timing)
            records.extend(rows)
            elapsed = time.monotonic() - t
            wins = sum(r["success"] for r in rows)
            progress(
                f"  [{done}/{len(jobs)}] {timing['arm']} seed {timing['seed']}: {wins}/{len(rows)} rollouts succeeded "
                f"(train {timing['train_s']:.0f} s, rollouts {timing['rollout_s']:.0f} s); ETA {elapsed / done * (len(jobs) - done):.0f} s"
            )
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    timings["policies_s"] = time.monotonic() - t
    timings["total_s"] = time.monotonic() - start

    results = {
        "size": dataclasses.asdict(size),
        "tasks": tasks,
        "arms": arms,
        "conditions": list(conditions),
        "recipes": [str(r) for r in recipes],
        "eval_backgrounds": eval_files,
        "scenes": {name: dataclasses.asdict(scene) for name, scene in conditions.items()},
        "timings": timings,
        "job_timings": job_timings,
        "rollouts": sorted(
            records, key=lambda r: (arms.index(r["arm"]), r["seed"], list(conditions).index(r["condition"]), r["rollout"])
        ),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    report.write_summary(results, out / "summary.md")
    report.write_plot(results, out / "results.png")
    progress(f"wrote {out / 'results.json'}, {out / 'summary.md'}, {out / 'results.png'} ({timings['total_s']:.0f} s)")
    return results
