"""The pipeline's stages as Beam transforms: read -> segment -> background -> compose.

Each stage passes good episodes on and turns a bad one into an :class:`EpisodeRecord`
on the ``records`` output, so every input episode ends as exactly one record: written or
failed, with its reason. The per-episode pixel work itself lives in ``augment/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from augment.composite import clip_alpha, composite_clip
from augment.plan import PlanSettings
from augment.previews import contact_sheet, gif_bytes, mask_coverage, png_bytes
from pipelines import filesystems
from pipelines.episode import Episode, encode_image
from pipelines.frame_check import FrameError, check_episode_images, describe_record_mismatch, image_features
from pipelines.handlers import StageError, StageFailure, episode_plans, readable_error
from pipelines.partition import read_part
from pipelines.rlds_io import RawEpisode, ReadFailure, ShardSpec, decode_episode, image_decoders, provenance

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
            | "ReadShard" >> beam.FlatMap(read_part, max_episodes=self._max_episodes)
            # One shard holds many episodes: spread them over the workers.
            | "Spread" >> beam.Reshuffle()
        )
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
            reason = describe_record_mismatch(self._features, item.data) or f"{type(e).__name__}: {e}"
            yield failed(item.key, item.split, "read", f"cannot parse episode: {reason}"[:2000], item.source)
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
    camera_formats: dict[str, str]  # camera -> "jpeg" | "png" | "tensor", as the dataset stores it
    plan: PlanSettings  # seeds, variants, what is kept, compositing (augment.plan)
    augments: bool
    keep_original: bool
    write_masks: bool
    previews: int
    preview_frames: int
    preview_dir: str
    source_dataset: str  # "<name>/<version>", for provenance
    recipe_sha256: str
    tool_version: str
    # Cameras whose <camera>_object_mask the output declares (with write_masks): every
    # written episode carries one, all zeros where the source found no objects.
    object_cameras: tuple[str, ...] = ()


@contextlib.contextmanager
def _failing_as(where: str) -> Iterator[None]:
    """Re-raise any error inside the block as a :class:`StageError` that starts with ``where``."""
    try:
        yield
    except StageError:
        raise
    except Exception as e:  # noqa: BLE001 - named, then reported per episode
        raise StageError(f"{where}: {readable_error(e)}") from e


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
            yield failed(key, episode.split, "compose", f"compose failed: {readable_error(e)}"[:2000])
            return
        for out_key, example in outputs:
            yield out_key, example
        seconds = {**episode.seconds, "compose": time.perf_counter() - start}
        cameras = len(self._plan.cameras)
        yield beam.pvalue.TaggedOutput(
            RECORDS,
            EpisodeRecord(
                key,
                episode.split,
                "written",
                steps=episode.num_frames,
                frames=episode.num_frames * cameras,
                written=len(outputs),
                seconds=seconds,
                coverage=coverage,
            ),
        )

    def _outputs(self, episode: Episode) -> tuple[list[tuple[str, dict]], dict[str, float]]:
        plan = self._plan
        masks, objects = self._encoded_masks(episode)  # once per episode, shared by every output episode
        coverage = _coverage(episode, plan.cameras)
        if not plan.augments:
            # Copy, or only add masks: one output episode, every frame its original bytes.
            if masks and episode.index < plan.previews:
                self._write_previews(episode, {camera: [] for camera in masks})
            return [(episode.key, episode.output_example({}, masks, self._provenance(episode, "copy"), objects))], coverage

        outputs = []
        if plan.keep_original:
            original = episode.output_example({}, masks, self._provenance(episode, "original"), objects)
            outputs.append((f"{episode.key}/original", original))
        composite = plan.plan.composite
        previews = episode.index < plan.previews
        # Each composited clip is encoded as soon as it is made, so only one is held in
        # memory at a time (all of them only for an episode that gets previews).
        encoded: dict[int, dict[str, list[bytes]]] = {v: {} for v in range(plan.plan.variants)}
        preview_frames: dict[str, list[np.ndarray]] = {c: [] for c in plan.cameras}
        for camera in plan.cameras:
            with _failing_as(f"camera {camera}"):
                frames = episode.frames(camera)
                # The same plans the background stage drew its backgrounds from.
                variants = episode_plans(episode, plan.plan, camera)
                alpha = clip_alpha(variants[0].kept, composite)  # the kept mask is the same for every variant
                for variant in variants:
                    background = episode.backgrounds[(camera, variant.variant)]
                    clip = composite_clip(
                        frames, variant.kept, background, variant.protected, variant.camera_plan, composite, alpha
                    )
                    encoded[variant.variant][camera] = [encode_image(frame, plan.camera_formats[camera]) for frame in clip]
                    if previews:
                        preview_frames[camera].append(clip)
        for variant in range(plan.plan.variants):
            provenance = self._provenance(episode, f"v{variant}")
            outputs.append((f"{episode.key}/v{variant}", episode.output_example(encoded[variant], masks, provenance, objects)))
        if previews:
            self._write_previews(episode, preview_frames)
        return outputs, coverage

    def _encoded_masks(self, episode: Episode) -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
        """PNG label maps per camera to write: the robot's, and the task objects' for ``object_cameras``."""
        plan = self._plan
        if not plan.write_masks:
            return {}, {}
        masks = {
            camera: [encode_image(labels, "png") for labels in episode.masks[camera]]
            for camera in plan.cameras
            if camera in episode.masks
        }
        objects = {}
        for camera in plan.object_cameras:
            labels = episode.objects.get(camera)
            if labels is None:
                labels = np.zeros(episode.frames(camera).shape[:3], np.uint8)
            objects[camera] = [encode_image(frame, "png") for frame in labels]
        return masks, objects

    def _write_previews(self, episode: Episode, variant_frames: dict[str, list[np.ndarray]]) -> None:
        stem = filesystems.join(self._plan.preview_dir, episode.key.replace("/", "_"))
        for camera, variants in variant_frames.items():
            original = episode.frames(camera)
            labels = episode.masks.get(camera, np.zeros(original.shape[:3], np.uint8))
            objects = episode.objects.get(camera)
            sheet = contact_sheet(original, labels, variants, n_frames=self._plan.preview_frames, objects=objects)
            name = f"{stem}_{camera.replace('/', '_')}"  # a nested camera (images/wrist) is not a folder
            filesystems.write_bytes(f"{name}.png", png_bytes(sheet))
            filesystems.write_bytes(f"{name}.gif", gif_bytes([original, *variants]))


def _coverage(episode: Episode, cameras: list[str]) -> dict[str, float]:
    """Mean fraction of pixels per target (and of task objects, where found) over the episode's cameras."""
    per_camera = []
    for camera in cameras:
        if camera not in episode.masks:
            continue
        coverage = mask_coverage(episode.masks[camera])
        if camera in episode.objects:
            coverage["objects"] = float((episode.objects[camera] > 0).mean())
        per_camera.append(coverage)
    if not per_camera:
        return {}
    keys = sorted({key for coverage in per_camera for key in coverage})
    return {key: float(np.mean([c[key] for c in per_camera if key in c])) for key in keys}


# ---------------------------------------------------------------------------------------
# Progress


class ReportProgress(beam.DoFn):
    """Publishes this worker's running totals for the launcher (records pass through).

    Workers share no memory with the launcher (other processes, other machines), so each
    DoFn instance writes its totals as a small JSON file in ``progress_dir``, through Beam's
    file systems, at most every ``every_seconds`` and at the end of each bundle;
    ``pipelines.console.ProgressMonitor`` sums the files into one progress line.
    """

    def __init__(self, split: str, progress_dir: str, every_seconds: float):
        self._split = split
        self._dir = progress_dir
        self._every = every_seconds

    def setup(self):
        self._path = filesystems.join(self._dir, f"{self._split}-{uuid.uuid4().hex}.json")
        self._totals = {"split": self._split, "episodes": 0, "failed": 0, "frames": 0}
        self._last = time.monotonic()

    def process(self, record: EpisodeRecord) -> Iterator[EpisodeRecord]:
        self._totals["episodes"] += 1
        self._totals["failed"] += record.status == "failed"
        self._totals["frames"] += record.frames
        if time.monotonic() - self._last >= self._every:
            self._publish()
        yield record

    def finish_bundle(self):
        self._publish()

    def _publish(self) -> None:
        self._last = time.monotonic()
        filesystems.write_bytes(self._path, json.dumps(self._totals).encode())
