"""``oxe-augment policy-bench``: the command line of the benchmark (see docs/policy_bench.md)."""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
import tempfile

#: policy_bench.bench.SIZES's keys, named here so that building the parser does not import torch.
SIZE_NAMES = ("quick", "standard", "large")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``policy-bench`` subcommand (imports nothing heavy: every oxe-augment command builds this parser)."""
    parser = subparsers.add_parser(
        "policy-bench",
        help="train small policies on augmented vs plain demonstrations and measure success in unseen scenes",
        description=(
            "Record scripted demonstrations of two pybullet tabletop tasks, write them as RLDS with masks, "
            "augment them with `oxe-augment run` of each recipe, train a small behaviour-cloning policy per arm "
            "(none, baseline, recipe, recipe+baseline, degraded-masks) and seed, and roll it out in the training "
            "scene and in unseen test scenes. Writes results.json, summary.md and results.png to --out."
        ),
    )
    parser.add_argument("--size", choices=SIZE_NAMES, default="quick", help="quick (checks the machinery), standard, large")
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="R",
        help="recipe YAML to evaluate (repeatable; default configs/textures.yaml)",
    )
    parser.add_argument("--eval-backgrounds", metavar="DIR", help="your own photographs, used as the test backdrop")
    parser.add_argument("--out", default="out/policy_bench", help="output folder (default out/policy_bench)")
    parser.set_defaults(handler=run_policy_bench)


def run_policy_bench(args: argparse.Namespace) -> int:
    """Handler: run the benchmark; exit 2 on bad input, 1 if a recipe run failed.

    Progress lines go to standard error, the summary table to standard output at the end.
    Without -v, what TensorFlow, pybullet and the recipe runs print natively goes to a log
    file, as with ``oxe-augment run``.
    """
    from pipelines.console import Console, quiet_native_output
    from policy_bench.augment import AugmentError
    from policy_bench.bench import SIZES, BenchError, run_bench

    log_path = os.path.join(tempfile.gettempdir(), f"oxe-augment-policy-bench-{os.getpid()}.log")
    verbose = getattr(args, "verbose", False)
    native = contextlib.nullcontext(Console()) if verbose else quiet_native_output(log_path)
    out = pathlib.Path(args.out)
    error = None
    with native as console:
        try:
            run_bench(SIZES[args.size], out, [pathlib.Path(r) for r in args.recipe], args.eval_backgrounds, console.line)
        except BenchError as e:
            error = (2, f"policy-bench: {e}")
        except AugmentError as e:
            error = (1, f"policy-bench: {e}")
    if error:
        print(error[1], file=sys.stderr)
        return error[0]
    with contextlib.suppress(OSError):
        os.remove(log_path)
    print((out / "summary.md").read_text())
    return 0
