"""The ``oxe-augment`` command line.

    oxe-augment run RECIPE [--set key=value ...] [-- beam options]
    oxe-augment inspect DATASET
    oxe-augment sample-data OUT [--episodes N ...]
    oxe-augment eval --pred DATASET --gt DATASET

Exit status: 0 success, 1 some episodes failed (or the job failed), 2 bad recipe or input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``oxe-augment`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # albumentations asks PyPI for a newer version on import; a data job must not (and
    # Beam's local workers inherit this environment).
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    # Everything after a bare "--" belongs to Beam.
    beam_args: list[str] = []
    if "--" in argv:
        split_at = argv.index("--")
        argv, beam_args = argv[:split_at], argv[split_at + 1 :]
    # Logging is set before the parser imports Beam, which logs on import.
    _configure_logging(verbose=any(a in ("-v", "--verbose") for a in argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    args.beam_args = beam_args
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_CONFIG
    return args.handler(args)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="oxe-augment",
        description="Augment RLDS (Open X-Embodiment) datasets: segment the robot, put new scenes behind it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (Beam's own logs too)")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_run(subparsers)
    _add_inspect(subparsers)
    # Commands that live beside the code they run add their own parsers.
    for name in ("pipelines.sample_data", "pipelines.evaluate"):
        importlib.import_module(name).add_parser(subparsers)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("oxe_augment").setLevel(logging.INFO)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        for noisy in ("apache_beam", "absl", "tensorflow_datasets", "root"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


# ---------------------------------------------------------------------------------------
# run


def _add_run(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a recipe",
        description="Run a recipe (YAML in configs/). Options after a bare -- go to Beam, e.g. "
        "-- --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp",
    )
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set output.dir=/tmp/out (repeatable; value parsed as YAML)")
    parser.add_argument("--check", action="store_true", help="validate the recipe and inputs, then stop")
    parser.set_defaults(handler=run_command)


def run_command(args) -> int:
    from pipelines.pipeline import AugmentPipeline
    from pipelines.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe, args.overrides)
        pipeline = AugmentPipeline(recipe, args.beam_args, verbose=args.verbose)
        plan = pipeline.plan()  # every config error surfaces here, before Beam starts
    except RecipeError as e:
        print(f"error: {args.recipe}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        print(f"{args.recipe}: ok ({', '.join(plan.splits)}; cameras {', '.join(plan.cameras)})")
        return EXIT_OK
    print(f"running {recipe.name}: {plan.source.dir} -> {plan.dataset_dir}", flush=True)
    try:
        report = pipeline()
    except RecipeError as e:
        print(f"error: {args.recipe}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as e:  # the job itself failed (fail_fast, runner error)
        print(f"error: the job failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    from pipelines import filesystems

    print(report.summary())
    print(f"report: {filesystems.join(plan.output_root, 'report.json')}")
    previews = filesystems.join(plan.output_root, "previews")
    if filesystems.folder_exists(previews):
        print(f"previews: {previews}")
    return EXIT_OK if report.ok else EXIT_FAILED


# ---------------------------------------------------------------------------------------
# inspect


def _add_inspect(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help="describe an RLDS dataset",
                                   description="Splits, episode counts, cameras with image sizes, and the feature tree.")
    parser.add_argument("dataset", help="TFDS version folder (local or gs://)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=inspect_command)


def inspect_command(args) -> int:
    from pipelines.rlds_io import DatasetError, open_dataset

    try:
        source = open_dataset(args.dataset)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    description = {
        "dataset": f"{source.name}/{source.version}",
        "path": source.dir,
        "splits": {s: {"episodes": source.episode_count(s), "shards": len(source.shards[s])} for s in source.shards},
        "cameras": {c: list(source.camera_shape(c)) for c in source.cameras},
    }
    if args.json:
        description["features"] = source.features.to_json()
        print(json.dumps(description, indent=2))
        return EXIT_OK
    print(f"{description['dataset']}  ({source.dir})")
    for split, info in description["splits"].items():
        print(f"  split {split}: {info['episodes']} episodes in {info['shards']} shard(s)")
    for camera, shape in description["cameras"].items():
        print(f"  camera {camera}: {shape[0]}x{shape[1]}x{shape[2]}")
    print("features:")
    print("  " + repr(source.features).replace("\n", "\n  "))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
