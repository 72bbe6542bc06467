"""Partitioned runs: which shards (or episode ranges) of a split part I of N processes.

A large job is cut into N parts that run independently (array jobs on SLURM or Kubernetes,
a shell loop, several Dataflow jobs); each writes a complete output into
``<output.dir>/parts/I-of-N/`` and ``oxe-augment merge`` joins them (``pipelines.merge``).
The choice depends only on the split's shard list and (I, N), so a rerun of part I reads
exactly what the first attempt read.

Per split, parts take contiguous runs of whole shards, in shard order, when the split has
at least N shards. A split with fewer shards than parts is cut by episode ranges instead:
part I takes episodes ``[I*E//N, (I+1)*E//N)`` of the split's E episodes, as
:class:`ShardWindow`\\ s (a shard and the range of its episodes to read). Either way the
parts, in order, cover every episode of the split exactly once and in input order.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

from pipelines.rlds_io import RawEpisode, ReadFailure, ShardSpec
from pipelines.tfrecords import read_shard


@dataclasses.dataclass(frozen=True)
class ShardWindow(ShardSpec):
    """Only the episodes of ``shard`` whose split index lies in ``[start, stop)``.

    Still a :class:`ShardSpec` (``expected`` stays what ``dataset_info.json`` promises for
    the whole shard, so a truncated shard is still detected), but it must be read with
    :func:`read_part`, which skips the episodes outside the window.
    """

    start: int = 0
    stop: int = 0


_PART = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``; I counts from 0. Raises ``ValueError`` naming the problem."""
    match = _PART.match(str(text))
    if not match:
        raise ValueError(f"input.part: {text!r} is not I/N (e.g. 0/4: the first of 4 parts)")
    part, parts = int(match.group(1)), int(match.group(2))
    _check_part(part, parts)
    return part, parts


def part_dir_name(part: int, parts: int) -> str:
    """The folder of part I of N under ``<output.dir>/parts/``: ``I-of-N``."""
    _check_part(part, parts)
    return f"{part}-of-{parts}"


def episode_range(shard: ShardSpec) -> tuple[int, int]:
    """``[first, stop)``: the split indexes of the episodes ``shard`` (whole, or a window) stands for."""
    if isinstance(shard, ShardWindow):
        return shard.start, shard.stop
    return shard.first_index, shard.first_index + shard.expected


def episodes_in(shard: ShardSpec) -> int:
    """How many of the split's episodes ``shard`` (a whole shard or a window) stands for."""
    first, stop = episode_range(shard)
    return stop - first


def part_of(shards: list[ShardSpec], part: int, parts: int) -> list[ShardSpec]:
    """The shards (whole, or :class:`ShardWindow`\\ s) of part ``part`` of ``parts``.

    ``shards`` may hold several splits (each split's shards in order, as
    ``SourceDataset.shards`` lists them); each split is partitioned on its own and the
    result keeps the input's split and shard order. A part can get nothing of a split
    that has fewer episodes than there are parts.
    """
    _check_part(part, parts)
    chosen: list[ShardSpec] = []
    for split_shards in _by_split(shards):
        if len(split_shards) >= parts:
            count = len(split_shards)
            chosen += split_shards[part * count // parts : (part + 1) * count // parts]
        else:
            total = sum(shard.expected for shard in split_shards)
            chosen += _episode_range(split_shards, part * total // parts, (part + 1) * total // parts)
    return chosen


def read_part(shard: ShardSpec, max_episodes: int | None = None) -> Iterator[RawEpisode | ReadFailure]:
    """:func:`pipelines.tfrecords.read_shard` for a whole shard or a :class:`ShardWindow`.

    For a window the shard is read from its start (a TFRecord file cannot be entered in
    the middle) and only the window's episodes, or failures clipped to the window, are
    yielded. ``max_episodes`` keeps its meaning: split indexes below it.
    """
    if not isinstance(shard, ShardWindow):
        yield from read_shard(shard, max_episodes)
        return
    stop = shard.stop if max_episodes is None else min(shard.stop, max_episodes)
    for item in read_shard(shard, stop):
        if isinstance(item, RawEpisode):
            if item.index >= shard.start:
                yield item
            continue
        first = max(item.first_index, shard.start)
        lost = item.first_index + item.lost - first
        if lost > 0:
            yield dataclasses.replace(item, first_index=first, lost=lost)


def _check_part(part: int, parts: int) -> None:
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"input.part: part {part} of {parts} does not exist (need 0 <= I < N, N >= 1)")


def _by_split(shards: list[ShardSpec]) -> list[list[ShardSpec]]:
    groups: dict[str, list[ShardSpec]] = {}
    for shard in shards:
        groups.setdefault(shard.split, []).append(shard)
    for split, group in groups.items():
        indexes = [shard.shard_index for shard in group]
        if indexes != sorted(indexes) or len(set(indexes)) != len(indexes):
            raise ValueError(f"split {split!r}: shards are not in shard order ({indexes})")
    return list(groups.values())


def _episode_range(shards: list[ShardSpec], start: int, stop: int) -> list[ShardSpec]:
    """The shards covering split indexes ``[start, stop)``; partly covered ones as windows."""
    chosen: list[ShardSpec] = []
    for shard in shards:
        first, end = shard.first_index, shard.first_index + shard.expected
        lo, hi = max(start, first), min(stop, end)
        if lo >= hi:
            continue
        if (lo, hi) == (first, end):
            chosen.append(shard)
        else:
            chosen.append(ShardWindow(**dataclasses.asdict(shard), start=lo, stop=hi))
    return chosen
