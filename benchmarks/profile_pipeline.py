"""Where the time goes in one run: cProfile of a recipe run in-process, grouped by stage.

    .venv/bin/python benchmarks/profile_pipeline.py copy  [--input DIR] [--episodes N]
    .venv/bin/python benchmarks/profile_pipeline.py demo  [--input DIR] [--episodes N] [--background procedural|recipe]

``demo`` is the recipe ``benchmarks/augment_throughput.py`` measures: ``configs/demo.yaml``
with its background section replaced by ``source: procedural`` (``--background recipe``:
the recipe's own mix with the clean plate); its input is that benchmark's sample data
(16 episodes x 24 steps x 2 cameras at 256 px) where it has been rendered.

The run uses the in-process DirectRunner (one worker), so every function the workers run
is seen by the profiler. Self time (``tottime``) of each function is attributed to the
first matching group below, by module path and function name; the rest is "other".
Results go to ``benchmarks/results/profile_<recipe>.json`` (seconds per group, per
episode, and the 25 most expensive functions).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import pipelines  # noqa: E402,F401 - triton before TensorFlow (pipelines/__init__.py)

# (what, "path suffix:function" or several) whose cumulative time is that part of the work.
# The per-episode parts run inside Beam's run; "Beam and TFDS around them" is the rest of
# it. Rows starting with a space are part of the row above them (not added again).
PARTS = [
    ("start-up (imports, recipe, plan)", None),
    ("read shards", "pipelines/tfrecords.py:read_shard"),
    ("parse records (TFDS)", "pipelines/rlds_io.py:decode_episode"),
    ("check frames", "pipelines/frame_check.py:check_episode_images"),
    ("masks (segment stage)", "pipelines/handlers.py:_segment"),
    (
        "background (background stage: plans, textures)",
        ("pipelines/handlers.py:_requests", "pipelines/handlers.py:generate_batch"),
    ),
    ("compose stage", "pipelines/stages.py:_outputs"),
    ("  of which: decode frames", "segmentation/frames.py:windows"),
    ("  of which: decode label maps (robot, objects)", "pipelines/stages.py:_label_windows"),
    ("  of which: masks to alpha (feathered edge)", "augment/composite.py:clip_alpha"),
    ("  of which: background transforms", "augment/composite.py:prepare_background"),
    ("  of which: composite", "augment/composite.py:composite_clip"),
    ("  of which: encode frames", "segmentation/frames.py:encode_frames"),
    ("  of which: mask coverage", "pipelines/stages.py:add_window"),
    ("  of which: previews (first 4 episodes)", "pipelines/stages.py:_write_previews"),
    ("  of which: output examples", "pipelines/episode.py:output_example"),
    ("across stages: every image decoded", "segmentation/frames.py:decode_image"),
    ("across stages: plans (seeds, transforms drawn; background and compose)", "pipelines/handlers.py:episode_plans"),
    ("TFDS encode_example", "tensorflow_datasets/core/features/features_dict.py:encode_example"),
    ("serialize tf.train.Example", "pipelines/rlds_io.py:serialize_example"),
    ("write shards (TFDS writer)", "tensorflow_datasets/core/writer.py:_write_final_shard"),
    ("copy (provenance; copy recipe)", "pipelines/episode.py:output_example"),
    ("records and progress files", "pipelines/records.py:process"),
    ("  of which: files written per bundle", "pipelines/records.py:finish_bundle"),
    ("Beam DoFn signature inspection", "inspect.py:signature"),
    ("  of which: per-bundle DoFn specs", "apache_beam/transforms/userstate.py:get_dofn_specs"),
]
RUN = "apache_beam/runners/direct/direct_runner.py:run_pipeline"
REPORT = "report (report.json, report.html with the previews; after the run)"

# Where the time goes, in a few words: each line sums the PARTS named (per episode).
TABLE = {
    "read and parse (shards, TFDS, frame check)": ["read shards", "parse records (TFDS)", "check frames"],
    "decode (camera frames; compose)": ["  of which: decode frames"],
    "masks (stored label maps: segment stage, decoded per window, alpha, coverage)": [
        "masks (segment stage)",
        "  of which: decode label maps (robot, objects)",
        "  of which: masks to alpha (feathered edge)",
        "  of which: mask coverage",
    ],
    "background (plans and textures, transforms)": [
        "background (background stage: plans, textures)",
        "  of which: background transforms",
    ],
    "composite": ["  of which: composite"],
    "encode (JPEG)": ["  of which: encode frames"],
    "previews (first 4 episodes: compose stage and report.html)": ["  of which: previews (first 4 episodes)", REPORT],
    "serialize (TFDS encode_example, tf.train.Example)": ["TFDS encode_example", "serialize tf.train.Example"],
    "write (shards, records)": ["write shards (TFDS writer)", "records and progress files"],
    "Beam (and TFDS around the stages)": ["Beam and TFDS around them"],
    "start-up (imports, recipe, plan)": ["start-up (imports, recipe, plan)"],
}
# benchmarks/augment_throughput.py's sample data (16 episodes x 24 steps x 2 cameras at 256 px), where rendered.
BENCH_SAMPLE = "/tmp/oxe-augment-bench/sample-16x24-256/oxe_augment_sample/1.0.0"


def _cumulative(stats: dict, key) -> float:
    if isinstance(key, tuple):
        return sum(_cumulative(stats, k) for k in key)
    path_suffix, function = key.rsplit(":", 1)
    return sum(cum for (path, _, name), (_, _, _, cum, _) in stats.items() if name == function and path.endswith(path_suffix))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=["copy", "demo"])
    parser.add_argument("--input", default=None, help="dataset folder (default: Bridge for copy, sample data for demo)")
    parser.add_argument("--episodes", type=int, default=None, help="input.max_episodes")
    parser.add_argument("--floor", action="store_true", help="also profile ../shared/bench/copy_floor.py on the same input")
    parser.add_argument(
        "--background",
        choices=["procedural", "recipe"],
        default="procedural",
        help="demo: procedural backgrounds (as benchmarks/augment_throughput.py) or the recipe's own",
    )
    args = parser.parse_args()
    from pipelines.cli import main as cli

    source = args.input or (
        os.path.join(os.path.dirname(REPO), "shared", "data", "bridge_dataset", "1.0.0")
        if args.recipe == "copy"
        else next(
            d for d in (BENCH_SAMPLE, os.path.join(REPO, "data", "sample", "oxe_augment_sample", "1.0.0")) if os.path.isdir(d)
        )
    )
    out = tempfile.mkdtemp(prefix="oxe-profile-")
    recipe = f"configs/{args.recipe}.yaml"
    if args.recipe == "demo" and args.background == "procedural":
        from augment_throughput import procedural_demo_recipe

        recipe = os.path.join(out, "demo_procedural.yaml")
        procedural_demo_recipe(recipe)
    argv = ["run", recipe, "--set", f"input.dir={source}", "--set", f"output.dir={os.path.join(out, 'run')}"]
    if args.episodes:
        argv += ["--set", f"input.max_episodes={args.episodes}"]
    argv += ["--", "--runner=DirectRunner", "--direct_running_mode=in_memory"]

    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    status = cli(argv)
    profile.disable()
    wall = time.perf_counter() - start
    with open(os.path.join(out, "run", "report.json"), encoding="utf-8") as f:
        report = json.load(f)

    stats = pstats.Stats(profile).stats
    run = _cumulative(stats, RUN)
    parts = {name: _cumulative(stats, key) for name, key in PARTS if key}
    if args.recipe != "copy":
        del parts["copy (provenance; copy recipe)"]  # the same function as the compose stage's output examples
    parts[REPORT] = _cumulative(stats, "pipelines/report.py:write_report")
    parts["start-up (imports, recipe, plan)"] = _cumulative(stats, "pipelines/cli.py:main") - run - parts[REPORT]
    per_episode = sum(
        v
        for k, v in parts.items()
        if not k.startswith((" ", "across stages"))
        and k not in ("start-up (imports, recipe, plan)", REPORT, "Beam DoFn signature inspection")
    )
    parts["Beam and TFDS around them"] = run - per_episode
    episodes = report["episodes_in"] or 1
    table = {name: round(1000 * sum(parts.get(part, 0.0) for part in group) / episodes, 1) for name, group in TABLE.items()}
    result = {
        "recipe": args.recipe if args.recipe == "copy" else f"demo, background: {args.background}",
        "input": source,
        "exit_status": status,
        "episodes": report["episodes_in"],
        "frames": report["frames"],
        "wall_seconds": round(wall, 2),
        "beam_run_seconds": round(run, 2),
        "seconds": {k: round(v, 3) for k, v in parts.items()},
        "milliseconds_per_episode": {k: round(1000 * v / episodes, 2) for k, v in parts.items()},
        "table_milliseconds_per_episode": table,
        "load_average": os.getloadavg(),
        "note": "cProfile cumulative times (it adds overhead to every Python call), one worker in-process; "
        "'Beam and TFDS around them' is the Beam run less the per-episode parts above it (signature "
        "inspection is inside it); compare parts with each other",
    }
    if args.floor:
        result["floor_milliseconds_per_episode"] = _profile_floor(source, episodes)
    os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
    path = os.path.join(REPO, "benchmarks", "results", f"profile_{args.recipe}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result["milliseconds_per_episode"], indent=2))
    print(json.dumps(table, indent=2))
    print(f"written to {path}")
    return 0


# The floor's functions for the same parts (copy_floor.py: ReadAllFromTFRecord, TFDS parse, TFDS writer).
FLOOR_PARTS = [
    ("read shards", "apache_beam/io/tfrecordio.py:read_records"),
    ("parse records (TFDS)", "tensorflow_datasets/core/features/top_level_feature.py:deserialize_example_np"),
    ("TFDS encode_example", "tensorflow_datasets/core/features/features_dict.py:encode_example"),
    ("serialize tf.train.Example", "tensorflow_datasets/core/example_serializer.py:serialize_example"),
    ("write shards (TFDS writer)", "tensorflow_datasets/core/writer.py:_write_final_shard"),
    ("Beam DoFn signature inspection", "inspect.py:signature"),
]


def _profile_floor(source: str, episodes: int) -> dict[str, float]:
    """The same parts of ``copy_floor.py`` run in-process (milliseconds per episode)."""
    import runpy

    floor = os.path.join(os.path.dirname(REPO), "shared", "bench", "copy_floor.py")
    out = tempfile.mkdtemp(prefix="oxe-profile-floor-")
    argv = sys.argv
    sys.argv = [floor, source, out, "--runner=DirectRunner", "--direct_running_mode=in_memory"]
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    try:
        runpy.run_path(floor, run_name="__main__")
    finally:
        profile.disable()
        sys.argv = argv
    wall = time.perf_counter() - start
    stats = pstats.Stats(profile).stats
    run = _cumulative(stats, RUN)
    parts = {name: _cumulative(stats, key) for name, key in FLOOR_PARTS}
    per_episode = sum(v for k, v in parts.items() if k != "Beam DoFn signature inspection")
    parts["start-up (imports, builder)"] = wall - run
    parts["Beam and TFDS around them"] = run - per_episode
    return {k: round(1000 * v / episodes, 2) for k, v in parts.items()}


if __name__ == "__main__":
    sys.exit(main())
