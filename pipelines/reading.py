"""The first stage, read (shards -> episodes), and the whole per-episode work of a copy.

Kept apart from ``pipelines.stages`` so that a recipe that loads no model runs on workers
that never import one: unpickling a DoFn imports its module, and ``pipelines.stages``
imports Beam's ML package (torch, scipy: seconds and hundreds of MB per process). This
module imports Beam, TFDS and our own readers only.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterator

import apache_beam as beam

from pipelines.episode import Episode
from pipelines.frame_check import (
    FrameError,
    check_episode_images,
    describe_empty_images,
    describe_record_mismatch,
    image_features,
)
from pipelines.partition import read_part
from pipelines.records import RECORDS, EpisodeRecord, failed
from pipelines.rlds_io import RawEpisode, ReadFailure, ShardSpec, decode_episode, image_decoders, provenance


class ReadEpisodes(beam.PTransform):
    """Shards -> ``(key, Episode)``; unreadable episodes go to the records output.

    ``spread``: redistribute the episodes over the workers after reading. A shard holds
    many episodes, so with fewer shards than workers (or about as many) whole shards would
    leave workers idle; with plenty of shards the shard is the unit of parallelism and the
    redistribution only costs a shuffle of every record (see ``pipeline.spread_episodes``).
    """

    def __init__(self, shards: list[ShardSpec], features, max_episodes: int | None, fail_fast: bool, spread: bool = True):
        super().__init__()
        self._shards = shards
        self._features = features
        self._max_episodes = max_episodes
        self._fail_fast = fail_fast
        self._spread = spread

    def expand(self, pbegin):
        raw = (
            pbegin
            | "Shards" >> beam.Create(self._shards)
            | "ReadShard" >> beam.FlatMap(read_part, max_episodes=self._max_episodes)
        )
        if self._spread:
            raw = raw | "Spread" >> beam.Reshuffle()
        return raw | "Decode" >> beam.ParDo(_DecodeEpisode(self._features, self._fail_fast)).with_outputs(
            RECORDS, main="episodes"
        )


class _DecodeEpisode(beam.DoFn):
    """Raw record -> ``Episode``, checked against the declared features before any work.

    An episode TFDS could not load later (an image of the wrong size, empty bytes, a
    record that disagrees with ``features.json``) fails here, with the feature, camera
    and step named, instead of being written.
    """

    def __init__(self, features, fail_fast: bool):
        self._features = features
        self._fail_fast = fail_fast

    def setup(self):
        self._decoders = image_decoders(self._features)
        self._images = image_features(self._features)

    def process(self, item: RawEpisode | ReadFailure) -> Iterator[Any]:
        if isinstance(item, ReadFailure):
            if self._fail_fast:
                raise RuntimeError(f"{item.path}: {item.reason}")
            for key in item.keys():
                yield failed(key, item.split, "read", item.reason, item.path)
            return
        try:
            episode = decode_episode(self._features, item, self._decoders)
            check_episode_images(episode.steps, self._images)
        except FrameError as e:
            if self._fail_fast:
                raise
            yield failed(item.key, item.split, "check", str(e), item.source)
            return
        except Exception as e:  # noqa: BLE001 - any parse error is this episode's
            if self._fail_fast:
                raise
            # An empty image that TFDS decodes while parsing (a float depth image) is the
            # same fault as an empty camera frame, and said the same way.
            empty = describe_empty_images(self._features, item.data)
            if empty:
                yield failed(item.key, item.split, "check", empty, item.source)
                return
            reason = describe_record_mismatch(self._features, item.data) or f"{type(e).__name__}: {e}"
            yield failed(item.key, item.split, "read", f"cannot parse episode: {reason}"[:2000], item.source)
            return
        yield episode.key, episode


@dataclasses.dataclass(frozen=True)
class CopyPlan:
    """What a copy needs to write an episode: its provenance and how many cameras it counts."""

    cameras: int
    source_dataset: str  # "<name>/<version>"
    recipe_sha256: str
    tool_version: str


class CopyEpisodes(beam.DoFn):
    """``(key, Episode)`` -> the same episode with its provenance, and its record.

    The compose stage of a recipe that changes nothing (no masks, no backgrounds, no masks
    written): every field keeps its value and every frame its original bytes. The output
    is what ``pipelines.stages.ComposeVariants`` writes for such a recipe (key, example,
    ``variant: copy``; a test holds the two to the same bytes), without importing it.
    """

    def __init__(self, plan: CopyPlan, fail_fast: bool):
        self._plan = plan
        self._fail_fast = fail_fast

    def process(self, keyed: tuple[str, Episode]) -> Iterator[Any]:
        key, episode = keyed
        start = time.perf_counter()
        plan = self._plan
        augmentation = provenance(plan.source_dataset, episode.key, "copy", plan.recipe_sha256, plan.tool_version)
        try:
            example = episode.output_example({}, {}, augmentation, {})
        except Exception as e:  # noqa: BLE001 - this episode's, as in the compose stage
            if self._fail_fast:
                raise
            yield failed(key, episode.split, "compose", f"compose failed: {type(e).__name__}: {e}"[:2000], episode.source)
            return
        yield episode.key, example
        record = EpisodeRecord(
            key,
            episode.split,
            "written",
            steps=episode.num_frames,
            frames=episode.num_frames * plan.cameras,
            written=1,
            seconds={**episode.seconds, "compose": time.perf_counter() - start},
        )
        yield beam.pvalue.TaggedOutput(RECORDS, record)
