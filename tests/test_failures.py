"""Nothing is lost: damaged input is counted, named and reported; the rest is written."""

from __future__ import annotations

import os
import shutil

import tensorflow_datasets as tfds

from tests.conftest import IN_PROCESS, read_failures, read_report, run_cli


def _record_offsets(path) -> list[int]:
    """Byte offset where each TFRecord starts (8-byte length, 4-byte crc, data, 4-byte crc)."""
    offsets, data = [], open(path, "rb").read()
    position = 0
    while position < len(data):
        offsets.append(position)
        length = int.from_bytes(data[position : position + 8], "little")
        position += 12 + length + 4
    return offsets


def test_truncated_shard_keeps_intact_episodes_and_names_lost_ones(bridge_dir, tmp_path):
    source = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_dir, source)
    train = source / "bridge_dataset-train.tfrecord-00000-of-00001"
    offsets = _record_offsets(train)
    assert len(offsets) == 25
    # Cut in the middle of episode 12: episodes 0..11 are intact, 12..24 are lost.
    cut = offsets[12] + (offsets[13] - offsets[12]) // 2
    with open(train, "r+b") as f:
        f.truncate(cut)

    out = tmp_path / "out"
    status = run_cli("run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}", *IN_PROCESS)

    assert status == 1  # some episodes failed
    report = read_report(out)
    assert report["episodes_in"] == 50
    assert report["episodes_written"] == 12 + 25
    assert report["episodes_failed"] == 13
    assert report["episodes_in"] == report["episodes_written"] + report["episodes_failed"]
    failures = read_failures(out)
    assert [f["key"] for f in failures] == [f"train/{i:06d}" for i in range(12, 25)]
    assert all(f["stage"] == "read" and os.path.basename(str(train)) in f["source"] for f in failures)
    builder = tfds.builder_from_directory(str(out / "bridge_dataset" / "1.0.0"))
    assert builder.info.splits["train"].num_examples == 12
    assert builder.info.splits["val"].num_examples == 25


def test_a_corrupt_record_fails_that_episode_only(bridge_dir, tmp_path):
    source = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_dir, source)
    val = source / "bridge_dataset-val.tfrecord-00000-of-00001"
    offsets = _record_offsets(val)
    data = bytearray(val.read_bytes())
    data[offsets[20] + 40] ^= 0xFF  # flip a byte inside episode 20's payload: its CRC fails
    val.write_bytes(bytes(data))

    out = tmp_path / "out"
    status = run_cli(
        "run",
        "configs/copy.yaml",
        "--set",
        f"input.dir={source}",
        "--set",
        f"output.dir={out}",
        "--set",
        "input.splits=[val]",
        *IN_PROCESS,
    )
    assert status == 1
    report = read_report(out)
    # Reading resynchronises at episode 21: only the damaged episode is lost.
    assert (report["episodes_in"], report["episodes_written"], report["episodes_failed"]) == (25, 24, 1)
    (failure,) = read_failures(out)
    assert failure["key"] == "val/000020"
    assert f"damaged bytes {offsets[20]}-{offsets[21]}" in failure["reason"]
    assert "record data fails its checksum" in failure["reason"]
