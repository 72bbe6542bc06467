"""What we change about TFDS's Beam writer, and why, in one place.

TFDS's writer (``tensorflow_datasets.core.writer.BeamWriter``) fails the whole job when a
split ends up with no examples ("The total number of generated examples is 0 ... This
should be >0!"). For us an empty split is a result, not a crash: every episode of it
failed and is named in ``failures.jsonl``, and the other splits must still be written.
:func:`tfds_writes` swaps in a writer that lets such a split through with no shards;
:func:`drop_empty_splits` then removes it from the written ``dataset_info.json`` so the
dataset TFDS loads lists only splits that hold episodes.

TFDS builds its writer and serializer internally by looking the classes up on their
modules, so the classes are swapped there for the duration of the write; Beam pickles
our subclasses into the pipeline, so every worker writes the same way.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import tensorflow_datasets as tfds
from tensorflow_datasets.core import writer as writer_lib

from pipelines.rlds_io import deterministic_serialization


class EmptySplitBeamWriter(writer_lib.BeamWriter):
    """TFDS's Beam writer, except that a split with no examples writes no shards."""

    def _check_num_examples(self, num_examples: int) -> int:
        return max(0, num_examples)


@contextlib.contextmanager
def tfds_writes() -> Iterator[None]:
    """Within this block TFDS writes deterministically and tolerates empty splits."""
    original = writer_lib.BeamWriter
    writer_lib.BeamWriter = EmptySplitBeamWriter
    try:
        with deterministic_serialization():
            yield
    finally:
        writer_lib.BeamWriter = original


def drop_empty_splits(dataset_dir: str) -> list[str]:
    """Remove splits without examples from ``dataset_dir``'s ``dataset_info.json``.

    Returns the names of the splits removed. When no split holds an example, the
    dataset folder is left for the caller to delete (a dataset without splits is not one).
    """
    builder = tfds.builder_from_directory(dataset_dir)
    info = builder.info
    empty = [name for name, split in info.splits.items() if split.num_examples == 0]
    if empty and len(empty) < len(info.splits):
        kept = [split for name, split in info.splits.items() if name not in empty]
        info.set_splits(tfds.core.SplitDict(kept))
        info.write_to_directory(dataset_dir)
    return empty
