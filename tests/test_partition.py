"""Partitioned runs, library part: which shards or episode ranges part I of N reads."""

from __future__ import annotations

import itertools
import shutil

import pytest

from pipelines.partition import ShardWindow, episodes_in, parse_part, part_dir_name, part_of, read_part
from pipelines.rlds_io import RawEpisode, ReadFailure, ShardSpec, open_dataset


def shards_of(split: str, lengths: list[int]) -> list[ShardSpec]:
    specs, first = [], 0
    for index, length in enumerate(lengths):
        specs.append(ShardSpec(split, f"/data/x-{split}.tfrecord-{index:05d}-of-{len(lengths):05d}", index, first, length))
        first += length
    return specs


def covered(shards: list[ShardSpec]) -> list[tuple[str, int]]:
    """(split, index) of every episode the shards stand for, in order."""
    out = []
    for shard in shards:
        start, stop = (
            (shard.start, shard.stop)
            if isinstance(shard, ShardWindow)
            else (shard.first_index, shard.first_index + shard.expected)
        )
        out += [(shard.split, i) for i in range(start, stop)]
    return out


def test_whole_shards_in_contiguous_runs():
    shards = shards_of("train", [3, 3, 3, 3, 2])
    assert part_of(shards, 0, 2) == shards[0:2]
    assert part_of(shards, 1, 2) == shards[2:5]
    assert not any(isinstance(s, ShardWindow) for p in range(5) for s in part_of(shards, p, 5))
    assert [len(part_of(shards, p, 5)) for p in range(5)] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "lengths, parts",
    [([25], 4), ([25, 25], 3), ([10, 0, 7], 4), ([1], 3), ([4, 4, 4, 4], 4), ([5, 6, 7, 8, 9, 10, 11], 3), ([2, 3], 7)],
)
def test_parts_cover_every_episode_once_in_input_order(lengths, parts):
    shards = shards_of("train", lengths)
    chosen = [part_of(shards, p, parts) for p in range(parts)]
    assert list(itertools.chain.from_iterable(covered(c) for c in chosen)) == [("train", i) for i in range(sum(lengths))]
    assert sum(episodes_in(s) for c in chosen for s in c) == sum(lengths)
    # Deterministic: the same call gives the same answer.
    assert chosen == [part_of(shards, p, parts) for p in range(parts)]


def test_fewer_shards_than_parts_splits_by_episode_range():
    shards = shards_of("val", [25])
    windows = [part_of(shards, p, 4) for p in range(4)]
    assert [(w[0].start, w[0].stop) for w in windows] == [(0, 6), (6, 12), (12, 18), (18, 25)]
    assert all(w[0].path == shards[0].path and w[0].expected == 25 for w in windows)


def test_each_split_is_partitioned_on_its_own_and_order_is_kept():
    shards = shards_of("train", [5, 5, 5, 5]) + shards_of("val", [9])
    first = part_of(shards, 0, 2)
    assert [s.split for s in first] == ["train", "train", "val"]
    assert first[:2] == shards[:2]
    assert (first[2].start, first[2].stop) == (0, 4)
    assert covered(part_of(shards, 1, 2)) == [("train", i) for i in range(10, 20)] + [("val", i) for i in range(4, 9)]


def test_bad_parts_and_out_of_order_shards_are_refused():
    shards = shards_of("train", [3, 3])
    with pytest.raises(ValueError, match="part 2 of 2"):
        part_of(shards, 2, 2)
    with pytest.raises(ValueError, match="not in shard order"):
        part_of(shards[::-1], 0, 2)
    with pytest.raises(ValueError, match="input.part"):
        parse_part("1-of-2")
    with pytest.raises(ValueError, match="input.part"):
        parse_part("3/3")
    assert parse_part(" 1 / 4 ") == (1, 4)
    assert part_dir_name(1, 4) == "1-of-4"


def test_read_part_reads_only_the_window_of_a_real_shard(bridge_dir):
    (shard,) = open_dataset(str(bridge_dir)).shards["train"]
    window = part_of([shard], 1, 3)[0]
    items = list(read_part(window))
    assert [item.index for item in items] == list(range(8, 16))
    assert all(isinstance(item, RawEpisode) for item in items)
    whole = {item.index: item.data for item in read_part(shard)}
    assert all(item.data == whole[item.index] for item in items)
    # max_episodes keeps its meaning (split indexes below it).
    assert [item.index for item in read_part(window, max_episodes=10)] == [8, 9]


def test_read_part_clips_a_truncated_tail_to_the_window(bridge_dir, tmp_path):
    source = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_dir, source)
    (shard,) = open_dataset(str(source)).shards["train"]
    data = open(shard.path, "rb").read()
    with open(shard.path, "wb") as f:
        f.write(data[: len(data) // 2])  # episodes from about 12 on are lost
    first, last = part_of([shard], 0, 3)[0], part_of([shard], 2, 3)[0]
    assert all(isinstance(item, RawEpisode) for item in read_part(first))  # [0, 8): intact
    items = list(read_part(last))  # [16, 25): all lost
    assert len(items) == 1 and isinstance(items[0], ReadFailure)
    assert (items[0].first_index, items[0].lost) == (16, 9)
    assert items[0].keys() == [f"train/{i:06d}" for i in range(16, 25)]
