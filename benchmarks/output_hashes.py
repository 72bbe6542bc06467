"""The same bytes: sha256 of everything the main commands write, to compare before and after a change.

A restructuring (or any change that should not change outputs) is checked by running this
script on the old commit and on the new one and comparing:

    .venv/bin/python benchmarks/output_hashes.py --out /tmp/hashes-before.json     # on the old commit
    .venv/bin/python benchmarks/output_hashes.py --compare /tmp/hashes-before.json # on the new one

``benchmarks/results/output_hashes.json`` is the recording of the tree it was committed with
(so ``--compare benchmarks/results/output_hashes.json`` checks a later tree against it); the
digests depend on the installed TensorFlow, OpenCV and pybullet builds, so record both sides
on the same machine when in doubt.

It renders a small sample dataset (``sample-data``), then runs, each into its own folder:
``configs/demo.yaml``, ``configs/copy.yaml``, a partitioned copy (two parts) joined by
``merge``, and ``eval`` of the demo output against the sample data. Every file written is
hashed; JSON files are hashed after dropping fields that hold times, durations, rates or
run ids (``VOLATILE_KEYS``), and ``report.html`` with its decimal numbers and percentages (the
timings) masked, since those differ on every run by design. Paths end up in outputs (provenance,
the recipe's hash), so the work folder is fixed (``--work``). ``--compare`` prints every file that was added,
removed or changed and exits 1 if any was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]

#: JSON fields that change on every run by design (times, durations, rates, absolute paths of this run).
VOLATILE_KEYS = frozenset(
    {
        "started",
        "finished",
        "start_time",
        "end_time",
        "created",
        "elapsed_s",
        "seconds",
        "wall_s",
        "wall_seconds",
        "frames_per_second",
        "episodes_per_second",
        "seconds_per_stage",
        "duration_s",
        "log",
        "log_file",
        "run_id",
        "tool_version",
    }
)


def _strip_volatile(value, root: str):
    """``value`` without volatile keys, with this run's temporary root replaced by ``ROOT``."""
    if isinstance(value, dict):
        return {k: _strip_volatile(v, root) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip_volatile(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "ROOT")
    return value


def file_digest(path: pathlib.Path, root: str) -> str:
    """sha256 of the file, JSON and JSON-lines files after :func:`_strip_volatile`."""
    data = path.read_bytes()
    if path.suffix in (".json", ".jsonl") and path.name != "dataset_info.json":
        try:
            if path.suffix == ".json":
                data = json.dumps(_strip_volatile(json.loads(data), root), sort_keys=True).encode()
            else:
                lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
                data = "\n".join(json.dumps(_strip_volatile(x, root), sort_keys=True) for x in lines).encode()
        except (ValueError, UnicodeDecodeError):
            pass  # not JSON after all: hash the bytes
    elif path.suffix == ".html":
        # report.html shows the report's timings (decimals) and this run's paths: masked;
        # counts, failures and the previews it embeds are compared as they are.
        data = re.sub(rb"\d+\.\d+", b"N", data.replace(root.encode(), b"ROOT"))
        data = re.sub(rb"\d+ %", b"N %", data)  # each stage's share of the time
    return hashlib.sha256(data).hexdigest()


def tree_digests(folder: pathlib.Path, root: str) -> dict[str, str]:
    """``{relative path: digest}`` for every file under ``folder``."""
    return {
        str(p.relative_to(folder)): file_digest(p, root) for p in sorted(folder.rglob("*")) if p.is_file() and "log" not in p.name
    }


def _cli(*args: str, cwd: pathlib.Path) -> None:
    command = [str(pathlib.Path(sys.executable).with_name("oxe-augment")), *args]
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")


def record(work: pathlib.Path) -> dict[str, dict[str, str]]:
    """Run every command into ``work`` and return the digests, one table per command."""
    root = str(work)
    sample = work / "sample" / "oxe_augment_sample" / "1.0.0"
    _cli("sample-data", str(sample), "--episodes", "4", "--steps", "8", "--size", "64", "--seed", "0", cwd=REPO)
    beam = ["--", "--runner=DirectRunner", "--direct_running_mode=in_memory"]
    common = ["--set", f"input.dir={sample}"]
    _cli("run", "configs/demo.yaml", *common, "--set", f"output.dir={work / 'demo'}", *beam, cwd=REPO)
    _cli("run", "configs/copy.yaml", *common, "--set", f"output.dir={work / 'copy'}", *beam, cwd=REPO)
    for part in ("0/2", "1/2"):
        _cli(
            "run",
            "configs/copy.yaml",
            *common,
            "--set",
            f"output.dir={work / 'parts'}",
            "--set",
            f"input.part={part}",
            *beam,
            cwd=REPO,
        )
    _cli("merge", str(work / "parts"), cwd=REPO)
    scores = work / "eval.json"
    _cli(
        "eval",
        "--pred",
        str(work / "demo" / "oxe_augment_sample" / "1.0.0"),
        "--gt",
        str(sample),
        "--json",
        str(scores),
        cwd=REPO,
    )
    return {
        name: tree_digests(work / name, root) if (work / name).is_dir() else {name: file_digest(work / name, root)}
        for name in ("sample", "demo", "copy", "parts", "eval.json")
    }


def compare(before: dict, after: dict) -> list[str]:
    """One line per file added, removed or changed between two recordings."""
    lines = []
    for command in sorted(set(before) | set(after)):
        old, new = before.get(command, {}), after.get(command, {})
        for path in sorted(set(old) | set(new)):
            if path not in new:
                lines.append(f"{command}: removed {path}")
            elif path not in old:
                lines.append(f"{command}: added {path}")
            elif old[path] != new[path]:
                lines.append(f"{command}: changed {path}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the recording to this JSON file")
    parser.add_argument("--compare", metavar="BEFORE", help="compare with an earlier recording; exit 1 on any difference")
    parser.add_argument(
        "--work", default=os.path.join(tempfile.gettempdir(), "oxe-augment-output-hashes"), help="work folder (emptied first)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args()
    # A fixed folder: paths end up in the recipe's hash and the records' provenance, so two
    # recordings compare only when made in the same place.
    work = pathlib.Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        digests = record(work)
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.out} ({sum(len(v) for v in digests.values())} files)")
    if args.compare:
        differences = compare(json.loads(pathlib.Path(args.compare).read_text()), digests)
        print("\n".join(differences) if differences else "identical: every file has the same digest")
        return 1 if differences else 0
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.exit(main())
