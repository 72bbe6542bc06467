"""The run's accounting: ``report.json``, ``failures.jsonl`` and the closing summary.

Every input episode leaves exactly one record (written or failed), so
``episodes_in == episodes_written + episodes_failed`` holds by construction and is
checked again here.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from pipelines import filesystems
from pipelines.records import EpisodeRecord
from pipelines.report_html import write_report_html


@dataclasses.dataclass
class RunReport:
    recipe: str
    recipe_sha256: str
    input_dir: str
    output_dataset: str
    splits: dict[str, dict[str, int]]
    episodes_in: int
    episodes_written: int
    episodes_failed: int
    output_episodes: int
    frames: int
    wall_seconds: float
    frames_per_second: float
    episodes_per_second: float
    seconds_per_stage: dict[str, float]
    mask_coverage: dict[str, float]
    failures: list[dict[str, Any]]
    # Episodes written with a stage's fallback, {"key", "note"} each (e.g. a clean plate that
    # could not align some frames of a moving camera).
    notes: list[dict[str, str]] = dataclasses.field(default_factory=list)
    # What the run did that the recipe may not have meant, e.g. task objects replaced for lack of masks.
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.episodes_failed == 0

    def summary(self) -> str:
        """The few lines printed at the end of every run."""
        lines = [
            f"episodes in {self.episodes_in}, written {self.episodes_written}, failed {self.episodes_failed} "
            f"({self.output_episodes} output episodes)",
            f"frames {self.frames} in {self.wall_seconds:.1f} s: {self.frames_per_second:.1f} frames/s, "
            f"{self.episodes_per_second:.2f} episodes/s",
            f"dataset: {self.output_dataset or '(none: no episode was written)'}",
        ]
        for split in self.empty_splits:
            first = next(f for f in self.failures if f["split"] == split)
            counts = self.splits[split]
            lines.append(
                f"split {split}: nothing written, all {counts['episodes_in']} episodes failed; "
                f"first {first['key']}: {first['reason']}"
            )
        if self.notes:
            lines.append(f"notes: {len(self.notes)} (see report.json); first: {self.notes[0]['key']}: {self.notes[0]['note']}")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.failures:
            lines.append(
                f"failures: {len(self.failures)} (see failures.jsonl); first: {self.failures[0]['key']}: {self.failures[0]['reason']}"
            )
        return "\n".join(lines)

    @property
    def empty_splits(self) -> list[str]:
        """Splits that had episodes but of which none was written."""
        return [s for s, c in self.splits.items() if c["episodes_in"] and not c["episodes_written"]]


def build_report(
    records: list[EpisodeRecord],
    *,
    recipe_name: str,
    recipe_sha256: str,
    input_dir: str,
    output_dataset: str,
    wall_seconds: float,
    splits: list[str] = (),
    warnings: list[str] = (),
) -> RunReport:
    """Aggregate per-episode records into the run's report (every split in ``splits`` listed)."""
    written = [r for r in records if r.status == "written"]
    failures = sorted((r for r in records if r.status == "failed"), key=lambda r: r.key)
    splits: dict[str, dict[str, int]] = {
        split: {"episodes_in": 0, "episodes_written": 0, "episodes_failed": 0} for split in splits
    }
    for r in records:
        counts = splits.setdefault(r.split, {"episodes_in": 0, "episodes_written": 0, "episodes_failed": 0})
        counts["episodes_in"] += 1
        counts["episodes_written" if r.status == "written" else "episodes_failed"] += 1
    stages = sorted({stage for r in written for stage in r.seconds})
    frames = sum(r.frames for r in written)
    coverage_keys = sorted({k for r in written for k in r.coverage})
    report = RunReport(
        recipe=recipe_name,
        recipe_sha256=recipe_sha256,
        input_dir=input_dir,
        output_dataset=output_dataset,
        splits=dict(sorted(splits.items())),
        episodes_in=len(records),
        episodes_written=len(written),
        episodes_failed=len(failures),
        output_episodes=sum(r.written for r in written),
        frames=frames,
        wall_seconds=round(wall_seconds, 3),
        frames_per_second=round(frames / wall_seconds, 2) if wall_seconds > 0 else 0.0,
        episodes_per_second=round(len(written) / wall_seconds, 3) if wall_seconds > 0 else 0.0,
        # Summed over episodes (worker time), not wall time: workers run in parallel.
        seconds_per_stage={s: round(sum(r.seconds.get(s, 0.0) for r in written), 3) for s in stages},
        mask_coverage={k: round(float(np.mean([r.coverage[k] for r in written if k in r.coverage])), 5) for k in coverage_keys},
        failures=[{"key": r.key, "split": r.split, "stage": r.stage, "reason": r.reason, "source": r.source} for r in failures],
        notes=[{"key": r.key, "note": note} for r in sorted(written, key=lambda r: r.key) for note in r.notes],
        warnings=list(warnings),
    )
    assert report.episodes_in == report.episodes_written + report.episodes_failed
    return report


def write_report(report: RunReport, output_dir: str, recipe_yaml: str = "") -> None:
    """``report.json``, ``failures.jsonl`` (always written, empty when nothing failed) and
    ``report.html`` (with the previews already under ``<output_dir>/previews/``)."""
    report_json = json.dumps(dataclasses.asdict(report), indent=2, sort_keys=True)
    filesystems.write_bytes(filesystems.join(output_dir, "report.json"), report_json.encode())
    failures = "".join(json.dumps(failure, sort_keys=True) + "\n" for failure in report.failures)
    filesystems.write_bytes(filesystems.join(output_dir, "failures.jsonl"), failures.encode())
    write_report_html(dataclasses.asdict(report), recipe_yaml, output_dir)


def read_records(pattern: str) -> list[EpisodeRecord]:
    """Load the records the workers wrote (JSON lines in the files matching ``pattern``).

    One record per episode key: a bundle that Beam ran twice (a retry after its records
    were written) leaves the same records in two files, and the episode counts once.
    """
    records: dict[str, EpisodeRecord] = {}
    for path in filesystems.list_paths(pattern):
        lines = filesystems.read_bytes(path).decode().splitlines()
        for line in lines:
            if line.strip():
                record = EpisodeRecord(**json.loads(line))
                records.setdefault(record.key, record)
    return list(records.values())
