"""Per-episode records (the run's accounting) and the progress the workers publish.

Every stage passes good episodes on and turns a bad one into an :class:`EpisodeRecord` on
its ``records`` output, so every input episode ends as exactly one record: written or
failed, with its reason. ``pipelines.report`` builds ``report.json`` and
``failures.jsonl`` from them.

This module imports Beam and nothing heavier: every worker unpickles it, including the
workers of a copy, which never load a model (``pipelines.stages`` imports Beam's ML
package, and with it torch).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import apache_beam as beam

from pipelines import filesystems

RECORDS = "records"


@dataclasses.dataclass
class EpisodeRecord:
    """The fate of one input episode, for report.json and failures.jsonl."""

    key: str
    split: str
    status: str  # "written" | "failed"
    reason: str = ""
    stage: str = ""
    source: str = ""  # the shard file the episode was read from (every stage's failures name it)
    steps: int = 0
    frames: int = 0  # camera frames processed (steps x cameras)
    written: int = 0  # output episodes written from this one
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    coverage: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)  # written, but not quite as planned (Episode.notes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def failed(episode_key: str, split: str, stage: str, reason: str, source: str = "") -> beam.pvalue.TaggedOutput:
    """The failure record of one episode, on a stage's ``records`` output."""
    return beam.pvalue.TaggedOutput(RECORDS, EpisodeRecord(episode_key, split, "failed", reason, stage, source))


class WriteRecords(beam.DoFn):
    """Writes the records to the run's scratch folder, and this worker's running totals.

    Each bundle's records go to a file of their own, ``records-<split>-<uuid>.jsonl`` in
    ``records_dir`` (written under a temporary name, then renamed: a file under the final
    name is complete). Beam's ``WriteToText`` would do the same with half a dozen more
    steps per split (its temporary folder, a grouping, finalisation), each a fixed cost
    per run on every worker. A bundle that Beam retries after it wrote its file leaves its
    records twice; :func:`pipelines.report.read_records` keeps one per episode.

    Workers share no memory with the launcher (other processes, other machines), so each
    DoFn instance also writes its totals as a small JSON file in ``progress_dir``, through
    Beam's file systems, at most every ``every_seconds`` and at the end of each bundle;
    ``pipelines.console.ProgressMonitor`` sums the files into one progress line.
    """

    def __init__(self, split: str, records_dir: str, progress_dir: str, every_seconds: float):
        self._split = split
        self._records_dir = records_dir
        self._progress_dir = progress_dir
        self._every = every_seconds

    def setup(self):
        self._progress_path = filesystems.join(self._progress_dir, f"{self._split}-{uuid.uuid4().hex}.json")
        self._totals = {"split": self._split, "episodes": 0, "failed": 0, "frames": 0}
        self._last = time.monotonic()

    def start_bundle(self):
        self._lines: list[str] = []

    def process(self, record: EpisodeRecord) -> None:
        self._lines.append(record.to_json())
        self._totals["episodes"] += 1
        self._totals["failed"] += record.status == "failed"
        self._totals["frames"] += record.frames
        if time.monotonic() - self._last >= self._every:
            self._publish()

    def finish_bundle(self):
        if self._lines:
            name = f"records-{self._split}-{uuid.uuid4().hex}.jsonl"
            partial = filesystems.join(self._records_dir, f"_partial-{name}")
            filesystems.write_bytes(partial, "".join(line + "\n" for line in self._lines).encode())
            filesystems.move(partial, filesystems.join(self._records_dir, name))
            self._lines = []
        self._publish()

    def _publish(self) -> None:
        self._last = time.monotonic()
        filesystems.write_bytes(self._progress_path, json.dumps(self._totals).encode())
