"""``oxe-augment policy-bench``: the command line of the benchmark (see docs/policy_bench.md)."""

from __future__ import annotations

import argparse
import pathlib
import sys

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
    """Handler: run the benchmark; exit 2 on bad input, 1 if a recipe run failed."""
    from policy_bench.augment import AugmentError
    from policy_bench.bench import SIZES, BenchError, run_bench

    def progress(line: str) -> None:
        print(line, flush=True)

    try:
        run_bench(
            SIZES[args.size], pathlib.Path(args.out), [pathlib.Path(r) for r in args.recipe], args.eval_backgrounds, progress
        )
    except BenchError as e:
        print(f"policy-bench: {e}", file=sys.stderr)
        return 2
    except AugmentError as e:
        print(f"policy-bench: {e}", file=sys.stderr)
        return 1
    return 0
