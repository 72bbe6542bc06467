"""The ``merge`` command: join the finished parts of a partitioned run into one dataset.

A partitioned run (``--set input.part=I/N``, see ``pipelines.partition``) leaves N complete
outputs under ``<output.dir>/parts/I-of-N/``, each with its dataset
``<name>/<version>/``, ``report.json``, ``failures.jsonl`` and ``previews/``.
``oxe-augment merge OUTPUT_DIR`` makes them one output in ``OUTPUT_DIR``:

- the dataset ``<name>/<version>/``: every part's shards, split by split, in part order
  (so in input order), hard-linked (local) or copied object to object (remote) under
  their new names, never decoded; ``dataset_info.json`` gets the joined split infos
  (shard lengths in order, byte counts summed) through TFDS's ``DatasetInfo`` API;
- ``report.json`` with the parts' counts added up (and one line per part under
  ``parts``), ``failures.jsonl`` with every part's failures, ``previews/`` with all
  previews.

The merged dataset is first built in a scratch folder beside the target and moved into
place only when complete, so an interrupted merge leaves no half dataset. A part is
finished when its folder has ``report.json`` and a dataset (``dataset_info.json``); while
any part is missing or unfinished the command refuses (exit 2) and names them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
from typing import Any

from pipelines import filesystems

EXIT_OK, EXIT_CONFIG = 0, 2
PARTS = "parts"
_PART_DIR = re.compile(r"^(\d+)-of-(\d+)$")
_COUNTS = ("episodes_in", "episodes_written", "episodes_failed", "output_episodes", "frames")


class MergeError(ValueError):
    """The parts cannot be merged (yet); the message names the part or file."""


@dataclasses.dataclass(frozen=True)
class FinishedPart:
    """One finished part: its folder, its dataset folder and its report."""

    part: int
    parts: int
    dir: str
    dataset_dir: str  # <part dir>/<name>/<version>
    name: str
    version: str
    report: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.part}-of-{self.parts}"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``merge`` subcommand."""
    parser = subparsers.add_parser(
        "merge",
        help="join the finished parts of a partitioned run (<OUTPUT_DIR>/parts/I-of-N/) into one dataset",
        description=(
            "Join <OUTPUT_DIR>/parts/I-of-N/ (runs with --set input.part=I/N) into one TFDS dataset "
            "<OUTPUT_DIR>/<name>/<version>/ with report.json, failures.jsonl and previews/ beside it. "
            "Shards are linked or copied under new names, not re-encoded. Exit status 2 while a part "
            "is missing or unfinished (the message names it)."
        ),
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="the recipe's output.dir (holds parts/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing merged dataset")
    parser.set_defaults(handler=merge_command)


def merge_command(args: argparse.Namespace) -> int:
    """Handler of ``merge``: check the parts, merge, print where the result is."""
    try:
        report = merge_parts(args.output_dir, overwrite=args.overwrite)
    except MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"merged {len(report['parts'])} parts: episodes in {report['episodes_in']}, written "
        f"{report['episodes_written']}, failed {report['episodes_failed']} ({report['output_episodes']} output episodes)"
    )
    print(f"dataset: {report['output_dataset']}")
    print(f"report: {filesystems.join(args.output_dir, 'report.json')}")
    return EXIT_OK


def merge_parts(output_dir: str, overwrite: bool = False) -> dict[str, Any]:
    """Merge ``<output_dir>/parts/*`` into ``output_dir``; returns the combined report.

    Raises :class:`MergeError` (nothing written) when a part is missing or unfinished,
    when the parts disagree (dataset name, version, features, recipe name, input), or when the
    merged dataset exists and ``overwrite`` is false.
    """
    import tensorflow_datasets as tfds

    parts = finished_parts(output_dir)
    first = parts[0]
    builders = [tfds.builder_from_directory(part.dataset_dir) for part in parts]
    _check_same(parts, builders)

    target = filesystems.join(output_dir, first.name, first.version)
    if filesystems.folder_exists(target) and not overwrite:
        raise MergeError(f"{target} already exists; pass --overwrite to replace it")
    scratch = filesystems.join(output_dir, f".merging-{first.name}-{first.version}")
    filesystems.delete_tree(scratch)

    split_infos = []
    for split in _splits_in_order(builders):
        shards, lengths, num_bytes = [], [], 0
        for builder in builders:
            if split not in builder.info.splits:  # the part got no episode of this split
                continue
            info = builder.info.splits[split]
            shards += _shard_paths(builder, split)
            lengths += [int(n) for n in info.shard_lengths]
            num_bytes += int(info.num_bytes)
        template = tfds.core.ShardedFileTemplate(
            data_dir=target,
            dataset_name=first.name,
            split=split,
            filetype_suffix="tfrecord",
            template=tfds.core.naming.DEFAULT_FILENAME_TEMPLATE,
        )
        for source, destination in zip(shards, template.sharded_filepaths(len(shards))):
            _place(source, filesystems.join(scratch, os.path.basename(os.fspath(destination))))
        split_infos.append(
            tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=num_bytes, filename_template=template)
        )

    info = builders[0].info
    info.set_splits(tfds.core.SplitDict(split_infos))
    info.write_to_directory(scratch)
    _swap_in(scratch, target)

    report = combine_reports([part.report for part in parts], [part.label for part in parts], output_dataset=target)
    failures = [line for part in parts for line in _failure_lines(part)]
    failures.sort(key=lambda line: (json.loads(line).get("split", ""), json.loads(line).get("key", "")))
    filesystems.write_bytes(filesystems.join(output_dir, "report.json"), json.dumps(report, indent=2, sort_keys=True).encode())
    filesystems.write_bytes(filesystems.join(output_dir, "failures.jsonl"), "".join(f + "\n" for f in failures).encode())
    for part in parts:
        for path in filesystems.list_paths(filesystems.join(part.dir, "previews", "*")):
            filesystems.write_bytes(
                filesystems.join(output_dir, "previews", os.path.basename(path)), filesystems.read_bytes(path)
            )
    return report


def finished_parts(output_dir: str) -> list[FinishedPart]:
    """Every part I of N under ``<output_dir>/parts/``, in order; raises if any is missing or unfinished."""
    parts_dir = filesystems.join(output_dir, PARTS)
    found: dict[int, str] = {}
    counts: set[int] = set()
    for folder in _subfolders(parts_dir):
        match = _PART_DIR.match(folder)
        if match:
            found[int(match.group(1))] = filesystems.join(parts_dir, folder)
            counts.add(int(match.group(2)))
    if not counts:
        raise MergeError(f"{parts_dir}: no parts to merge (run the recipe with --set input.part=I/N first)")
    if len(counts) > 1:
        raise MergeError(
            f"{parts_dir}: parts of different partitionings ({', '.join(f'of {n}' for n in sorted(counts))}); keep one"
        )
    (total,) = counts
    parts, missing, unfinished = [], [], []
    for index in range(total):
        folder = filesystems.join(parts_dir, f"{index}-of-{total}")
        if index not in found:
            missing.append(folder)
            continue
        datasets = filesystems.list_paths(filesystems.join(folder, "*", "*", "dataset_info.json"))
        report_path = filesystems.join(folder, "report.json")
        if not datasets or not filesystems.list_paths(report_path):
            what = "no report.json" if datasets else "no dataset: <name>/<version>/dataset_info.json"
            unfinished.append(f"{folder} ({what})")
            continue
        dataset_dir = os.path.dirname(datasets[0])
        version = os.path.basename(dataset_dir)
        name = os.path.basename(os.path.dirname(dataset_dir))
        report = json.loads(filesystems.read_bytes(report_path))
        parts.append(FinishedPart(index, total, folder, dataset_dir, name, version, report))
    problems = [f"missing: {m}" for m in missing] + [f"unfinished: {u}" for u in unfinished]
    if problems:
        raise MergeError(f"{len(problems)} of {total} parts not finished; " + "; ".join(problems))
    return parts


def combine_reports(reports: list[dict[str, Any]], labels: list[str], *, output_dataset: str) -> dict[str, Any]:
    """The parts' ``report.json`` contents as one report.

    Counts, frames and per-stage seconds add up; ``wall_seconds`` is the sum of the parts'
    wall times (machine time: parts usually run side by side, so the job's elapsed time
    is less) and frames/s follow from it; mask coverage is averaged weighted by written
    episodes. ``parts`` lists each part's own counts and wall time.
    """
    combined: dict[str, Any] = dict(reports[0])
    for key in _COUNTS:
        combined[key] = sum(int(r.get(key, 0)) for r in reports)
    splits: dict[str, dict[str, int]] = {}
    for r in reports:
        for split, counts in r.get("splits", {}).items():
            into = splits.setdefault(split, {})
            for name, value in counts.items():
                into[name] = into.get(name, 0) + value if isinstance(value, (int, float)) else value
    combined["splits"] = dict(sorted(splits.items()))
    stages = sorted({s for r in reports for s in r.get("seconds_per_stage", {})})
    combined["seconds_per_stage"] = {
        s: round(sum(r.get("seconds_per_stage", {}).get(s, 0.0) for r in reports), 3) for s in stages
    }
    wall = sum(float(r.get("wall_seconds", 0.0)) for r in reports)
    combined["wall_seconds"] = round(wall, 3)
    combined["frames_per_second"] = round(combined["frames"] / wall, 2) if wall > 0 else 0.0
    combined["episodes_per_second"] = round(combined["episodes_written"] / wall, 3) if wall > 0 else 0.0
    coverage_keys = sorted({k for r in reports for k in r.get("mask_coverage", {})})
    combined["mask_coverage"] = {
        k: round(
            sum(r["mask_coverage"][k] * r.get("episodes_written", 0) for r in reports if k in r.get("mask_coverage", {}))
            / max(1, sum(r.get("episodes_written", 0) for r in reports if k in r.get("mask_coverage", {}))),
            5,
        )
        for k in coverage_keys
    }
    combined["failures"] = sorted(
        (f for r in reports for f in r.get("failures", [])), key=lambda f: (f.get("split", ""), f.get("key", ""))
    )
    combined["notes"] = sorted((n for r in reports for n in r.get("notes", [])), key=lambda n: n.get("key", ""))
    combined["output_dataset"] = output_dataset
    combined["parts"] = [
        {"part": label, **{key: r.get(key, 0) for key in _COUNTS}, "wall_seconds": r.get("wall_seconds", 0.0)}
        for label, r in zip(labels, reports)
    ]
    assert combined["episodes_in"] == combined["episodes_written"] + combined["episodes_failed"]
    return combined


# ---------------------------------------------------------------------------------------


def _check_same(parts: list[FinishedPart], builders) -> None:
    """Parts of one job agree on dataset name, version, features, recipe name and input."""
    first, features = parts[0], builders[0].info.features.to_json()
    for part, builder in zip(parts[1:], builders[1:]):
        if (part.name, part.version) != (first.name, first.version):
            raise MergeError(
                f"{part.dataset_dir}: dataset {part.name}/{part.version} differs from part {first.label}'s {first.name}/{first.version}"
            )
        if builder.info.features.to_json() != features:
            raise MergeError(f"{part.dataset_dir}/features.json differs from part {first.label}'s")
        # Not recipe_sha256: it covers input.part, which differs from part to part.
        for key in ("recipe", "input_dir"):
            if part.report.get(key) != first.report.get(key):
                raise MergeError(
                    f"{part.dir}/report.json: {key} {part.report.get(key)!r} differs from part {first.label}'s "
                    f"{first.report.get(key)!r} (parts of different jobs)"
                )


def _splits_in_order(builders) -> list[str]:
    splits: list[str] = []
    for builder in builders:
        splits += [s for s in builder.info.splits if s not in splits]
    return splits


def _shard_paths(builder, split: str) -> list[str]:
    info = builder.info.splits[split]
    paths = [os.fspath(p) for p in info.filename_template.sharded_filepaths(len(info.shard_lengths))]
    for path in paths:
        if not filesystems.list_paths(path):
            raise MergeError(f"{path}: shard listed in {builder.data_dir}/dataset_info.json is missing")
    return paths


def _place(source: str, destination: str) -> None:
    """Put ``source``'s bytes at ``destination`` without reading them when possible."""
    if filesystems.is_remote(source) or filesystems.is_remote(destination):
        from apache_beam.io.filesystems import FileSystems

        FileSystems.copy([source], [destination])  # object-to-object copy on GCS
        return
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    try:
        os.link(source, destination)  # the part keeps its copy; no byte is copied
    except OSError:
        shutil.copyfile(source, destination)


def _swap_in(scratch: str, target: str) -> None:
    """Move the finished ``scratch`` folder to ``target`` (replacing it)."""
    if not filesystems.is_remote(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        old = target + ".replaced"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(target):
            os.rename(target, old)
        os.rename(scratch, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    from apache_beam.io.filesystems import FileSystems

    filesystems.delete_tree(target)
    sources = filesystems.list_paths(filesystems.join(scratch, "*"))
    FileSystems.rename(sources, [filesystems.join(target, os.path.basename(s)) for s in sources])


def _subfolders(folder: str) -> list[str]:
    """Names of the folders directly in ``folder`` (remote: prefixes that hold objects)."""
    if not filesystems.is_remote(folder):
        return sorted(e.name for e in os.scandir(folder) if e.is_dir()) if os.path.isdir(folder) else []
    names = {p[len(folder) :].strip("/").split("/")[0] for p in filesystems.list_paths(filesystems.join(folder, "**"))}
    return sorted(n for n in names if n)


def _failure_lines(part: FinishedPart) -> list[str]:
    path = filesystems.join(part.dir, "failures.jsonl")
    if not filesystems.list_paths(path):
        return []
    return [line for line in filesystems.read_bytes(path).decode().splitlines() if line.strip()]
