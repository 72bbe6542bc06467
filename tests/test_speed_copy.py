"""The copy's short path: same output as the compose stage, no model packages, records kept whole."""

from __future__ import annotations

import json
import subprocess
import sys

from pipelines.pipeline import spread_episodes
from pipelines.reading import CopyEpisodes, CopyPlan, _DecodeEpisode
from pipelines.records import RECORDS, EpisodeRecord, WriteRecords
from pipelines.report import read_records
from pipelines.rlds_io import open_dataset, output_features
from pipelines.tfrecords import read_shard
from tests.conftest import REPO


def _episodes(bridge_dir, count: int):
    source = open_dataset(str(bridge_dir))
    decode = _DecodeEpisode(source.features, fail_fast=True)
    decode.setup()
    raws = list(read_shard(source.shards["val"][0]))[:count]
    return source, [next(iter(decode.process(raw))) for raw in raws]


def _split_outputs(outputs) -> tuple[list, list]:
    examples = [o for o in outputs if not hasattr(o, "tag")]
    records = [o.value for o in outputs if getattr(o, "tag", None) == RECORDS]
    return examples, records


def test_copy_episodes_writes_what_the_compose_stage_writes_for_a_copy(bridge_dir):
    from pipelines.recipe import load_recipe
    from pipelines.stages import ComposePlan, ComposeVariants

    recipe = load_recipe(str(REPO / "configs" / "copy.yaml"))
    source, episodes = _episodes(bridge_dir, 3)
    common = dict(source_dataset="bridge_dataset/1.0.0", recipe_sha256="ab" * 32, tool_version="9.9")
    compose = ComposeVariants(
        ComposePlan(
            cameras=source.cameras,
            camera_formats={c: source.camera_format(c) for c in source.cameras},
            plan=recipe.plan_settings(),
            augments=False,
            keep_original=False,
            write_masks=False,
            previews=4,
            preview_frames=4,
            preview_dir="/nonexistent",  # a copy writes no previews
            **common,
        ),
        fail_fast=True,
    )
    copy = CopyEpisodes(CopyPlan(cameras=len(source.cameras), **common), fail_fast=True)
    for keyed in episodes:
        composed_examples, composed_records = _split_outputs(list(compose.process(keyed)))
        copied_examples, copied_records = _split_outputs(list(copy.process(keyed)))
        assert [key for key, _ in copied_examples] == [key for key, _ in composed_examples] == [keyed[0]]
        # The same bytes once serialized, as the writer serializes them.
        serialize = output_features(source.features, mask_cameras={}).serialize_example
        assert serialize(copied_examples[0][1]) == serialize(composed_examples[0][1])
        (copied,), (composed,) = copied_records, composed_records
        copied.seconds = composed.seconds = {}
        assert copied == composed
        assert copied.frames == 10 * len(source.cameras) and copied.status == "written"


def test_a_copy_imports_no_model_package(bridge_dir, tmp_path):
    """Launcher and (in-process) worker: torch, Beam's ML package and albumentations stay unloaded."""
    script = (
        "import sys\n"
        "from pipelines.cli import main\n"
        f"status = main(['run', 'configs/copy.yaml', '--set', 'input.dir={bridge_dir}', '--set', 'output.dir={tmp_path}',"
        " '--set', 'input.max_episodes=2', '--', '--runner=DirectRunner', '--direct_running_mode=in_memory'])\n"
        "print(status, sorted(m for m in ('torch', 'apache_beam.ml', 'albumentations', 'pipelines.stages') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["episodes_written"] == 4


def test_episodes_are_spread_only_when_shards_are_few_for_the_workers():
    assert not spread_episodes(20, 1)  # one worker: nothing to spread over
    assert spread_episodes(1, 2)
    assert spread_episodes(7, 2)
    assert not spread_episodes(8, 2)  # four shards per worker: whole shards are the unit
    assert spread_episodes(1000, None)  # a runner we did not pick (Dataflow): always


def test_write_records_leaves_whole_files_and_a_retried_bundle_counts_once(tmp_path):
    records = [EpisodeRecord(f"train/{i:06d}", "train", "written", frames=4) for i in range(3)]
    for attempt in range(2):  # the same bundle twice, as after a retry
        writer = WriteRecords("train", str(tmp_path / "records"), str(tmp_path / "progress"), every_seconds=60)
        writer.setup()
        writer.start_bundle()
        for record in records:
            assert writer.process(record) is None
        writer.finish_bundle()
    files = sorted(p.name for p in (tmp_path / "records").iterdir())
    assert len(files) == 2 and all(name.startswith("records-train-") for name in files)  # no partial file left
    loaded = read_records(str(tmp_path / "records" / "records-*"))
    assert sorted(r.key for r in loaded) == [r.key for r in records]
    progress = [json.loads(p.read_text()) for p in (tmp_path / "progress").iterdir()]
    assert sorted(p["episodes"] for p in progress) == [3, 3]
