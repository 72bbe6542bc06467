"""The ``merge`` command: join the finished parts of a partitioned run into one dataset.

A partitioned run (``--set input.part=I/N``, see ``pipelines.partition``) leaves N complete
outputs under ``<output.dir>/parts/I-of-N/``, each with its dataset
``<name>/<version>/``, ``report.json``, ``failures.jsonl``, ``previews/`` and ``part.json``
(the size and sha256 of every file of its dataset, written when the part finished).
``oxe-augment merge OUTPUT_DIR`` makes them one output in ``OUTPUT_DIR``:

- the dataset ``<name>/<version>/``: every part's shards, split by split, in part order
  (so in input order), copied under their new names (never linked: damage to a part
  later must not reach the merged dataset) and never decoded, each checked against its
  part's ``part.json`` on the way; ``dataset_info.json`` gets the joined split infos
  (shard lengths in order, byte counts summed) through TFDS's ``DatasetInfo`` API;
- ``report.json`` with the parts' counts added up (and one line per part under
  ``parts``), ``report.html``, ``failures.jsonl`` with every part's failures,
  ``previews/`` with all previews.

All of it is built in a scratch folder and swapped in together, under ``OUTPUT_DIR``'s
lock, like a run's output (``pipelines.output``): an interrupted or refused merge leaves
the earlier contents as they were, and nothing from an earlier run or merge survives
beside the new one. A part is finished when its folder has ``report.json`` and
``part.json`` (a part that wrote no episode has no dataset and is finished too); while
any part is missing or unfinished, or the parts were made with different recipes (their
content hashes differ), or a file differs from its record, the command refuses (exit 2)
and names them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import sys
from typing import Any

from pipelines import filesystems

EXIT_OK, EXIT_CONFIG = 0, 2
PARTS = "parts"
_PART_DIR = re.compile(r"^(\d+)-of-(\d+)$")
PART_RECORD = "part.json"  # what a part's dataset held when it finished: size and sha256 per file
_CHUNK = 8 << 20
_COUNTS = ("episodes_in", "episodes_written", "episodes_failed", "output_episodes", "frames")


class MergeError(ValueError):
    """The parts cannot be merged (yet); the message names the part or file."""


@dataclasses.dataclass(frozen=True)
class FinishedPart:
    """One finished part: its folder, its dataset folder, its report and its record (``part.json``)."""

    part: int
    parts: int
    dir: str
    dataset_dir: str  # <part dir>/<name>/<version>; "" when the part wrote no episode
    name: str
    version: str
    report: dict[str, Any]
    recipe_sha256: str  # the recipe's content hash (input.part left out)
    files: dict[str, tuple[int, str]]  # dataset file name -> (bytes, sha256) when the part finished

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
            "Shards are copied under new names, not re-encoded, and checked against each part's part.json. "
            "Exit status 2 while a part is missing or unfinished, when the parts' recipes differ or a shard "
            "differs from its record (the message names the part and file)."
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
    except OSError as e:  # a read-only or full output folder: one line, not a trace
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: merge into {args.output_dir}: {e.strerror or e}{where}", file=sys.stderr)
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

    Raises :class:`MergeError` (nothing published) when a part is missing or unfinished,
    when the parts disagree (dataset name, version, features, recipe content hash, input),
    when a file of a part's dataset differs from what the part recorded when it finished
    (``part.json``: size and sha256 of every file), when another run or merge holds
    ``output_dir``, or when something the merge publishes exists and ``overwrite`` is false.
    Everything (dataset, ``report.json``, ``report.html``, ``failures.jsonl``,
    ``previews/``) is built in a scratch folder and swapped in together
    (:class:`pipelines.output.OutputTransaction`): earlier ones never survive beside it.
    """
    import tensorflow_datasets as tfds

    from pipelines.output import OutputLocationError, OutputLock, OutputTransaction, check_output_items
    from pipelines.report_html import write_report_html

    parts = finished_parts(output_dir)
    _check_same_job(parts)
    with_data = [part for part in parts if part.dataset_dir]
    if not with_data:
        raise MergeError(
            f"{filesystems.join(output_dir, PARTS)}: no part wrote an episode; nothing to merge (see their failures.jsonl)"
        )
    for part in with_data:  # before TFDS reads them
        for name in ("dataset_info.json", "features.json"):
            _verify(part, name, filesystems.join(part.dataset_dir, name))
    builders = [tfds.builder_from_directory(part.dataset_dir) for part in with_data]
    _check_features(with_data, builders)
    first = with_data[0]
    dataset = f"{first.name}/{first.version}"
    target = filesystems.join(output_dir, first.name, first.version)

    try:
        check_output_items(output_dir, dataset, overwrite)
        lock = OutputLock(output_dir, say=lambda line: print(line, file=sys.stderr))
        lock.acquire()
    except OutputLocationError as e:
        raise MergeError(str(e).replace("Set output.overwrite: true", "Pass --overwrite")) from None
    try:
        output = OutputTransaction(output_dir, dataset)
        try:
            output.begin()
        except OutputLocationError as e:
            raise MergeError(str(e)) from None
        try:
            dataset_scratch = filesystems.join(output.scratch, first.name, first.version)
            _merge_datasets(tfds, with_data, builders, dataset_scratch, target)
            report = combine_reports([part.report for part in parts], [part.label for part in parts], output_dataset=target)
            failures = [line for part in parts for line in _failure_lines(part)]
            failures.sort(key=lambda line: (json.loads(line).get("split", ""), json.loads(line).get("key", "")))
            for part in parts:
                for path in filesystems.list_paths(filesystems.join(part.dir, "previews", "*")):
                    filesystems.write_bytes(
                        filesystems.join(output.scratch, "previews", os.path.basename(path)), filesystems.read_bytes(path)
                    )
            report_json = json.dumps(report, indent=2, sort_keys=True).encode()
            filesystems.write_bytes(filesystems.join(output.scratch, "report.json"), report_json)
            filesystems.write_bytes(
                filesystems.join(output.scratch, "failures.jsonl"), "".join(f + "\n" for f in failures).encode()
            )
            write_report_html(report, "", output.scratch)
            output.commit()
        except BaseException:
            output.abort()
            raise
    finally:
        lock.release()
    return report


def _merge_datasets(tfds, parts: list[FinishedPart], builders, scratch: str, target: str) -> None:
    """Write the joined dataset into ``scratch`` (its final place will be ``target``).

    Every shard is copied (never linked: a merged dataset must not change when a part is
    damaged or deleted) and checked against its part's record on the way.
    """
    first = parts[0]
    split_infos = []
    for split in _splits_in_order(builders):
        shards, lengths, num_bytes = [], [], 0
        for part, builder in zip(parts, builders):
            if split not in builder.info.splits:  # the part got no episode of this split
                continue
            info = builder.info.splits[split]
            shards += [(part, path) for path in _shard_paths(builder, split)]
            lengths += [int(n) for n in info.shard_lengths]
            num_bytes += int(info.num_bytes)
        template = tfds.core.ShardedFileTemplate(
            data_dir=target,
            dataset_name=first.name,
            split=split,
            filetype_suffix="tfrecord",
            template=tfds.core.naming.DEFAULT_FILENAME_TEMPLATE,
        )
        for (part, source), destination in zip(shards, template.sharded_filepaths(len(shards))):
            _copy_verified(part, source, filesystems.join(scratch, os.path.basename(os.fspath(destination))))
        split_infos.append(
            tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=num_bytes, filename_template=template)
        )
    info = builders[0].info
    info.set_splits(tfds.core.SplitDict(split_infos))
    filesystems.make_folder(scratch)
    info.write_to_directory(scratch)


def finished_parts(output_dir: str) -> list[FinishedPart]:
    """Every part I of N under ``<output_dir>/parts/``, in order; raises if any is missing or unfinished.

    A part is finished when it has ``report.json`` and ``part.json`` (written together
    when the part's run published). A part that wrote no episode (all failed, or its
    share was empty) is finished too: it has no dataset, and adds its counts and failures.
    """
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
        report_path, record_path = filesystems.join(folder, "report.json"), filesystems.join(folder, PART_RECORD)
        if not filesystems.exists(report_path):
            unfinished.append(f"{folder} (no report.json: the part has not finished)")
            continue
        if not filesystems.exists(record_path):
            unfinished.append(
                f"{folder} (no {PART_RECORD}: cut short, or made by an older oxe-augment; run it again with output.overwrite: true)"
            )
            continue
        try:
            report = json.loads(filesystems.read_bytes(report_path))
            record = json.loads(filesystems.read_bytes(record_path))
            name, version = str(record["dataset"]).split("/")
            files = {str(k): (int(v["bytes"]), str(v["sha256"])) for k, v in record["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise MergeError(f"{folder}: report.json or {PART_RECORD} cannot be read ({type(e).__name__}: {e})") from None
        if record.get("part") != f"{index}-of-{total}":
            raise MergeError(f"{record_path}: records part {record.get('part')!r}, but lies in {folder}; parts cannot be moved")
        dataset_dir = filesystems.join(folder, name, version) if files else ""
        parts.append(FinishedPart(index, total, folder, dataset_dir, name, version, report, record["recipe_sha256"], files))
    problems = [f"missing: {m}" for m in missing] + [f"unfinished: {u}" for u in unfinished]
    if problems:
        raise MergeError(f"{len(problems)} of {total} parts not finished; " + "; ".join(problems))
    return parts


def write_part_record(scratch: str, dataset: str, part_label: str, recipe_sha256: str) -> None:
    """Write ``<scratch>/part.json``: the size and sha256 of every file of the part's dataset.

    Called when a part's run has finished, before it publishes; ``merge`` checks every file
    it reads against it, so a part changed or damaged since (a truncated copy, a flipped
    bit, a file from another run) is refused rather than merged.
    """
    folder = filesystems.join(scratch, dataset)
    if filesystems.is_remote(folder):
        paths = filesystems.list_paths(filesystems.join(folder, "*"))
    else:
        paths = sorted(e.path for e in os.scandir(folder) if e.is_file()) if os.path.isdir(folder) else []
    files = {}
    for path in paths:
        size, digest = _digest(path)
        files[os.path.basename(path)] = {"bytes": size, "sha256": digest}
    record = {"part": part_label, "dataset": dataset, "recipe_sha256": recipe_sha256, "files": files}
    filesystems.write_bytes(filesystems.join(scratch, PART_RECORD), json.dumps(record, indent=1, sort_keys=True).encode())


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


def _check_same_job(parts: list[FinishedPart]) -> None:
    """Parts of one job: the same dataset name and version, recipe (content hash) and input."""
    first = parts[0]
    for part in parts[1:]:
        if (part.name, part.version) != (first.name, first.version):
            raise MergeError(
                f"{part.dir}: dataset {part.name}/{part.version} differs from part {first.label}'s {first.name}/{first.version}"
            )
        for key in ("recipe", "input_dir"):
            if part.report.get(key) != first.report.get(key):
                raise MergeError(
                    f"{part.dir}/report.json: {key} {part.report.get(key)!r} differs from part {first.label}'s "
                    f"{first.report.get(key)!r} (parts of different jobs)"
                )
    # The content hash leaves out input.part, output.dir and the runner: it agrees between
    # the parts of one job, and differs when a part ran with another seed or setting.
    by_recipe: dict[str, list[str]] = {}
    for part in parts:
        by_recipe.setdefault(part.recipe_sha256, []).append(part.label)
    if len(by_recipe) > 1:
        groups = "; ".join(f"{', '.join(labels)}: recipe_sha256 {sha[:12]}" for sha, labels in by_recipe.items())
        raise MergeError(
            f"{os.path.dirname(first.dir.rstrip('/'))}: the parts were made with different recipes ({groups}); "
            "run the odd ones again with the job's recipe (output.overwrite: true), then merge"
        )


def _check_features(parts: list[FinishedPart], builders) -> None:
    features = builders[0].info.features.to_json()
    for part, builder in zip(parts[1:], builders[1:]):
        if builder.info.features.to_json() != features:
            raise MergeError(f"{part.dataset_dir}/features.json differs from part {parts[0].label}'s")


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


def _verify(part: FinishedPart, name: str, path: str) -> None:
    """Raise unless ``path`` has the size and sha256 its part recorded for ``name``."""
    _check_digest(part, name, path, _digest(path))


def _copy_verified(part: FinishedPart, source: str, destination: str) -> None:
    """Copy ``source`` to ``destination``, hashing the bytes on the way; raise unless they are what the part recorded."""
    digest, size = hashlib.sha256(), 0
    if not filesystems.is_remote(destination):
        os.makedirs(os.path.dirname(destination), exist_ok=True)
    with _open(source) as reader, _create(destination) as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    _check_digest(part, os.path.basename(source), source, (size, digest.hexdigest()))


def _check_digest(part: FinishedPart, name: str, path: str, found: tuple[int, str]) -> None:
    expected = part.files.get(name)
    if expected is None:
        raise MergeError(f"part {part.label}: {path} is not in its {PART_RECORD}; nothing was merged")
    if found[0] != expected[0]:
        raise MergeError(
            f"part {part.label}: {path} has {found[0]} bytes, {expected[0]} when the part finished "
            f"({PART_RECORD}); the part was changed or damaged since: run it again. Nothing was merged"
        )
    if found[1] != expected[1]:
        raise MergeError(
            f"part {part.label}: {path}: sha256 differs from the one recorded when the part finished "
            f"({PART_RECORD}); the part was changed or damaged since: run it again. Nothing was merged"
        )


def _digest(path: str) -> tuple[int, str]:
    """Size and sha256 of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with _open(path) as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _open(path: str):
    if not filesystems.is_remote(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _create(path: str):
    if not filesystems.is_remote(path):
        return open(path, "wb")
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


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
