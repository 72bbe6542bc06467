"""Partitioned runs joined by ``oxe-augment merge``: one dataset, in input order, counts combined."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.conftest import IN_PROCESS, REPO, read_failures, read_report, run_cli
from tests.test_data_safety import load_every_episode, tree_hash
from tests.test_output_safety import cli_command


def record_offsets(path) -> list[int]:
    """Byte offset where each TFRecord starts (8-byte length, 4-byte crc, data, 4-byte crc)."""
    offsets, data, position = [], open(path, "rb").read(), 0
    while position < len(data):
        offsets.append(position)
        position += 12 + int.from_bytes(data[position : position + 8], "little") + 4
    return offsets


def split_records(dataset_dir, split: str) -> list[bytes]:
    """Every record of a split, in the order dataset_info.json lists its shards."""
    info = tfds.builder_from_directory(str(dataset_dir)).info.splits[split]
    files = [str(p) for p in info.filename_template.sharded_filepaths(len(info.shard_lengths))]
    return list(tf.data.TFRecordDataset(files).as_numpy_iterator())


@pytest.fixture(scope="module")
def damaged_bridge(bridge_dir, tmp_path_factory):
    """Bridge with the train shard cut inside episode 12: 12 intact, 13 lost."""
    source = tmp_path_factory.mktemp("damaged") / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_dir, source)
    train = source / "bridge_dataset-train.tfrecord-00000-of-00001"
    offsets = record_offsets(train)
    with open(train, "r+b") as f:
        f.truncate(offsets[12] + (offsets[13] - offsets[12]) // 2)
    return source


def copy_run(source, out, *sets: str) -> int:
    args = ["run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}"]
    for s in sets:
        args += ["--set", s]
    return run_cli(*args, *IN_PROCESS)


@pytest.fixture(scope="module")
def merged(damaged_bridge, tmp_path_factory):
    """Part 0 of 2, merge refused; part 1 unfinished, refused; part 1 run, merged. And a single run."""
    out = tmp_path_factory.mktemp("parts")
    statuses = {"part0": copy_run(damaged_bridge, out, "input.part=0/2")}
    statuses["merge_missing"] = run_cli("merge", out)
    (out / "parts" / "1-of-2").mkdir()  # as a crashed part leaves it
    statuses["merge_unfinished"] = run_cli("merge", out)
    statuses["part1"] = copy_run(damaged_bridge, out, "input.part=1/2")
    statuses["merge"] = run_cli("merge", out)
    single = tmp_path_factory.mktemp("single")
    statuses["single"] = copy_run(damaged_bridge, single)
    return statuses, out, single


def test_merge_refuses_while_a_part_is_missing_or_unfinished(damaged_bridge, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "parts" / "0-of-3").mkdir(parents=True)
    (out / "parts" / "2-of-3" / "bridge_dataset" / "1.0.0").mkdir(parents=True)
    (out / "parts" / "2-of-3" / "bridge_dataset" / "1.0.0" / "dataset_info.json").write_text("{}")
    (out / "parts" / "2-of-3" / "report.json").write_text("{}")  # a report, but no part.json: cut short
    assert run_cli("merge", out) == 2
    message = capsys.readouterr().err
    assert f"unfinished: {out}/parts/0-of-3 (no report.json: the part has not finished)" in message
    assert f"missing: {out}/parts/1-of-3" in message
    assert f"unfinished: {out}/parts/2-of-3 (no part.json: cut short" in message
    assert not (out / "bridge_dataset").exists() and not (out / "report.json").exists()
    assert run_cli("merge", tmp_path / "nothing") == 2
    assert "no parts to merge" in capsys.readouterr().err


def test_merge_waits_for_every_part(merged):
    statuses, _, _ = merged
    assert statuses["part0"] == 0  # part 0 reads train episodes 0..11: all intact
    assert statuses["merge_missing"] == 2
    assert statuses["merge_unfinished"] == 2
    assert statuses["part1"] == 1  # its train episodes 12..24 are lost
    assert statuses["merge"] == 0


def test_merged_dataset_equals_a_single_run_record_for_record(merged):
    _, out, single = merged
    dataset, reference = out / "bridge_dataset" / "1.0.0", single / "bridge_dataset" / "1.0.0"
    builder = tfds.builder_from_directory(str(dataset))
    assert builder.info.splits["train"].shard_lengths == [12]  # part 1 wrote no train episode
    assert builder.info.splits["val"].shard_lengths == [12, 13]
    assert builder.info.features.to_json() == tfds.builder_from_directory(str(reference)).info.features.to_json()
    for split in ("train", "val"):
        assert split_records(dataset, split) == split_records(reference, split), split
    episodes = list(tfds.as_numpy(builder.as_dataset(split="val")))
    assert len(episodes) == 25
    assert [e["episode_metadata"]["augmentation"].decode().count("val/0000") for e in episodes] == [1] * 25


def test_merged_report_and_failures_add_up(merged):
    _, out, single = merged
    report, reference = read_report(out), read_report(single)
    for key in ("episodes_in", "episodes_written", "episodes_failed", "output_episodes", "frames", "splits"):
        assert report[key] == reference[key], key
    assert (report["episodes_in"], report["episodes_written"], report["episodes_failed"]) == (50, 37, 13)
    assert [p["part"] for p in report["parts"]] == ["0-of-2", "1-of-2"]
    assert [p["episodes_in"] for p in report["parts"]] == [24, 26]  # train [0, 12) + val [0, 12); the rest
    assert report["output_dataset"] == str(out / "bridge_dataset" / "1.0.0")
    failures = read_failures(out)
    assert [f["key"] for f in failures] == [f"train/{i:06d}" for i in range(12, 25)]
    assert failures == read_failures(single)


def test_merge_does_not_replace_a_merged_dataset_unless_asked(merged, capsys):
    _, out, _ = merged
    assert run_cli("merge", out) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli("merge", out, "--overwrite") == 0
    assert tfds.builder_from_directory(str(out / "bridge_dataset" / "1.0.0")).info.splits["val"].num_examples == 25


# ---------------------------------------------------------------------------------------
# Safety (issue 21): copies, not links; every shard checked; nothing stale; one line on errors

TRAIN = "bridge_dataset-train.tfrecord-00000-of-00001"


@pytest.fixture
def parts(merged, tmp_path):
    """A private copy of the two finished parts (no merged output yet)."""
    out = tmp_path / "out"
    shutil.copytree(merged[1] / "parts", out / "parts")
    return out


def test_merged_shards_are_copies_a_damaged_part_does_not_reach(parts):
    assert run_cli("merge", parts) == 0
    merged = parts / "bridge_dataset" / "1.0.0" / TRAIN
    part_shard = parts / "parts" / "0-of-2" / "bridge_dataset" / "1.0.0" / TRAIN
    before = merged.read_bytes()
    assert os.stat(merged).st_ino != os.stat(part_shard).st_ino and os.stat(merged).st_nlink == 1
    with open(part_shard, "r+b") as f:  # damage the part in place
        f.seek(100)
        f.write(b"\0" * 64)
    assert merged.read_bytes() == before
    assert load_every_episode(parts / "bridge_dataset" / "1.0.0") == {"train": 12, "val": 25}


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_shard_that_differs_from_its_part_record_is_refused(parts, damage, capsys):
    part_shard = parts / "parts" / "0-of-2" / "bridge_dataset" / "1.0.0" / TRAIN
    data = bytearray(part_shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) // 2 :]
    part_shard.write_bytes(bytes(data))
    before = tree_hash(parts)
    assert run_cli("merge", parts) == 2
    err = capsys.readouterr().err
    assert f"part 0-of-2: {part_shard}" in err and ("bytes" if damage == "truncate" else "sha256") in err
    assert tree_hash(parts) == before  # nothing swapped in, no scratch left


def test_merge_leaves_nothing_stale_beside_the_merged_dataset(parts, capsys):
    (parts / "previews").mkdir()
    (parts / "previews" / "train_000099_image_0.png").write_bytes(b"an earlier run's preview")
    (parts / "report.html").write_text("an earlier run's report")
    before = tree_hash(parts)
    assert run_cli("merge", parts) == 2  # without --overwrite: they exist
    assert "already exists: report.html, previews" in capsys.readouterr().err
    assert tree_hash(parts) == before
    assert run_cli("merge", parts, "--overwrite") == 0
    assert not (parts / "previews").exists()  # the parts made no previews
    assert "an earlier run's report" not in (parts / "report.html").read_text()
    assert not list(parts.glob(".oxe-augment-run-*")) and not (parts / ".oxe-augment.lock").exists()


def _without_root_overrides() -> None:
    """In the child, before exec: drop the capabilities that let root write where the mode says no."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (from the bounding set: gone after exec)
        if prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


def test_merge_into_a_read_only_folder_is_one_line(merged, tmp_path):
    """Exit 2 and one line, not a trace (run without root's overrides when the tests run as root)."""
    out = tmp_path / "out"
    shutil.copytree(merged[1] / "parts", out / "parts")
    os.chmod(out, 0o555)
    try:
        done = subprocess.run(
            cli_command("merge", str(out)),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            preexec_fn=_without_root_overrides if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.chmod(out, 0o755)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: merge into {out}: Permission denied ({out}/.oxe-augment.lock)" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["parts"]
