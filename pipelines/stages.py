"""The pipeline's stages as Beam transforms: read -> segment -> background -> compose.

Each stage passes good episodes on and turns a bad one into an :class:`EpisodeRecord`
on the ``records`` output, so every input episode ends as exactly one record: written or
failed, with its reason. The per-episode pixel work itself lives in ``augment/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from augment.composite import clip_alpha, composite_clip
from augment.previews import contact_sheet, gif_bytes, mask_coverage, png_bytes
from augment.variants import plan_camera, variant_seed
from pipelines import filesystems
from pipelines.episode import Episode, encode_image
from pipelines.handlers import StageFailure, episode_protected_mask
from pipelines.rlds_io import RawEpisode, ReadFailure, ShardSpec, decode_episode, image_decoders, provenance, read_shard
from segmentation.labels import targets_mask

RECORDS = "records"
log = logging.getLogger("oxe_augment")


@dataclasses.dataclass
class EpisodeRecord:
    """The fate of one input episode, for report.json and failures.jsonl."""

    key: str
    split: str
    status: str  # "written" | "failed"
    reason: str = ""
    stage: str = ""
    source: str = ""  # the shard file, for episodes lost while reading
    steps: int = 0
    frames: int = 0  # camera frames processed (steps x cameras)
    written: int = 0  # output episodes written from this one
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    coverage: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def failed(episode_key: str, split: str, stage: str, reason: str, source: str = "") -> beam.pvalue.TaggedOutput:
    return beam.pvalue.TaggedOutput(RECORDS, EpisodeRecord(episode_key, split, "failed", reason, stage, source))


# ---------------------------------------------------------------------------------------
# 1. Read


class ReadEpisodes(beam.PTransform):
    """Shards -> ``(key, Episode)``; unreadable episodes go to the records output."""

    def __init__(self, shards: list[ShardSpec], features, max_episodes: int | None, fail_fast: bool):
        super().__init__()
        self._shards = shards
        self._features = features
        self._max_episodes = max_episodes
        self._fail_fast = fail_fast

    def expand(self, pbegin):
        raw = (
            pbegin
            | "Shards" >> beam.Create(self._shards)
            | "ReadShard" >> beam.FlatMap(read_shard, max_episodes=self._max_episodes)
            # One shard holds many episodes: spread them over the workers.
            | "Spread" >> beam.Reshuffle()
        )
        return raw | "Decode" >> beam.ParDo(_DecodeEpisode(self._features, self._fail_fast)).with_outputs(RECORDS, main="episodes")


class _DecodeEpisode(beam.DoFn):
    def __init__(self, features, fail_fast: bool):
        self._features = features
        self._fail_fast = fail_fast

    def setup(self):
        self._decoders = image_decoders(self._features)

    def process(self, item: RawEpisode | ReadFailure) -> Iterator[Any]:
        if isinstance(item, ReadFailure):
            if self._fail_fast:
                raise RuntimeError(f"{item.path}: {item.reason}")
            for key in item.keys():
                yield failed(key, item.split, "read", item.reason, item.path)
            return
        try:
            episode = decode_episode(self._features, item, self._decoders)
        except Exception as e:  # noqa: BLE001 - any parse error is this episode's
            if self._fail_fast:
                raise
            yield failed(item.key, item.split, "read", f"cannot decode episode: {e}"[:2000])
            return
        yield episode.key, episode


# ---------------------------------------------------------------------------------------
# 2 and 3. Segment and draw backgrounds (RunInference)


class RunSourceStage(beam.PTransform):
    """RunInference with one of ``pipelines.handlers``'s handlers, failures to records."""

    def __init__(self, handler):
        super().__init__()
        self._handler = handler

    def expand(self, episodes):
        return (
            episodes
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            | "Route" >> beam.ParDo(_route_result).with_outputs(RECORDS, main="episodes")
        )


def _route_result(keyed_result) -> Iterator[Any]:
    key, result = keyed_result
    if isinstance(result.inference, StageFailure):
        episode: Episode = result.example
        yield failed(key, episode.split, result.inference.stage, result.inference.reason)
    else:
        yield key, result.inference


# ---------------------------------------------------------------------------------------
# 4. Compose the variants


@dataclasses.dataclass(frozen=True)
class ComposePlan:
    """What the compose stage needs from the recipe (small and picklable)."""

    cameras: list[str]
    camera_formats: dict[str, str]  # camera -> "jpeg" | "png", as the dataset stores it
    targets: list[str]
    seed: int
    variants: int
    augments: bool
    keep_original: bool
    write_masks: bool
    composite: Any  # augment.CompositeSettings
    previews: int
    preview_frames: int
    preview_dir: str
    source_dataset: str  # "<name>/<version>", for provenance
    recipe_sha256: str
    tool_version: str


class ComposeVariants(beam.DoFn):
    """One source episode -> its output episodes ``(out_key, example)`` and its record."""

    def __init__(self, plan: ComposePlan, fail_fast: bool):
        self._plan = plan
        self._fail_fast = fail_fast

    def _provenance(self, episode: Episode, variant: str) -> str:
        plan = self._plan
        return provenance(plan.source_dataset, episode.key, variant, plan.recipe_sha256, plan.tool_version)

    def process(self, keyed: tuple[str, Episode]) -> Iterator[Any]:
        key, episode = keyed
        start = time.perf_counter()
        try:
            outputs, coverage = self._outputs(episode)
        except Exception as e:  # noqa: BLE001
            if self._fail_fast:
                raise
            yield failed(key, episode.split, "compose", f"compose failed: {type(e).__name__}: {e}"[:2000])
            return
        for out_key, example in outputs:
            yield out_key, example
        seconds = {**episode.seconds, "compose": time.perf_counter() - start}
        cameras = len(self._plan.cameras)
        yield beam.pvalue.TaggedOutput(
            RECORDS,
            EpisodeRecord(
                key, episode.split, "written", steps=episode.num_frames, frames=episode.num_frames * cameras,
                written=len(outputs), seconds=seconds, coverage=coverage,
            ),
        )

    def _outputs(self, episode: Episode) -> tuple[list[tuple[str, dict]], dict[str, float]]:
        plan = self._plan
        # Encoded once per episode, shared by every output episode.
        masks = {
            camera: [encode_image(labels, "png") for labels in episode.masks[camera]]
            for camera in plan.cameras
            if plan.write_masks and camera in episode.masks
        }
        coverage = _coverage(episode, plan.cameras)
        if not plan.augments:
            # Copy, or only add masks: one output episode, every frame its original bytes.
            if masks and episode.index < plan.previews:
                self._write_previews(episode, {camera: [] for camera in masks})
            return [(episode.key, episode.output_example({}, masks, self._provenance(episode, "copy")))], coverage

        outputs = []
        if plan.keep_original:
            outputs.append((f"{episode.key}/original", episode.output_example({}, masks, self._provenance(episode, "original"))))
        variant_frames: dict[str, list[np.ndarray]] = {c: [] for c in plan.cameras}
        for camera in plan.cameras:
            frames = episode.frames(camera)
            labels = episode.masks.get(camera)
            foreground = targets_mask(labels, plan.targets) if labels is not None else np.zeros(frames.shape[:3], bool)
            protected = episode_protected_mask(episode, plan.composite, camera)
            alpha = clip_alpha(foreground, plan.composite)  # shared by the variants
            for variant in range(plan.variants):
                seed = variant_seed(plan.seed, episode.key, variant, camera)
                camera_plan = plan_camera(plan.composite, seed, frames.shape[1:3])
                background = episode.backgrounds[(camera, variant)]
                variant_frames[camera].append(
                    composite_clip(frames, foreground, background, protected, camera_plan, plan.composite, alpha)
                )
        for variant in range(plan.variants):
            frames = {
                camera: [encode_image(frame, plan.camera_formats[camera]) for frame in variant_frames[camera][variant]]
                for camera in plan.cameras
            }
            provenance = self._provenance(episode, f"v{variant}")
            outputs.append((f"{episode.key}/v{variant}", episode.output_example(frames, masks, provenance)))
        if episode.index < plan.previews:
            self._write_previews(episode, variant_frames)
        return outputs, coverage

    def _write_previews(self, episode: Episode, variant_frames: dict[str, list[np.ndarray]]) -> None:
        stem = filesystems.join(self._plan.preview_dir, episode.key.replace("/", "_"))
        for camera, variants in variant_frames.items():
            original = episode.frames(camera)
            labels = episode.masks.get(camera, np.zeros(original.shape[:3], np.uint8))
            sheet = contact_sheet(original, labels, variants, n_frames=self._plan.preview_frames)
            filesystems.write_bytes(f"{stem}_{camera}.png", png_bytes(sheet))
            filesystems.write_bytes(f"{stem}_{camera}.gif", gif_bytes([original, *variants]))


def _coverage(episode: Episode, cameras: list[str]) -> dict[str, float]:
    """Mean fraction of pixels per target over the episode's cameras."""
    per_camera = [mask_coverage(episode.masks[c]) for c in cameras if c in episode.masks]
    if not per_camera:
        return {}
    return {target: float(np.mean([c[target] for c in per_camera])) for target in per_camera[0]}


# ---------------------------------------------------------------------------------------
# Progress


class LogProgress(beam.DoFn):
    """Logs this worker's running totals every ``every_seconds`` (records pass through).

    Workers don't share counters, so each reports its own share of the split's
    ``expected`` episodes; the closing summary gives the job's totals.
    """

    def __init__(self, split: str, expected: int, every_seconds: float):
        self._split = split
        self._expected = expected
        self._every = every_seconds

    def setup(self):
        self._episodes = self._frames = self._failed = 0
        self._start = self._last = None

    def process(self, record: EpisodeRecord) -> Iterator[EpisodeRecord]:
        now = time.monotonic()
        if self._start is None:
            self._start = self._last = now
        self._episodes += 1
        self._frames += record.frames
        self._failed += record.status == "failed"
        if now - self._last >= self._every or self._episodes == self._expected:
            self._last = now
            log.warning(
                "progress %s [worker %d]: %d of %d episodes done here (%d failed), %d frames, %.1f frames/s",
                self._split, os.getpid(), self._episodes, self._expected, self._failed, self._frames,
                self._frames / max(now - self._start, 1e-3),
            )
        yield record
