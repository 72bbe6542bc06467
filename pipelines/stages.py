"""The pipeline's stages as Beam transforms: read -> segment -> background -> compose.

The first, read, lives in ``pipelines.reading`` and the records and progress in
``pipelines.records``: modules that a copy's workers import without this one (and its
model packages).

Each stage passes good episodes on and turns a bad one into an :class:`EpisodeRecord`
on the ``records`` output, so every input episode ends as exactly one record: written or
failed, with its reason. The per-episode pixel work itself lives in ``augment/``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import time
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from augment.composite import clip_alpha, composite_clip, fit_clip_harmonization, prepare_background
from augment.plan import PlanSettings
from augment.previews import contact_sheet, gif_bytes, mask_coverage, png_bytes
from backgrounds.base import sample_indices
from pipelines import filesystems
from pipelines.episode import Episode
from pipelines.handlers import StageError, StageFailure, episode_plans, readable_error
from pipelines.records import RECORDS, EpisodeRecord, failed
from pipelines.rlds_io import provenance
from segmentation.frames import WINDOW_FRAMES, Frames, encode_frames, encode_image, window_of

log = logging.getLogger("oxe_augment")


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
        yield failed(key, episode.split, result.inference.stage, result.inference.reason, episode.source)
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
    # Frames decoded, composited and encoded at a time: what bounds a worker's memory.
    window_frames: int = WINDOW_FRAMES


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
            yield failed(key, episode.split, "compose", f"compose failed: {readable_error(e)}"[:2000], episode.source)
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
                notes=list(episode.notes),
            ),
        )

    def _outputs(self, episode: Episode) -> tuple[list[tuple[str, dict]], dict[str, float]]:
        plan = self._plan
        masks, objects = self._encoded_masks(episode)  # once per episode, shared by every output episode
        previews = episode.index < plan.previews
        if not plan.augments:
            # Copy, or only add masks: one output episode, every frame its original bytes.
            coverage = _coverage(episode, plan.cameras)
            if masks and previews:
                self._write_previews(episode, {camera: _PreviewFrames.of(episode, camera, 0) for camera in masks})
            return [(episode.key, episode.output_example({}, masks, self._provenance(episode, "copy"), objects))], coverage

        outputs = []
        if plan.keep_original:
            original = episode.output_example({}, masks, self._provenance(episode, "original"), objects)
            outputs.append((f"{episode.key}/original", original))
        encoded: dict[int, dict[str, list[bytes]]] = {v: {} for v in range(plan.plan.variants)}
        preview_frames: dict[str, _PreviewFrames] = {}
        coverage = _Coverage()
        for camera in plan.cameras:
            with _failing_as(f"camera {camera}"):
                if previews:
                    preview_frames[camera] = _PreviewFrames.of(episode, camera, plan.plan.variants)
                clips = self._compose_camera(episode, camera, coverage, preview_frames.get(camera))
                for variant, frames in clips.items():
                    encoded[variant][camera] = frames
        for variant in range(plan.plan.variants):
            provenance = self._provenance(episode, f"v{variant}")
            outputs.append((f"{episode.key}/v{variant}", episode.output_example(encoded[variant], masks, provenance, objects)))
        if previews:
            self._write_previews(episode, preview_frames)
        return outputs, coverage.means()

    def _compose_camera(
        self, episode: Episode, camera: str, coverage: "_Coverage", preview: "_PreviewFrames | None"
    ) -> dict[int, list[bytes]]:
        """Every variant of one camera, composited and encoded a window of frames at a time.

        A worker holds one window of decoded frames, masks and composites, whatever the
        episode's length; the encoded frames are all that accumulates.
        """
        plan = self._plan
        composite = plan.plan.composite
        fmt = plan.camera_formats[camera]
        frames = episode.frames(camera)
        # The same plans the background stage drew its backgrounds from.
        variants = episode_plans(episode, plan.plan, camera)
        masks = variants[0].masks  # shared by the variants
        backgrounds = [episode.backgrounds[(camera, v.variant)] for v in variants]
        harmonizations = self._harmonizations(frames, masks, backgrounds, variants)
        # A static background gets its transforms once per camera, not once per window.
        backgrounds = [prepare_background(b, v.camera_plan) for b, v in zip(backgrounds, variants)]
        encoded: dict[int, list[bytes]] = {v.variant: [] for v in variants}
        for start, window in frames.windows(plan.window_frames):
            stop = start + len(window)
            robot, objects = _label_windows(episode, camera, start, stop)
            coverage.add_window(camera, robot, objects)
            kept, _ = masks.of_labels(len(window), robot, objects)  # from the label maps just decoded, once per window
            alpha = clip_alpha(kept, composite)  # the kept mask is the same for every variant
            for variant, background, harmonization in zip(variants, backgrounds, harmonizations):
                static = getattr(background, "ndim", 3) == 3
                if not static:  # a per-frame background (original), transformed window by window
                    background = window_of(background, start, stop)
                clip = composite_clip(
                    window,
                    kept,
                    background,
                    variant.protected,
                    variant.camera_plan,
                    composite,
                    alpha,
                    harmonization,
                    background_prepared=static,
                )
                encoded[variant.variant] += encode_frames(clip, fmt)
                if preview is not None:
                    preview.add(variant.variant, start, clip)
            if preview is not None:
                preview.add(None, start, window)
        return encoded

    @staticmethod
    def _harmonizations(frames, masks, backgrounds, variants) -> list:
        """Each variant's colour harmonisation, fitted once on frames sampled through the episode."""
        if all(v.camera_plan.harmonize <= 0 for v in variants):
            return [None] * len(variants)
        indices = sample_indices(len(frames), HARMONIZE_SAMPLE_FRAMES)
        sample = np.asarray(frames[indices])
        _, foreground = masks.at(indices)
        fitted = []
        for variant, background in zip(variants, backgrounds):
            if getattr(background, "ndim", 3) == 4:
                background = np.asarray(background[indices])
            fitted.append(fit_clip_harmonization(sample, foreground, background, variant.camera_plan))
        return fitted

    def _encoded_masks(self, episode: Episode) -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
        """PNG label maps per camera to write: the robot's, and the task objects' for ``object_cameras``.

        They are already PNG (a source's masks are encoded when found; stored ones are
        passed through as the dataset holds them).
        """
        plan = self._plan
        if not plan.write_masks:
            return {}, {}
        masks = {camera: episode.masks[camera].encoded for camera in plan.cameras if camera in episode.masks}
        objects = {}
        for camera in plan.object_cameras:
            labels = episode.objects.get(camera)
            if labels is None:
                # No object found: the same all-zero PNG at every step.
                shape = episode.frames(camera).frame_shape[:2]
                labels = Frames([encode_image(np.zeros(shape, np.uint8), "png")] * episode.num_frames)
            objects[camera] = labels.encoded
        return masks, objects

    def _write_previews(self, episode: Episode, previews: dict[str, "_PreviewFrames"]) -> None:
        stem = filesystems.join(self._plan.preview_dir, episode.key.replace("/", "_"))
        files: list[tuple[str, Any, Any]] = []  # (path, encoder, its argument)
        for camera, frames in previews.items():
            original, variants = frames.clips()
            labels = _at(episode.masks.get(camera), frames.indices, original.shape[:3])
            objects = episode.objects.get(camera)
            objects = None if objects is None else _at(objects, frames.indices, original.shape[:3])
            sheet = contact_sheet(original, labels, variants, n_frames=self._plan.preview_frames, objects=objects)
            name = f"{stem}_{camera.replace('/', '_')}"  # a nested camera (images/wrist) is not a folder
            files += [(f"{name}.png", png_bytes, sheet), (f"{name}.gif", gif_bytes, [original, *variants])]
        # Pillow releases the GIL while it quantizes and compresses, so the files are encoded
        # side by side; an error is raised here, as if they had been encoded one by one.
        with concurrent.futures.ThreadPoolExecutor(PREVIEW_THREADS) as pool:
            encoded = list(pool.map(lambda file: file[1](file[2]), files))
        for (path, _, _), data in zip(files, encoded):
            filesystems.write_bytes(path, data)


#: Frames an episode's colour harmonisation is fitted on, spread through the episode.
HARMONIZE_SAMPLE_FRAMES = 64

#: Frames of a long episode kept for its previews (GIF and contact sheet), spread through it.
PREVIEW_SAMPLE_FRAMES = 48

#: Preview files (contact sheets, GIFs) of one episode encoded at a time.
PREVIEW_THREADS = 2


class _PreviewFrames:
    """The frames an episode's previews show (at most ``PREVIEW_SAMPLE_FRAMES``, evenly spaced),
    collected while the compose stage walks the episode a window at a time."""

    def __init__(self, indices: np.ndarray, variants: int):
        self.indices = indices
        self._original: list[np.ndarray] = []
        self._variants: dict[int, list[np.ndarray]] = {v: [] for v in range(variants)}

    @classmethod
    def of(cls, episode: Episode, camera: str, variants: int) -> "_PreviewFrames":
        preview = cls(sample_indices(episode.num_frames, PREVIEW_SAMPLE_FRAMES), variants)
        if not variants:  # nothing composited: the originals are read here
            preview.add(None, 0, np.asarray(episode.frames(camera)[preview.indices]), sampled=True)
        return preview

    def add(self, variant: int | None, start: int, window: np.ndarray, sampled: bool = False) -> None:
        """Keep the frames of ``window`` (frames ``start``... of the original, or of ``variant``) the previews show."""
        if sampled:
            chosen = window
        else:
            inside = self.indices[(self.indices >= start) & (self.indices < start + len(window))]
            chosen = window[inside - start]
        (self._original if variant is None else self._variants[variant]).extend(chosen)

    def clips(self) -> tuple[np.ndarray, list[np.ndarray]]:
        return np.stack(self._original), [np.stack(frames) for _, frames in sorted(self._variants.items())]


def _at(labels, indices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Label maps at ``indices``, zeros when there are none."""
    return np.zeros(shape, np.uint8) if labels is None else np.asarray(labels[indices])


class _Coverage:
    """Mean fraction of pixels per target (and of task objects, where found) over an episode's
    cameras, accumulated window by window."""

    def __init__(self):
        self._sums: dict[str, dict[str, float]] = {}  # camera -> key -> covered pixels
        self._pixels: dict[str, int] = {}

    def add(self, camera: str, episode: Episode, start: int, stop: int) -> None:
        self.add_window(camera, *_label_windows(episode, camera, start, stop))

    def add_window(self, camera: str, labels: np.ndarray | None, objects: np.ndarray | None) -> None:
        """Count one window's decoded robot label maps and object label maps (``None``: none)."""
        if labels is None:
            return
        sums = self._sums.setdefault(camera, {})
        for key, fraction in mask_coverage(labels).items():
            sums[key] = sums.get(key, 0.0) + fraction * labels.size
        if objects is not None:
            sums["objects"] = sums.get("objects", 0.0) + float(np.count_nonzero(objects))
        self._pixels[camera] = self._pixels.get(camera, 0) + labels.size

    def means(self) -> dict[str, float]:
        per_camera = [{k: v / max(self._pixels[c], 1) for k, v in sums.items()} for c, sums in self._sums.items()]
        if not per_camera:
            return {}
        keys = sorted({key for coverage in per_camera for key in coverage})
        return {key: float(np.mean([c[key] for c in per_camera if key in c])) for key in keys}


def _label_windows(episode: Episode, camera: str, start: int, stop: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The camera's robot and object label maps of frames ``start:stop`` decoded (``None`` where it has none)."""
    robot, objects = episode.masks.get(camera), episode.objects.get(camera)
    return (
        None if robot is None else window_of(robot, start, stop),
        None if objects is None else window_of(objects, start, stop),
    )


def _coverage(episode: Episode, cameras: list[str]) -> dict[str, float]:
    """:class:`_Coverage` of the whole episode, for outputs that composite nothing."""
    coverage = _Coverage()
    for camera in cameras:
        for start in range(0, episode.num_frames, WINDOW_FRAMES):
            coverage.add(camera, episode, start, min(start + WINDOW_FRAMES, episode.num_frames))
    return coverage.means()
