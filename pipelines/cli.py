"""The ``oxe-augment`` command line.

    oxe-augment run RECIPE [--set key=value ...] [-- beam options]
    oxe-augment inspect DATASET
    oxe-augment sample-data OUT [--episodes N ...]
    oxe-augment eval --pred DATASET --gt DATASET

Exit status: 0 success, 1 some episodes failed (or the job failed), 2 bad recipe or input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback

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
    for name in ("pipelines.sample_data", "pipelines.evaluate", "pipelines.weights", "pipelines.finetune", "pipelines.merge"):
        importlib.import_module(name).add_parser(subparsers)
    importlib.import_module("policy_bench.cli").add_parser(subparsers)  # the closed-loop benchmark, docs/policy_bench.md
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
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set output.dir=/tmp/out (repeatable; value parsed as YAML)",
    )
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
        print(_recipe_error(args.recipe, e), file=sys.stderr)
        return EXIT_CONFIG
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if args.check:
        print(f"{args.recipe}: ok ({', '.join(plan.splits)}; cameras {', '.join(plan.cameras)})")
        return EXIT_OK
    if plan.finished_part:
        # Array jobs rerun every part after a crash; the finished ones have nothing to do.
        print(f"part {plan.finished_part} already finished in {plan.output_root}; skipped (delete that folder to run it again)")
        return EXIT_OK
    print(f"running {recipe.name}: {plan.source.dir} -> {plan.dataset_dir}", flush=True)
    from pipelines.console import Console, quiet_native_output
    from pipelines.signals import interruptible

    # Without -v, what TensorFlow, Beam's workers and TFDS print goes to a log file; the
    # terminal gets the tool's own lines and one progress line.
    log_path = os.path.join(tempfile.gettempdir(), f"oxe-augment-run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    native = contextlib.nullcontext(Console()) if args.verbose else quiet_native_output(log_path)
    error = None
    with native as console:
        pipeline.console = console
        try:
            # SIGTERM (a scheduler, a preempted node) and Ctrl-C leave through the pipeline's
            # clean-up, so the scratch folder goes and the previous output stays as it was.
            with interruptible() as stop:
                report = pipeline(plan)
        except RecipeError as e:
            error = (EXIT_CONFIG, _recipe_error(args.recipe, e))
        except Exception as e:  # the job itself failed (fail_fast, runner error)
            traceback.print_exc()  # into the log (or the terminal with -v)
            first_line = (str(e).strip().splitlines() or [""])[0][:500]
            hint = f"the full trace is in {log_path}" if not args.verbose else "the trace is above"
            error = (
                EXIT_FAILED,
                f"error: the job failed: {type(e).__name__}: {first_line}\n"
                f"nothing was published; the previous contents of {plan.output_root} are unchanged; {hint}",
            )
    if error:
        print(error[1], file=sys.stderr)
        return error[0]
    if stop:
        print(f"error: {stop.message}; the previous contents of {plan.output_root} are unchanged", file=sys.stderr)
        return stop.exit_status
    if not args.verbose:
        with contextlib.suppress(OSError):
            os.remove(log_path)
    from pipelines import filesystems

    print(report.summary())
    if not pipeline.published:
        print(f"nothing was written: the previous contents of {plan.output_root} are unchanged; this run's report is beside them")
    print(f"report: {filesystems.join(pipeline.report_dir, 'report.json')}")
    previews = filesystems.join(pipeline.report_dir, "previews")
    if filesystems.folder_exists(previews):
        print(f"previews: {previews}")
    return EXIT_OK if report.ok and pipeline.published else EXIT_FAILED


def _recipe_error(recipe_path: str, error: Exception) -> str:
    """``error: RECIPE: message``, the message cut to a readable length (it may quote a stranger's value)."""
    message = str(error)
    if not message.startswith(recipe_path):
        message = f"{recipe_path}: {message}"
    if len(message) > _MAX_MESSAGE:
        message = f"{message[:_MAX_MESSAGE]}... ({len(message)} characters)"
    return f"error: {message}"


_MAX_MESSAGE = 2000


# ---------------------------------------------------------------------------------------
# inspect


def _add_inspect(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="describe an RLDS dataset",
        description="Splits, episode counts and shard files, episode-level fields, cameras (and why other "
        "image-like fields are not cameras), and the feature tree.",
    )
    parser.add_argument("dataset", help="TFDS version folder, or a dataset folder holding versions (local or gs://)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=inspect_command)


def inspect_command(args) -> int:
    from pipelines.rlds_io import DatasetError, open_dataset

    try:
        source = open_dataset(args.dataset)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    cameras = {f.name: f for f in source.observation if f.camera}
    # Image-like fields that are not cameras, with the reason; scalars and vectors are
    # plainly not images and only appear in the feature tree.
    others = {f.name: f for f in source.observation if not f.camera and f.reason != "not an image"}
    description = {
        "dataset": f"{source.name}/{source.version}",
        "path": source.dir,
        "splits": {
            s: {
                "episodes": source.episode_count(s),
                "shards": len(source.shards[s]),
                "missing_shards": len(source.missing_shards.get(s, [])),
            }
            for s in source.shards
        },
        "episode_fields": source.episode_fields,
        "cameras": {
            name: {"shape": list(f.shape), "format": source.camera_format(name), "feature": f.kind} for name, f in cameras.items()
        },
        "not_cameras": {name: f.reason for name, f in others.items()},
    }
    if args.json:
        description["features"] = source.features.to_json()
        print(json.dumps(description, indent=2))
        return EXIT_OK
    print(f"{description['dataset']}  ({source.dir})")
    for split, info in description["splits"].items():
        missing = f", {info['missing_shards']} missing" if info["missing_shards"] else ""
        print(f"  split {split}: {info['episodes']} episodes in {info['shards']} shard(s){missing}")
    print(f"  episode-level fields: {', '.join(description['episode_fields']) or '(none besides steps)'}")
    for camera, info in description["cameras"].items():
        shape = "x".join("?" if d is None else str(d) for d in info["shape"])
        print(f"  camera {camera}: {shape} {info['format']}")
    if not cameras:
        print("  no cameras: no 3-channel uint8 Image or (H, W, 3) uint8 Tensor under steps/observation")
    for name, reason in description["not_cameras"].items():
        print(f"  not a camera: {name}: {reason}")
    print("features:")
    print("  " + repr(source.features).replace("\n", "\n  "))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
