"""A background source's notes (a fallback it took) travel to report.json: the record of the
episode carries them, the run's report lists them, a merge keeps every part's."""

from __future__ import annotations

import json

from pipelines.merge import combine_reports
from pipelines.records import EpisodeRecord
from pipelines.report import build_report


def test_notes_of_written_episodes_are_listed_in_the_report():
    records = [
        EpisodeRecord("train/000001", "train", "written", frames=4, notes=["clean_plate camera image_0: 1 of 4 frames ..."]),
        EpisodeRecord("train/000000", "train", "written", frames=4),
        EpisodeRecord("train/000002", "train", "failed", reason="decode failed", stage="read"),
    ]
    # Records cross processes as JSON lines.
    records = [EpisodeRecord(**json.loads(r.to_json())) for r in records]
    report = build_report(records, recipe_name="r", recipe_sha256="x", input_dir="in", output_dataset="out", wall_seconds=1.0)
    assert report.notes == [{"key": "train/000001", "note": "clean_plate camera image_0: 1 of 4 frames ..."}]
    assert "notes: 1 (see report.json); first: train/000001: clean_plate camera image_0" in report.summary()


def test_a_merge_keeps_every_parts_notes():
    base = {"episodes_in": 1, "episodes_written": 1, "episodes_failed": 0, "output_episodes": 1, "frames": 4}
    parts = [{**base, "notes": [{"key": "train/000003", "note": "b"}]}, {**base, "notes": [{"key": "train/000001", "note": "a"}]}]
    combined = combine_reports(parts, ["p0", "p1"], output_dataset="out")
    assert combined["notes"] == [{"key": "train/000001", "note": "a"}, {"key": "train/000003", "note": "b"}]
