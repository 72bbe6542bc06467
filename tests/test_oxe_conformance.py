"""OXE conformance: datasets with the feature trees of published Open X-Embodiment sets
(``tests/oxe_schemas.py``) go in and come out loadable.

For each schema: ``inspect`` finds exactly the cameras; ``configs/copy.yaml`` writes every
field of every episode back byte for byte (the parsed ``tf.train.Example`` features of
input and output records are equal, except the added provenance) and TFDS loads every
episode; an augmentation recipe (the drawn masks, procedural backgrounds) writes a
dataset with the source's feature tree plus provenance, in which only camera frames
changed, and TFDS loads it.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import oxe_schemas
from tests.conftest import IN_PROCESS, read_report, run_cli
from tests.oxe_schemas import BY_NAME, SCHEMAS

PROVENANCE_KEY = "episode_metadata/augmentation"
NAMES = [schema.name for schema in SCHEMAS]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Writes each schema's datasets once, on first use: ``get(name, with_masks)``."""
    root = tmp_path_factory.mktemp("oxe")
    built: dict[tuple[str, bool], pathlib.Path] = {}

    def get(name: str, with_masks: bool = False) -> pathlib.Path:
        if (name, with_masks) not in built:
            kind = "masked" if with_masks else "plain"
            built[(name, with_masks)] = oxe_schemas.write_dataset(BY_NAME[name], root / kind, with_masks=with_masks)
        return built[(name, with_masks)]

    return get


def records(dataset_dir: pathlib.Path, split: str) -> list[tf.train.Example]:
    """A split's records in TFDS's order, as parsed ``tf.train.Example``s."""
    builder = tfds.builder_from_directory(str(dataset_dir))
    files = [str(p) for p in builder.info.splits[split].filepaths]
    return [tf.train.Example.FromString(r) for r in tf.data.TFRecordDataset(files).as_numpy_iterator()]


def source_index(example: tf.train.Example, split: str) -> int:
    origin = json.loads(example.features.feature[PROVENANCE_KEY].bytes_list.value[0])
    source_split, index = origin["source_key"].split("/")
    assert source_split == split
    return int(index)


def features_tree(dataset_dir: pathlib.Path) -> dict:
    return json.loads((dataset_dir / "features.json").read_text())


def without_provenance(tree: dict, source_had_metadata: bool) -> dict:
    """An output ``features.json`` tree less what the tool adds to every dataset."""
    top = tree["featuresDict"]["features"]
    metadata = top["episode_metadata"]["featuresDict"]
    assert metadata["features"].pop("augmentation")["pythonClassName"].endswith("text_feature.Text")
    if not metadata["features"]:
        del metadata["features"]  # how features.json spells an empty dict
    if not source_had_metadata:
        assert metadata == {}
        del top["episode_metadata"]
    return tree


def load_every_episode(dataset_dir: pathlib.Path, split: str) -> list[dict]:
    builder = tfds.builder_from_directory(str(dataset_dir))
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


# ---------------------------------------------------------------------------------------
# inspect


@pytest.mark.parametrize("name", NAMES)
def test_inspect_finds_the_cameras(name, datasets, capsys):
    schema = BY_NAME[name]
    assert run_cli("inspect", datasets(name), "--json") == 0
    described = json.loads(capsys.readouterr().out)
    assert sorted(described["cameras"]) == sorted(schema.cameras)
    for rejected in schema.not_cameras:
        assert rejected in described["not_cameras"], f"{rejected} should be listed with the reason it is no camera"
    assert {s: v["episodes"] for s, v in described["splits"].items()} == dict(schema.splits)
    assert all(v["shards"] == schema.shards for v in described["splits"].values())


def test_inspect_text_says_why_depth_is_not_a_camera(datasets, capsys):
    assert run_cli("inspect", datasets("taco_play")) == 0
    text = capsys.readouterr().out
    assert "camera rgb_static: 15x20x3 png" in text  # undeclared encoding: sniffed
    assert "not a camera: depth_static: Tensor float32 (15, 20): not (H, W, 3)" in text
    assert "episode-level fields: (none besides steps)" in text


# ---------------------------------------------------------------------------------------
# copy: byte for byte, loadable


@pytest.mark.parametrize("name", NAMES)
def test_copy_reproduces_every_field_and_loads(name, datasets, tmp_path):
    schema = BY_NAME[name]
    source = datasets(name)
    out = tmp_path / "out"
    status = run_cli("run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}", *IN_PROCESS)
    assert status == 0
    copied = out / schema.name / schema.version
    for split, count in schema.splits:
        inputs = records(source, split)
        outputs = records(copied, split)
        assert len(outputs) == len(inputs) == count
        seen = set()
        for example in outputs:
            index = source_index(example, split)
            seen.add(index)
            written = dict(example.features.feature)
            del written[PROVENANCE_KEY]
            expected = dict(inputs[index].features.feature)
            assert sorted(written) == sorted(expected), f"{split}/{index}"
            for key in expected:
                assert written[key] == expected[key], f"{split}/{index}: {key} differs"
        assert seen == set(range(count))
        assert len(load_every_episode(copied, split)) == count

    source_tree = features_tree(source)
    had_metadata = "episode_metadata" in source_tree["featuresDict"]["features"]
    assert without_provenance(features_tree(copied), had_metadata) == source_tree


# ---------------------------------------------------------------------------------------
# augment: the drawn masks, procedural backgrounds


AUGMENT_RECIPE = """
name: conformance_augment
input:
  dir: {input}
segmentation:
  source: dataset
background:
  source: procedural
output:
  dir: {output}
  previews: 1
  preview_frames: 2
"""


def _camera_keys(schema) -> set[str]:
    return {f"steps/observation/{camera}" for camera in schema.cameras}


@pytest.mark.parametrize("name", NAMES)
def test_augment_changes_only_cameras_and_loads(name, datasets, tmp_path):
    schema = BY_NAME[name]
    source = datasets(name, with_masks=True)
    recipe = tmp_path / "augment.yaml"
    out = tmp_path / "out"
    recipe.write_text(AUGMENT_RECIPE.format(input=source, output=out))
    assert run_cli("run", recipe, *IN_PROCESS) == 0
    report = read_report(out)
    assert report["episodes_failed"] == 0
    augmented = out / schema.name / schema.version

    source_tree = features_tree(source)
    had_metadata = "episode_metadata" in source_tree["featuresDict"]["features"]
    assert without_provenance(features_tree(augmented), had_metadata) == source_tree

    cameras = _camera_keys(schema)
    split, count = schema.splits[0]
    inputs = records(source, split)
    outputs = records(augmented, split)
    assert len(outputs) == count
    changed = 0
    for example in outputs:
        index = source_index(example, split)
        written = dict(example.features.feature)
        del written[PROVENANCE_KEY]
        expected = dict(inputs[index].features.feature)
        assert sorted(written) == sorted(expected)
        for key in expected:
            if key in cameras:
                changed += written[key] != expected[key]
            else:  # depth, states, actions, language, masks: untouched
                assert written[key] == expected[key], f"{split}/{index}: {key} changed"
    assert changed > 0, "no camera frame was augmented"

    episodes = load_every_episode(augmented, split)
    assert len(episodes) == count
    for episode in episodes:
        steps = list(episode["steps"])
        for camera in schema.cameras:
            value = steps[0]["observation"]
            for key in camera.split("/"):
                value = value[key]
            assert value.dtype == np.uint8 and value.shape[-1] == 3


# ---------------------------------------------------------------------------------------
# Layouts around the data


def test_dataset_folder_reads_the_newest_version(datasets, tmp_path, capsys, caplog):
    folder = tmp_path / "kuka"
    newest = datasets("kuka")
    shutil.copytree(newest, folder / "0.1.0")
    shutil.copytree(newest, folder / "0.10.0")  # newer than 0.9.x by version, not by string order
    shutil.copytree(newest, folder / "0.9.1")
    (folder / "notes").mkdir()
    assert run_cli("inspect", folder) == 0
    captured = capsys.readouterr()
    assert f"({folder / '0.10.0'})" in captured.out
    assert "reading the newest" in caplog.text and "0.10.0" in caplog.text  # says which version it picked


def test_missing_shard_is_listed_and_not_fatal(datasets, tmp_path, capsys):
    source = tmp_path / "toto" / "0.1.0"
    shutil.copytree(datasets("toto"), source)
    (source / "toto-train.tfrecord-00001").unlink()
    assert run_cli("inspect", source) == 0
    assert "split train: 3 episodes in 2 shard(s), 1 missing" in capsys.readouterr().out


def test_no_shard_file_at_all_is_a_dataset_error(datasets, tmp_path, capsys):
    source = tmp_path / "kuka" / "0.1.0"
    shutil.copytree(datasets("kuka"), source)
    (source / "kuka-train.tfrecord-00000").unlink()
    assert run_cli("inspect", source) == 2
    assert "kuka-train.tfrecord-00000" in capsys.readouterr().err


def test_template_with_a_split_folder(datasets, tmp_path):
    """A template with a folder in it (``{SPLIT}/...``): TFDS reads it, and so does the tool."""
    source = tmp_path / "toto" / "0.1.0"
    shutil.copytree(datasets("toto"), source)
    info = json.loads((source / "dataset_info.json").read_text())
    (source / "train").mkdir()
    for split in info["splits"]:
        split["filepathTemplate"] = "{SPLIT}/data.{FILEFORMAT}-{SHARD_INDEX}"
    for index in range(2):
        (source / f"toto-train.tfrecord-{index:05d}").rename(source / "train" / f"data.tfrecord-{index:05d}")
    (source / "dataset_info.json").write_text(json.dumps(info))
    assert len(load_every_episode(source, "train")) == 3  # TFDS's own reader
    out = tmp_path / "out"
    assert run_cli("run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}", *IN_PROCESS) == 0
    assert read_report(out)["episodes_written"] == 3


def test_mask_of_a_nested_camera_is_written_beside_it(datasets):
    """``output.write_masks`` for camera ``images/wrist`` adds ``images/wrist_robot_mask``."""
    from pipelines.episode import encode_image
    from pipelines.rlds_io import RawEpisode, decode_episode, image_decoders, open_dataset, output_features

    source = open_dataset(str(datasets("nested_cameras")))
    features = output_features(source.features, mask_cameras={"images/wrist": (12, 12), "front_rgb_array": (14, 18)})
    observation = features["steps"]["observation"]
    assert observation["images"]["wrist_robot_mask"].shape == (12, 12, 1)
    assert observation["front_rgb_array_robot_mask"].shape == (14, 18, 1)
    assert "wrist_robot_mask" not in observation.keys()

    shard = source.shards["train"][0]
    data = next(iter(tf.data.TFRecordDataset(shard.path).as_numpy_iterator()))
    episode = decode_episode(source.features, RawEpisode("train/000000", "train", 0, data), image_decoders(source.features))
    labels = np.zeros((episode.num_frames, 12, 12), np.uint8)
    labels[:, 2:5, 3:7] = 3
    masks = {
        "images/wrist": [encode_image(m, "png") for m in labels],
        "front_rgb_array": [encode_image(np.zeros((14, 18), np.uint8), "png")] * episode.num_frames,
    }
    example = episode.output_example({}, masks, augmentation="{}")
    parsed = features.deserialize_example_np(features.serialize_example(example))
    step = list(parsed["steps"])[0]
    assert np.array_equal(step["observation"]["images"]["wrist_robot_mask"][..., 0], labels[0])
    assert step["observation"]["images"]["wrist"].shape == (12, 12, 3)  # the camera itself is untouched
    assert "augmentation" in parsed["episode_metadata"]  # created: the source has none


def test_tensor_camera_frames_and_output_are_arrays(datasets):
    from pipelines.episode import encode_image
    from pipelines.rlds_io import RawEpisode, decode_episode, image_decoders, open_dataset

    source = open_dataset(str(datasets("nested_cameras")))
    assert source.camera_format("front_rgb_array") == "tensor"
    assert source.camera_format("images/top") == "jpeg"
    data = next(iter(tf.data.TFRecordDataset(source.shards["train"][0].path).as_numpy_iterator()))
    episode = decode_episode(source.features, RawEpisode("train/000000", "train", 0, data), image_decoders(source.features))
    frames = episode.frames("front_rgb_array")
    assert frames.shape == (episode.num_frames, 14, 18, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[0], oxe_schemas.frame(14, 18, 0, 0))
    assert episode.frames("images/top").shape == (episode.num_frames, 16, 24, 3)
    written = encode_image(frames[0], "tensor")
    assert isinstance(written, np.ndarray) and np.array_equal(written, frames[0])


def test_very_long_episode_is_augmented(tmp_path):
    schema = oxe_schemas.Schema(
        "toto", "0.1.0", oxe_schemas._toto, ("image",), steps=(300,), splits=(("train", 1),), template=oxe_schemas.INDEX_TEMPLATE
    )
    source = oxe_schemas.write_dataset(schema, tmp_path / "in", with_masks=True)
    recipe = tmp_path / "augment.yaml"
    out = tmp_path / "out"
    recipe.write_text(AUGMENT_RECIPE.format(input=source, output=out))
    assert run_cli("run", recipe, *IN_PROCESS) == 0
    assert read_report(out)["frames"] == 300
    (episode,) = load_every_episode(out / "toto" / "0.1.0", "train")
    assert len(list(episode["steps"])) == 300


def test_shipped_recipes_read_data_a_fresh_clone_can_make():
    """Recipes resolve relative paths against the working directory (the repository root):
    their input is the sample data that ``make demo`` / ``oxe-augment sample-data`` writes."""
    import yaml

    repo = pathlib.Path(__file__).resolve().parents[1]
    makefile = (repo / "Makefile").read_text()
    for path in sorted((repo / "configs").glob("*.yaml")):
        recipe = yaml.safe_load(path.read_text())
        assert recipe["input"]["dir"] == "data/sample/oxe_augment_sample/1.0.0", path.name
    assert "SAMPLE := data/sample/oxe_augment_sample/1.0.0" in makefile
    assert "../shared" not in (repo / "README.md").read_text()
