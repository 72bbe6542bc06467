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
import traceback
from typing import Any, Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from augment.regions import protected_mask, replace_mask
from augment.variants import variant_seed
from backgrounds.base import BackgroundRequest, BackgroundSource
from pipelines.episode import Episode
from segmentation.labels import BODY
from segmentation.sources import CameraClip, MaskSource


@dataclasses.dataclass
class StageFailure:
    """Why a stage could not process an episode."""

    stage: str
    reason: str


class LoadedMaskSource:
    """A mask source with its model, called one clip at a time.

    With ``large_model`` Beam keeps this object in another process behind a proxy, where
    only method calls work: ``segment(clip)`` is one call per clip returning compact
    label maps.
    """

    def __init__(self, source: MaskSource):
        self.source = source
        self.model = source.load_model()

    def segment(self, clip: CameraClip) -> np.ndarray:
        return self.source.segment(self.model, clip)


class LoadedBackgroundSource:
    """A background source with its model; ``generate_batch`` is one call per batch."""

    def __init__(self, source: BackgroundSource):
        self.source = source
        self.model = source.load_model()

    def generate_batch(self, requests: list[BackgroundRequest]) -> list[np.ndarray]:
        return self.source.generate_batch(self.model, requests)


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
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        return StageFailure(self.stage, f"{self.stage} failed: {detail}"[:2000])


class MaskSourceHandler(_SourceHandler):
    """Runs a mask source on every camera of each episode: result ``{camera: labels}``."""

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
                masks = {camera: self._segment(model, episode, camera) for camera in self._cameras}
                results.append(PredictionResult(episode, episode.with_masks(masks, time.perf_counter() - start)))
            except Exception as e:  # noqa: BLE001 - reported per episode
                results.append(PredictionResult(episode, self._failure(e)))
        return results

    def _segment(self, model: LoadedMaskSource, episode: Episode, camera: str) -> np.ndarray:
        frames = episode.frames(camera)
        names = [n for n in episode.steps[0]["observation"] if n not in self._cameras]
        clip = CameraClip(episode.key, camera, frames, episode.observation_arrays(names))
        labels = np.asarray(model.segment(clip))
        if labels.shape != frames.shape[:3]:
            raise ValueError(f"camera {camera}: masks of shape {labels.shape} for frames of shape {frames.shape[:3]}")
        return labels.astype(np.uint8)


class BackgroundSourceHandler(_SourceHandler):
    """Draws one background per (camera, variant) of each episode, batched across episodes."""

    stage = "background"

    def __init__(self, source: BackgroundSource, *, seed: int, variants: int, composite, **kwargs):
        super().__init__(**kwargs)
        self._source = source
        self._seed = seed
        self._variants = variants
        self._composite = composite

    def load_model(self) -> LoadedBackgroundSource:
        return LoadedBackgroundSource(self._source)

    def run_inference(self, batch: Sequence[Episode], model: LoadedBackgroundSource, inference_args=None) -> Iterable[PredictionResult]:
        start = time.perf_counter()
        prepared: list[tuple[Episode, list[BackgroundRequest] | StageFailure]] = []
        for episode in batch:
            try:
                prepared.append((episode, self._requests(episode)))
            except Exception as e:  # noqa: BLE001
                prepared.append((episode, self._failure(e)))
        requests = [r for _, rs in prepared if isinstance(rs, list) for r in rs]
        try:
            backgrounds = iter(model.generate_batch(requests))
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
            results.append(PredictionResult(episode, episode.with_backgrounds(drawn, seconds)))
        return results

    def _requests(self, episode: Episode) -> list[BackgroundRequest]:
        requests = []
        for camera in self._cameras:
            frames = episode.frames(camera)
            labels = episode.masks.get(camera)
            robot = labels >= BODY if labels is not None else np.zeros(frames.shape[:3], bool)
            replace = replace_mask(episode_protected_mask(episode, self._composite, camera))
            for variant in range(self._variants):
                seed = variant_seed(self._seed, episode.key, variant, camera)
                requests.append(BackgroundRequest(episode.key, camera, variant, seed, frames, robot, replace))
        return requests


def episode_protected_mask(episode: Episode, composite, camera: str) -> np.ndarray:
    """``(H, W)`` bool: the camera's pixels the recipe keeps (``composite.protect`` regions
    and the ``composite.protect_feature`` mask, if any)."""
    observation = None
    if composite.protect_feature:
        observation = episode.observation_arrays([composite.protect_feature.format(camera=camera)])
    return protected_mask(composite, camera, episode.frames(camera).shape[1:3], observation)
