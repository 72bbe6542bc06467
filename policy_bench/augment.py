"""Augment the demonstrations with a real ``oxe-augment run``, as a user would.

The recipe runs in a subprocess through the command line; only ``input.dir``,
``output.dir`` and a few output keys are overridden (``--set``), the rest is the recipe
as written. The augmented dataset is found under ``<output.dir>/<name>/<version>``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

#: The recipe every arm that augments uses unless ``--recipe`` names others.
DEFAULT_RECIPE = pathlib.Path(__file__).resolve().parents[1] / "configs" / "textures.yaml"


class AugmentError(RuntimeError):
    """``oxe-augment run`` failed; the message holds its exit status and last lines."""


def run_recipes(runs: list[tuple[str | pathlib.Path, pathlib.Path, pathlib.Path]], log_dir: pathlib.Path) -> list[pathlib.Path]:
    """Run each (recipe, input dir, output dir) at once, in parallel; return the augmented TFDS version folders.

    Logs go to ``log_dir/<output folder name>.log``; a failed run raises :class:`AugmentError`.
    """
    started = []
    for recipe, input_dir, output_dir in runs:
        log = log_dir / f"{output_dir.name}.log"
        command = [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            str(recipe),
            "--set",
            f"input.dir={input_dir}",
            "--set",
            f"output.dir={output_dir}",
            "--set",
            "output.overwrite=true",
            "--set",
            "output.previews=0",
        ]
        log_dir.mkdir(parents=True, exist_ok=True)
        handle = open(log, "w")
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        started.append((recipe, output_dir, log, handle, subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)))
    found = []
    for recipe, output_dir, log, handle, process in started:
        status = process.wait()
        handle.close()
        if status != 0:
            tail = "\n".join(log.read_text().strip().splitlines()[-6:])
            raise AugmentError(f"oxe-augment run {recipe} exited {status} (log {log}):\n{tail}")
        datasets = sorted(p.parent for p in output_dir.glob("*/*/dataset_info.json"))
        if len(datasets) != 1:
            raise AugmentError(f"expected one dataset under {output_dir}, found {len(datasets)}")
        found.append(datasets[0])
    return found


def recipe_name(recipe: str | pathlib.Path) -> str:
    """The recipe's ``name`` (or its file stem)."""
    with open(recipe) as f:
        data = yaml.safe_load(f) or {}
    return str(data.get("name") or pathlib.Path(recipe).stem)


def recipe_image_library(recipe: str | pathlib.Path) -> str | None:
    """The folder or glob a recipe draws background photographs from, if it does."""
    with open(recipe) as f:
        data = yaml.safe_load(f) or {}
    background = data.get("background") or {}
    if background.get("source") == "images":
        return background.get("path")
    return None
