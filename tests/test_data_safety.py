"""Never lose data: inputs are read-only, earlier outputs survive until a run has
finished, every split and every episode is accounted for, every written episode loads.

Each test runs the real command line with the real DirectRunner on real TFDS files
(copies of the shared Bridge dataset, damaged or edited on purpose).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines.tfrecords import masked_crc
from tests.conftest import IN_PROCESS, REPO, read_failures, read_report, run_cli

TRAIN = "bridge_dataset-train.tfrecord-00000-of-00001"
VAL = "bridge_dataset-val.tfrecord-00000-of-00001"


def tree_hash(root: pathlib.Path) -> str:
    """One hash over every file's path, size and bytes under ``root`` (and the folders)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def load_every_episode(dataset_dir: pathlib.Path) -> dict[str, int]:
    """Load every episode of every split with TFDS (as a training loader would)."""
    builder = tfds.builder_from_directory(str(dataset_dir))
    counts = {}
    for split in builder.info.splits:
        # Iterating the steps decodes every frame, as training would.
        episodes = tfds.as_numpy(builder.as_dataset(split=split))
        counts[split] = sum(1 for episode in episodes if list(episode["steps"]))
    return counts


def records(path: pathlib.Path) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def write_records(path: pathlib.Path, data: list[bytes]) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in data:
            writer.write(record)


def record_offsets(path: pathlib.Path) -> list[int]:
    offsets, data, position = [], path.read_bytes(), 0
    while position < len(data):
        offsets.append(position)
        position += 12 + int.from_bytes(data[position : position + 8], "little") + 4
    return offsets


def replace_image(record: bytes, camera: str, step: int, image: bytes) -> bytes:
    example = tf.train.Example.FromString(record)
    example.features.feature[f"steps/observation/{camera}"].bytes_list.value[step] = image
    return example.SerializeToString()


@pytest.fixture
def source(bridge_dir, tmp_path) -> pathlib.Path:
    """A private copy of Bridge, free to damage."""
    path = tmp_path / "data" / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_dir, path)
    return path


def copy(source, out, *extra) -> int:
    return run_cli("run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}", *extra, *IN_PROCESS)


# ---------------------------------------------------------------------------------------
# 1-2. Inputs are read-only; --check changes nothing


@pytest.mark.parametrize("where", ["same", "parent", "grandparent", "inside"])
def test_an_output_that_overlaps_the_input_is_refused_and_the_input_is_untouched(source, where, capsys):
    out = {"same": source, "parent": source.parent, "grandparent": source.parent.parent, "inside": source / "out"}[where]
    before = tree_hash(source)
    for extra in ([], ["--check"]):
        status = copy(source, out, "--set", "output.overwrite=true", *extra)
        assert status == 2
        message = capsys.readouterr().err
        assert str(out) in message and str(source) in message and "input" in message
    assert tree_hash(source) == before


def test_an_output_reached_through_a_link_is_resolved(source, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(source.parent.parent)  # .../data
    before = tree_hash(source)
    assert copy(source, link / "bridge_dataset" / "..", "--set", "output.overwrite=true") == 2
    assert "input" in capsys.readouterr().err
    assert tree_hash(source) == before


def test_check_changes_nothing_on_disk(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert copy(source, out, "--set", "input.max_episodes=2") == 0
    before = tree_hash(out)
    status = copy(source, out, "--set", "input.max_episodes=2", "--set", "output.overwrite=true", "--check")
    assert status == 0 and "ok" in capsys.readouterr().out
    assert tree_hash(out) == before


@pytest.mark.parametrize(
    "output, problem",
    [("file", "is a file"), ("/proc/oxe", "system folder")],
)
def test_check_rejects_an_unusable_output_location(source, tmp_path, output, problem, capsys):
    if output == "file":
        output = tmp_path / "a_file"
        output.write_text("not a folder")
    assert copy(source, output, "--check") == 2
    assert problem in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# 3. Atomic replacement


def test_a_killed_run_leaves_the_previous_output_exactly_as_it_was(source, tmp_path):
    out = tmp_path / "out"
    assert copy(source, out, "--set", "input.max_episodes=3") == 0
    before = tree_hash(out)
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 3, "val": 3}

    # Rerun over it with more work, and kill it once it is writing into its scratch folder.
    command = [
        str(REPO / ".venv" / "bin" / "oxe-augment"),
        "run",
        "configs/copy.yaml",
        "--set",
        f"input.dir={source}",
        "--set",
        f"output.dir={out}",
        "--set",
        "output.overwrite=true",
        "--",
        "--runner=DirectRunner",
        "--direct_running_mode=in_memory",
    ]
    if not os.path.exists(command[0]):
        command[0:1] = [sys.executable, "-m", "pipelines.cli"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    scratch = []
    while time.monotonic() < deadline and process.poll() is None:
        scratch = [p for p in out.glob(".oxe-augment-run-*") if any(p.rglob("*"))]
        if scratch:
            break
        time.sleep(0.2)
    assert scratch, "the run never started writing"
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    # The earlier output: same bytes, loads, no stale extra state beside it apart from
    # the killed run's scratch folder, which TFDS does not see as a dataset, and its lock.
    leftovers = list(out.glob(".oxe-augment-run-*")) + list(out.glob(".oxe-augment.lock"))
    assert len(leftovers) == 2
    for leftover in leftovers:
        shutil.move(str(leftover), str(tmp_path / leftover.name))
    assert tree_hash(out) == before
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 3, "val": 3}
    for leftover in leftovers:
        shutil.move(str(tmp_path / leftover.name), str(out / leftover.name))

    # The next run cleans the leftovers and replaces the output.
    assert copy(source, out, "--set", "input.max_episodes=4", "--set", "output.overwrite=true") == 0
    assert not list(out.glob(".oxe-augment-run-*")) and not (out / ".oxe-augment.lock").exists()
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 4, "val": 4}
    assert read_report(out)["episodes_in"] == 8


def test_overwrite_replaces_dataset_report_and_previews_together(sample_dir, tmp_path):
    out = tmp_path / "out"
    common = ["--set", f"input.dir={sample_dir}", "--set", f"output.dir={out}", *IN_PROCESS]
    assert run_cli("run", "configs/demo.yaml", "--set", "output.previews=2", *common) == 0
    assert len(list((out / "previews").glob("*.png"))) > 0
    # The second run writes no previews: the first run's must not stay beside its dataset.
    assert run_cli("run", "configs/demo.yaml", "--set", "output.previews=0", "--set", "output.overwrite=true", *common) == 0
    assert not (out / "previews").exists()
    assert read_report(out)["episodes_written"] == 3
    assert not list(out.glob(".oxe-augment-run-*"))


# ---------------------------------------------------------------------------------------
# 4. Every split accounted


def test_a_split_with_an_empty_shard_is_reported_and_the_other_split_is_written(source, tmp_path, capsys):
    (source / VAL).write_bytes(b"")
    out = tmp_path / "out"
    assert copy(source, out) == 1
    report = read_report(out)
    assert report["splits"]["val"] == {"episodes_in": 25, "episodes_written": 0, "episodes_failed": 25}
    assert report["splits"]["train"]["episodes_written"] == 25
    failures = read_failures(out)
    assert {f["key"] for f in failures} == {f"val/{i:06d}" for i in range(25)}
    assert all(VAL in f["source"] for f in failures)
    printed = capsys.readouterr().out
    assert "split val: nothing written" in printed and "shard ends after 0 of 25" in printed
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 25}


def test_features_that_disagree_with_the_records_name_the_feature(source, tmp_path, capsys):
    features = json.loads((source / "features.json").read_text())
    action = features["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]["action"]
    assert action["tensor"]["shape"]["dimensions"] == ["7"]
    action["tensor"]["shape"]["dimensions"] = ["6"]
    (source / "features.json").write_text(json.dumps(features))
    out = tmp_path / "out"
    assert copy(source, out, "--set", "input.max_episodes=2") == 1
    report = read_report(out)
    assert (report["episodes_in"], report["episodes_written"]) == (4, 0)
    reasons = {f["reason"] for f in read_failures(out)}
    assert reasons == {"cannot parse episode: steps/action: shape (6,) declared, record has 7 values per step over 10 steps"}
    assert "split train: nothing written" in capsys.readouterr().out
    assert not (out / "bridge_dataset").exists()  # no split holds an episode: no dataset


# ---------------------------------------------------------------------------------------
# 5. Damage costs only the damaged records


def test_garbage_in_the_middle_of_a_shard_costs_only_the_damaged_episode(source, tmp_path):
    shard = source / TRAIN
    offsets = record_offsets(shard)
    data = bytearray(shard.read_bytes())
    middle = offsets[12] + 2000
    data[middle : middle + 4096] = os.urandom(4096)
    shard.write_bytes(bytes(data))

    out = tmp_path / "out"
    assert copy(source, out, "--set", "input.splits=[train]") == 1
    report = read_report(out)
    assert (report["episodes_in"], report["episodes_written"], report["episodes_failed"]) == (25, 24, 1)
    (failure,) = read_failures(out)
    assert failure["key"] == "train/000012" and TRAIN in failure["source"]
    assert f"damaged bytes {offsets[12]}-{offsets[13]}" in failure["reason"] and "1 episode(s) lost" in failure["reason"]
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 24}


def test_the_reader_resynchronises_after_inserted_garbage_and_counts_from_the_index(tmp_path):
    from pipelines.rlds_io import ShardSpec
    from pipelines.tfrecords import read_shard

    good = [f"episode {i}".encode() * 50 for i in range(6)]
    path = tmp_path / "shard.tfrecord"
    write_records(path, good)
    offsets = record_offsets(path)
    data = path.read_bytes()
    # Episode 2 overwritten by garbage, episode 4 truncated to its header.
    damaged = data[: offsets[2]] + os.urandom(offsets[3] - offsets[2]) + data[offsets[3] : offsets[4] + 12] + data[offsets[5] :]
    path.write_bytes(damaged)
    items = list(read_shard(ShardSpec("train", str(path), 0, 0, 6)))
    kept = {item.index: item.data for item in items if hasattr(item, "data")}
    lost = [key for item in items if hasattr(item, "keys") for key in item.keys()]
    assert kept == {0: good[0], 1: good[1], 3: good[3], 5: good[5]}
    assert lost == ["train/000002", "train/000004"]


def test_masked_crc_matches_tensorflow_framing(tmp_path):
    path = tmp_path / "one.tfrecord"
    write_records(path, [b"hello"])
    data = path.read_bytes()
    assert int.from_bytes(data[8:12], "little") == masked_crc(data[:8])
    assert int.from_bytes(data[-4:], "little") == masked_crc(b"hello")


# ---------------------------------------------------------------------------------------
# 6. Every written episode loads


def test_frames_that_do_not_fit_their_feature_fail_their_episode_only(source, tmp_path):
    import cv2
    import numpy as np

    # One damaged frame in each of four episodes, each wrong in its own way.
    damage = {
        2: (cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes(), "JPEG of 32x32, declared 64x64"),
        3: (b"", "empty image (0 bytes)"),
        5: (b"\x00\x01" * 20, "not a JPEG or PNG image (40 bytes of unrecognised data)"),
        6: (cv2.imencode(".jpg", np.zeros((64, 64), np.uint8))[1].tobytes(), "JPEG has 1 channel(s), declared 3"),
    }
    shard = source / VAL
    data = records(shard)
    for episode, (image, _) in damage.items():
        data[episode] = replace_image(data[episode], "image_1", 3, image)
    write_records(shard, data)

    out = tmp_path / "out"
    assert copy(source, out, "--set", "input.splits=[val]", "--set", "input.max_episodes=8") == 1
    failures = read_failures(out)
    assert failures == [
        {
            "key": f"val/{episode:06d}",
            "split": "val",
            "stage": "check",
            "source": str(shard),
            "reason": f"camera image_1, step 3: {problem}",
        }
        for episode, (_, problem) in damage.items()
    ]
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"val": 4}


# ---------------------------------------------------------------------------------------
# 8. Order and metadata


def test_episodes_keep_input_order_and_the_source_metadata(source, tmp_path):
    out = tmp_path / "out"
    assert copy(source, out, "--set", "input.splits=[val]") == 0
    dataset = out / "bridge_dataset" / "1.0.0"
    builder = tfds.builder_from_directory(str(dataset))
    keys = [
        json.loads(e["episode_metadata"]["augmentation"])["source_key"] for e in tfds.as_numpy(builder.as_dataset(split="val"))
    ]
    assert keys == [f"val/{i:06d}" for i in range(25)]
    source_info = tfds.builder_from_directory(str(source)).info
    assert builder.info.citation == source_info.citation
    assert builder.info.description.startswith(source_info.description.strip())
    assert "oxe-augment" in builder.info.description and "copy" in builder.info.description
    written = json.loads((dataset / "dataset_info.json").read_text())
    assert written["releaseNotes"] == {"1.0.0": "Initial release."}


# ---------------------------------------------------------------------------------------
# 9. Names and values


@pytest.mark.parametrize(
    "override, message",
    [
        ("output.name=../escape", "output.name: '../escape' is not a dataset name"),
        ("output.name=a/b", "output.name: 'a/b' is not a dataset name"),
        ("output.version=1.0", "output.version"),
        ("output.version=v1", "output.version: 'v1' is not a version"),
        ("output.previews=-1", "output.previews: must be >= 0"),
        ("output.preview_frames=0", "output.preview_frames: must be >= 1"),
        ("output.variants_per_episode=0", "output.variants_per_episode: must be between 1 and 1023"),
        ("input.max_episodes=-3", "input.max_episodes: must be >= 1"),
        ("runner.workers=-1", "runner.workers: must be >= 0"),
        ("input.splits=[train", "--set input.splits: the value '[train' is not valid YAML"),
        ("composite.protect={image_9: [{box: [0, 0, 1, 1]}]}", "composite.protect.image_9: not a camera of this run"),
    ],
)
def test_bad_names_and_values_exit_2_naming_the_key(source, tmp_path, override, message, capsys):
    status = run_cli(
        "run",
        "configs/copy.yaml",
        "--set",
        f"input.dir={source}",
        "--set",
        f"output.dir={tmp_path / 'out'}",
        "--set",
        override,
        "--check",
    )
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
