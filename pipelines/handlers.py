"""Beam ``ModelHandler``s that run any mask source or background source.

Every source (``segmentation.sources.MaskSource``, ``backgrounds.base.BackgroundSource``)
already has the ``load_model`` / run shape; these handlers only adapt it to
``RunInference``: the source's model is built in ``load_model`` on the worker (the handler
itself is pickled and shipped), batches are whole episodes, and each camera of an episode
is one ordered video clip. A failure of one episode is returned as a
:class:`StageFailure` rather than raised, so one bad episode doesn't fail its batch.

Wrap them in ``KeyedModelHandler`` for ``(key, Episode)`` elements.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from augment.plan import PlanSettings, VariantPlan, plan_variants
from backgrounds.base import BackgroundNote, BackgroundRequest, BackgroundSource
from pipelines.episode import Episode
from segmentation.frames import Frames
from segmentation.sources import CameraClip, ClipMasks, MaskSource

#: Where RLDS datasets keep the language instruction, in the order looked at: the step
#: (Bridge, most of OXE), then the observation (RT-1's natural_language_instruction, others).
INSTRUCTION_FIELDS = (("language_instruction",), ("observation", "natural_language_instruction"), ("observation", "instruction"))


@dataclasses.dataclass
class StageFailure:
    """Why a stage could not process an episode."""

    stage: str
    reason: str


class StageError(ValueError):
    """A failure with where it happened (camera, step) already in the message."""


def readable_error(error: BaseException) -> str:
    """One line a person can act on: no OpenCV source paths, no tracebacks, no hex dumps."""
    if isinstance(error, StageError):
        return str(error)
    text = str(error).strip()
    if isinstance(error, cv2.error):
        # "OpenCV(5.0) /path/file.cpp:123: error: (-215:Assertion failed) cond in function 'f'"
        detail = text.split("error: ", 1)[-1]
        return f"image operation failed in OpenCV: {detail.splitlines()[0]}"
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class LoadedMaskSource:
    """A mask source with its model, called one clip at a time.

    With ``large_model`` Beam keeps this object in another process behind a proxy, where
    only method calls work: ``segment_clip(clip)`` is one call per clip returning compact
    label maps.
    """

    def __init__(self, source: MaskSource):
        self.source = source
        self.model = source.load_model()

    def segment_clip(self, clip: CameraClip) -> ClipMasks:
        return self.source.segment_clip(self.model, clip)


class LoadedBackgroundSource:
    """A background source with its model; ``generate_batch`` is one call per batch."""

    def __init__(self, source: BackgroundSource):
        self.source = source
        self.model = source.load_model()

    def generate_batch(self, requests: list[BackgroundRequest]) -> tuple[list[np.ndarray], list[BackgroundNote]]:
        """The backgrounds, and the notes the source made on the way (one call, so it also works
        through Beam's proxy of a shared model)."""
        backgrounds = self.source.generate_batch(self.model, requests)
        return backgrounds, self.source.take_notes()


class _SourceHandler(ModelHandler):
    """What both handlers share: batching, model sharing, fail-fast behaviour."""

    stage = ""

    def __init__(self, *, cameras: list[str], batch_size: int, large_model: bool, model_copies: int | None, fail_fast: bool):
        super().__init__()
        self._cameras = list(cameras)
        self._batch_size = batch_size
        self._large_model = large_model
        self._model_copies = model_copies
        self._fail_fast = fail_fast

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def share_model_across_processes(self) -> bool:
        return self._large_model

    def model_copies(self) -> int:
        return self._model_copies or 1

    def _failure(self, error: BaseException) -> StageFailure:
        if self._fail_fast:
            raise error
        detail = readable_error(error)
        return StageFailure(self.stage, f"{self.stage} failed: {detail}"[:2000])


class MaskSourceHandler(_SourceHandler):
    """Runs a mask source on every camera of each episode: the episode with its robot label
    maps (``Episode.masks``) and the task objects' (``Episode.objects``) where the source found any."""

    stage = "segment"

    def __init__(self, source: MaskSource, **kwargs):
        super().__init__(**kwargs)
        self._source = source

    def load_model(self) -> LoadedMaskSource:
        return LoadedMaskSource(self._source)

    def run_inference(self, batch: Sequence[Episode], model: LoadedMaskSource, inference_args=None) -> Iterable[PredictionResult]:
        results = []
        for episode in batch:
            start = time.perf_counter()
            try:
                masks, objects = {}, {}
                for camera in self._cameras:
                    found = self._segment(model, episode, camera)
                    masks[camera] = found.robot
                    if found.objects is not None:
                        objects[camera] = found.objects
                results.append(PredictionResult(episode, episode.with_masks(masks, objects, time.perf_counter() - start)))
            except Exception as e:  # noqa: BLE001 - reported per episode
                results.append(PredictionResult(episode, self._failure(e)))
        return results

    def _segment(self, model: LoadedMaskSource, episode: Episode, camera: str) -> ClipMasks:
        frames = episode.frames(camera)  # decoded only where the source reads it
        names = [n for n in episode.observation_names() if n not in self._cameras]
        clip = CameraClip(episode.key, camera, frames, episode.observation_view(names), episode_instruction(episode))
        found = model.segment_clip(clip)
        shape = frames.shape[:3]
        robot = label_clip(found.robot, shape, f"camera {camera}: masks")
        objects = None if found.objects is None else label_clip(found.objects, shape, f"camera {camera}: object masks")
        return ClipMasks(robot, objects, tuple(found.object_names))


def label_clip(labels: Any, shape: tuple[int, ...], what: str) -> Frames:
    """A source's ``(T, H, W)`` label maps as PNG per frame (:class:`Frames`), checked against ``shape``.

    Label maps the source already holds encoded (stored masks) are kept as they are; arrays
    are encoded once here, so the episode carries kilobytes per frame, not the decoded maps.
    """
    found = tuple(getattr(labels, "shape", np.shape(labels)))
    if found != tuple(shape):
        raise ValueError(f"{what} of shape {found} for frames of shape {tuple(shape)}")
    if isinstance(labels, Frames):
        return labels
    return Frames.from_array(np.asarray(labels).astype(np.uint8), "png", what)


def episode_instruction(episode: Episode) -> str:
    """The episode's language instruction (its first step's), "" when the dataset has none."""
    if not episode.steps:
        return ""
    for path in INSTRUCTION_FIELDS:
        value: Any = episode.steps[0]
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        if isinstance(value, np.ndarray):
            value = value.item() if value.size == 1 else None
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            return value
    return ""


class BackgroundSourceHandler(_SourceHandler):
    """Draws one background per (camera, variant) of each episode, batched across episodes.

    Each request follows the variant's plan (``augment.plan``): its seed, what it may
    replace, and what it must not show (the robot and the kept objects).
    """

    stage = "background"

    def __init__(self, source: BackgroundSource, *, plan: PlanSettings, **kwargs):
        super().__init__(**kwargs)
        self._source = source
        self._plan = plan

    def load_model(self) -> LoadedBackgroundSource:
        return LoadedBackgroundSource(self._source)

    def run_inference(
        self, batch: Sequence[Episode], model: LoadedBackgroundSource, inference_args=None
    ) -> Iterable[PredictionResult]:
        start = time.perf_counter()
        prepared: list[tuple[Episode, list[BackgroundRequest] | StageFailure]] = []
        for episode in batch:
            try:
                prepared.append((episode, self._requests(episode)))
            except Exception as e:  # noqa: BLE001
                prepared.append((episode, self._failure(e)))
        requests = [r for _, rs in prepared if isinstance(rs, list) for r in rs]
        try:
            backgrounds, notes = model.generate_batch(requests)
            backgrounds = iter(backgrounds)
        except Exception as e:  # noqa: BLE001 - the whole batch failed: report each episode
            failure = self._failure(e)
            return [PredictionResult(ep, failure) for ep, _ in prepared]
        seconds = (time.perf_counter() - start) / max(1, len(batch))
        results = []
        for episode, episode_requests in prepared:
            if isinstance(episode_requests, StageFailure):
                results.append(PredictionResult(episode, episode_requests))
                continue
            drawn = {(r.camera, r.variant): next(backgrounds) for r in episode_requests}
            # A note per (camera, text): the variants of one camera share a plate and its note.
            episode_notes = list(dict.fromkeys(n.text for n in notes if n.episode_key == episode.key))
            results.append(PredictionResult(episode, episode.with_backgrounds(drawn, seconds, episode_notes)))
        return results

    def _requests(self, episode: Episode) -> list[BackgroundRequest]:
        requests = []
        for camera in self._cameras:
            frames = episode.frames(camera)  # decoded only where the source reads it
            for plan in episode_plans(episode, self._plan, camera):
                requests.append(
                    BackgroundRequest(episode.key, camera, plan.variant, plan.seed, frames, plan.masks.foreground, plan.replace)
                )
        return requests


def episode_plans(episode: Episode, settings: PlanSettings, camera: str) -> list[VariantPlan]:
    """The plans of every variant of one camera of ``episode`` (``augment.plan.plan_variants``).

    The background and compose stages both call this, with the same episode and settings,
    so their seeds and masks agree.
    """
    composite = settings.composite
    observation = None
    if composite.protect_feature:
        observation = episode.observation_view([composite.protect_feature.format(camera=camera)])
    return plan_variants(
        settings,
        episode.key,
        camera,
        episode.frames(camera).shape[:3],
        episode.masks.get(camera),
        episode.objects.get(camera),
        observation,
    )
