"""The copy recipe on the real Bridge dataset: the output is the input, plus provenance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.conftest import IN_PROCESS, read_failures, read_report, run_cli
from tests.rlds_helpers import provenance, raw_examples


def assert_same_value(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same_value(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (bytes, str)):
        assert a == b, where
    else:
        assert np.array_equal(np.asarray(a), np.asarray(b)), where


@pytest.fixture(scope="module")
def bridge_copy(bridge_dir, tmp_path_factory):
    """Copy both splits with the default local runner in multi-process mode (2 workers)."""
    out = tmp_path_factory.mktemp("copy")
    status = run_cli(
        "run", "configs/copy.yaml", "--set", f"input.dir={bridge_dir}", "--set", f"output.dir={out}", "--set", "runner.workers=2"
    )
    return status, out, out / "bridge_dataset" / "1.0.0"


def test_copy_exits_zero_and_reports_every_episode(bridge_copy):
    status, out, _ = bridge_copy
    assert status == 0
    report = read_report(out)
    assert report["episodes_in"] == 50
    assert report["episodes_written"] == 50
    assert report["episodes_failed"] == 0
    assert report["frames"] == 50 * 10 * 4  # 10 steps, 4 cameras
    assert report["splits"]["train"]["episodes_written"] == 25
    assert report["wall_seconds"] > 0
    assert read_failures(out) == []


def test_copy_loads_with_tfds_and_iterates(bridge_copy):
    _, _, dataset = bridge_copy
    builder = tfds.builder_from_directory(str(dataset))
    assert builder.info.splits["train"].num_examples == 25
    assert builder.info.splits["val"].num_examples == 25
    episodes = list(tfds.as_numpy(builder.as_dataset(split="val")))
    assert len(episodes) == 25
    first_steps = list(episodes[0]["steps"])
    assert first_steps[0]["observation"]["image_0"].shape == (64, 64, 3)


@pytest.mark.parametrize("split", ["train", "val"])
def test_copy_keeps_every_field_and_image_byte(bridge_copy, bridge_dir, split):
    _, _, dataset = bridge_copy
    source = raw_examples(bridge_dir, split)
    copied = raw_examples(dataset, split)
    assert len(copied) == len(source) == 25
    seen = set()
    for example in copied:
        origin = provenance(example)
        assert origin["source_dataset"] == "bridge_dataset/1.0.0"
        assert origin["variant"] == "copy"
        assert len(origin["recipe_sha256"]) == 64 and origin["tool_version"]
        split_name, index = origin["source_key"].split("/")
        assert split_name == split
        seen.add(int(index))
        original = source[int(index)]
        metadata = dict(example["episode_metadata"])
        del metadata["augmentation"]
        assert_same_value(original["episode_metadata"], metadata, origin["source_key"])
        assert len(example["steps"]) == len(original["steps"])
        for t, (a, b) in enumerate(zip(original["steps"], example["steps"])):
            # Images are compared as their encoded bytes: nothing was re-encoded.
            assert_same_value(a, b, f"{origin['source_key']} step {t}")
    assert seen == set(range(25))


def test_copy_features_json_adds_only_provenance(bridge_copy, bridge_dir):
    _, _, dataset = bridge_copy
    source = json.loads((bridge_dir / "features.json").read_text())
    output = json.loads((dataset / "features.json").read_text())
    source_metadata = source["featuresDict"]["features"]["episode_metadata"]["featuresDict"]["features"]
    output_metadata = output["featuresDict"]["features"]["episode_metadata"]["featuresDict"]["features"]
    assert set(output_metadata) - set(source_metadata) == {"augmentation"}
    assert output_metadata["augmentation"]["pythonClassName"].endswith("text_feature.Text")
    del output_metadata["augmentation"]
    assert output == source


def test_one_split_by_override(bridge_dir, tmp_path):
    status = run_cli(
        "run",
        "configs/copy.yaml",
        "--set",
        f"input.dir={bridge_dir}",
        "--set",
        f"output.dir={tmp_path}",
        "--set",
        "input.splits=[val]",
        "--set",
        "input.max_episodes=3",
        *IN_PROCESS,
    )
    assert status == 0
    report = read_report(tmp_path)
    assert report["splits"] == {"val": {"episodes_in": 3, "episodes_written": 3, "episodes_failed": 0}}
    builder = tfds.builder_from_directory(str(tmp_path / "bridge_dataset" / "1.0.0"))
    assert list(builder.info.splits) == ["val"]


def test_shards_without_of_n_suffix_are_read(bridge_dir, tmp_path):
    """Shard names come from dataset_info.json's filepathTemplate, here one without a shard number."""
    source = tmp_path / "in" / "1.0.0"
    source.mkdir(parents=True)
    shutil.copy(bridge_dir / "features.json", source / "features.json")
    info = json.loads((bridge_dir / "dataset_info.json").read_text())
    for split in info["splits"]:
        split["filepathTemplate"] = "{DATASET}-{SPLIT}.{FILEFORMAT}"
    (source / "dataset_info.json").write_text(json.dumps(info))
    shutil.copy(bridge_dir / "bridge_dataset-val.tfrecord-00000-of-00001", source / "bridge_dataset-val.tfrecord")
    shutil.copy(bridge_dir / "bridge_dataset-train.tfrecord-00000-of-00001", source / "bridge_dataset-train.tfrecord")
    # TFDS itself reads this layout.
    assert len(list(tfds.builder_from_directory(str(source)).as_dataset(split="val").take(2))) == 2
    out = tmp_path / "out"
    status = run_cli(
        "run",
        "configs/copy.yaml",
        "--set",
        f"input.dir={source}",
        "--set",
        f"output.dir={out}",
        "--set",
        "input.max_episodes=2",
        *IN_PROCESS,
    )
    assert status == 0
    assert read_report(out)["episodes_written"] == 4


def test_inspect_lists_splits_and_cameras(bridge_dir, capsys):
    assert run_cli("inspect", bridge_dir) == 0
    text = capsys.readouterr().out
    assert "split train: 25 episodes" in text
    assert "split val: 25 episodes" in text
    assert "camera image_0: 64x64x3" in text
    assert "language_instruction" in text


def test_inspect_missing_folder_exits_2(tmp_path, capsys):
    assert run_cli("inspect", tmp_path / "nope") == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
