"""Where the time goes in one run: cProfile of a recipe run in-process, grouped by stage.

    .venv/bin/python benchmarks/profile_pipeline.py copy  [--input DIR] [--episodes N]
    .venv/bin/python benchmarks/profile_pipeline.py demo  [--input DIR] [--episodes N]

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

# (what, "path suffix:function") whose cumulative time is that part of the work. The
# per-episode parts run inside Beam's run; "Beam and TFDS around them" is the rest of it.
PARTS = [
    ("start-up (imports, recipe, plan)", None),
    ("read shards", "pipelines/tfrecords.py:read_shard"),
    ("parse records (TFDS)", "pipelines/rlds_io.py:decode_episode"),
    ("check frames", "pipelines/frame_check.py:check_episode_images"),
    ("draw backgrounds", "pipelines/handlers.py:run_inference"),
    ("compose and encode (incl. decode)", "pipelines/stages.py:_outputs"),
    ("  of which: decode images", "pipelines/episode.py:decode_image"),
    ("  of which: encode images", "pipelines/episode.py:encode_image"),
    ("  of which: composite", "augment/composite.py:composite_clip"),
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


def _cumulative(stats: dict, key: str) -> float:
    path_suffix, function = key.rsplit(":", 1)
    return sum(cum for (path, _, name), (_, _, _, cum, _) in stats.items() if name == function and path.endswith(path_suffix))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=["copy", "demo"])
    parser.add_argument("--input", default=None, help="dataset folder (default: Bridge for copy, sample data for demo)")
    parser.add_argument("--episodes", type=int, default=None, help="input.max_episodes")
    parser.add_argument("--floor", action="store_true", help="also profile ../shared/bench/copy_floor.py on the same input")
    args = parser.parse_args()
    from pipelines.cli import main as cli

    source = args.input or (
        os.path.join(os.path.dirname(REPO), "shared", "data", "bridge_dataset", "1.0.0")
        if args.recipe == "copy"
        else os.path.join(REPO, "data", "sample", "oxe_augment_sample", "1.0.0")
    )
    out = tempfile.mkdtemp(prefix="oxe-profile-")
    argv = ["run", f"configs/{args.recipe}.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}"]
    if args.episodes:
        argv += ["--set", f"input.max_episodes={args.episodes}"]
    argv += ["--", "--runner=DirectRunner", "--direct_running_mode=in_memory"]

    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    status = cli(argv)
    profile.disable()
    wall = time.perf_counter() - start
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)

    stats = pstats.Stats(profile).stats
    run = _cumulative(stats, RUN)
    parts = {name: _cumulative(stats, key) for name, key in PARTS if key}
    parts["start-up (imports, recipe, plan)"] = _cumulative(stats, "pipelines/cli.py:main") - run
    per_episode = sum(
        v
        for k, v in parts.items()
        if not k.startswith(" ") and k not in ("start-up (imports, recipe, plan)", "Beam DoFn signature inspection")
    )
    parts["Beam and TFDS around them"] = run - per_episode
    episodes = report["episodes_in"] or 1
    result = {
        "recipe": args.recipe,
        "input": source,
        "exit_status": status,
        "episodes": report["episodes_in"],
        "frames": report["frames"],
        "wall_seconds": round(wall, 2),
        "beam_run_seconds": round(run, 2),
        "seconds": {k: round(v, 3) for k, v in parts.items()},
        "milliseconds_per_episode": {k: round(1000 * v / episodes, 2) for k, v in parts.items()},
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
