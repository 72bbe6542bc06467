"""Mask sources: where an episode's robot (and task-object) label maps come from.

A mask source has the shape of Beam's ``ModelHandler`` without any Beam in it:
``load_model()`` builds whatever is heavy (once per worker), ``segment(model, clip)``
turns one camera's whole, ordered episode into robot label maps, and
``segment_clip(model, clip)`` into a :class:`ClipMasks`: the robot's label maps and,
for sources that find them, the task objects' (``segmentation.labels``). The pipeline
calls ``segment_clip`` and wraps every source in one generic ``ModelHandler``
(``pipelines/handlers.py``), so adding a source means subclassing :class:`MaskSource`
and registering it; no pipeline change.

Recipes choose a source by name (``segmentation.source``); the rest of the
``segmentation`` section is validated against the source's ``Options`` dataclass.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import Any, ClassVar, Mapping

import numpy as np

from segmentation.frames import Frames
from segmentation.labels import OBJECT_MASK_SUFFIX, mask_feature_name


class SourceConfigError(ValueError):
    """A source cannot start with the options it was given (bad path, missing feature...).

    Raised by ``check()`` before any Beam work starts; the message names the key or path.
    """


@dataclasses.dataclass
class CameraClip:
    """One camera of one episode: every frame, in order.

    ``observation`` holds the episode's other per-step observation arrays (stacked over
    steps), so sources that read stored masks or depth can find them. ``instruction`` is
    the episode's language instruction ("" when the dataset has none), for sources that
    find the objects it names.
    """

    episode_key: str
    camera: str
    # (T, H, W, 3) uint8 RGB: a segmentation.frames.Frames in the pipeline, decoded on access
    # (``frames[a:b]`` a window, ``np.asarray(frames)`` the whole clip), or an array.
    frames: Any
    observation: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    instruction: str = ""


@dataclasses.dataclass
class ClipMasks:
    """What a mask source found in one camera clip."""

    # (T, H, W) uint8 label maps, an array or still-encoded Frames: 0 bg, 1 body, 2 arm, 3 gripper (segmentation/labels.py)
    robot: Any
    objects: Any = None  # (T, H, W) uint8: 0 none, k = task object k (1-based)
    object_names: tuple[str, ...] = ()  # name of object k at index k-1 (a prompt, or "object k")


@dataclasses.dataclass
class NoOptions:
    """Options of a source that takes none."""


class MaskSource(abc.ABC):
    """Base class of every mask source. Subclasses set ``name`` and ``Options``."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()

    def check(self, features: Mapping[str, Any], cameras: list[str]) -> None:
        """Raise :class:`SourceConfigError` if this source cannot run on a dataset.

        ``features`` maps observation feature names to their TFDS feature; ``cameras``
        are the cameras the recipe processes. Called once, before the pipeline starts.
        """

    def load_model(self) -> Any:
        """Build the model (weights, device). Returns an object, or ``None`` for model-free sources."""
        return None

    def object_cameras(self, features: Mapping[str, Any], cameras: list[str]) -> list[str]:
        """The cameras this source can give task-object masks for, known before any episode is read.

        The pipeline declares an ``<camera>_object_mask`` output feature for each of them
        when the recipe writes masks. Default: none (the source finds only the robot).
        """
        return []

    @abc.abstractmethod
    def segment(self, model: Any, clip: CameraClip) -> np.ndarray:
        """Label maps for every frame of ``clip``: ``(T, H, W)`` uint8, the project's convention."""

    def segment_clip(self, model: Any, clip: CameraClip) -> ClipMasks:
        """Robot and task-object masks of one clip. Default: robot only, via segment().

        Sources that find both in one pass (sam3) override this.
        """
        return ClipMasks(robot=self.segment(model, clip))


#: name -> source class, or "module:Class" for sources whose import is heavy (torch);
#: those are imported on first use so that reading a recipe stays fast.
MASK_SOURCES: dict[str, type[MaskSource] | str] = {
    "robotseg": "segmentation.robotseg.source:RobotSegMaskSource",
    "sam2": "segmentation.sam2_source:Sam2MaskSource",
    "sam3": "segmentation.sam3_source:Sam3MaskSource",
}


def register_mask_source(cls: type[MaskSource]) -> type[MaskSource]:
    """Class decorator: make ``cls`` available to recipes under ``cls.name``."""
    MASK_SOURCES[cls.name] = cls
    return cls


def mask_source_class(name: str) -> type[MaskSource]:
    """The registered class for ``name``; raises ``KeyError`` naming the known sources."""
    if name not in MASK_SOURCES:
        raise KeyError(f"unknown mask source {name!r}; known: {', '.join(sorted(MASK_SOURCES))}")
    entry = MASK_SOURCES[name]
    if isinstance(entry, str):
        module_name, class_name = entry.split(":")
        entry = getattr(importlib.import_module(module_name), class_name)
        MASK_SOURCES[name] = entry
    return entry


@dataclasses.dataclass
class DatasetMaskOptions:
    """``segmentation:`` keys of ``source: dataset``."""

    # Observation feature holding each camera's task-object label maps ({camera} is replaced).
    # Used for the cameras whose dataset has it; null: read no objects.
    object_feature: str | None = "{camera}" + OBJECT_MASK_SUFFIX


@register_mask_source
class DatasetMaskSource(MaskSource):
    """Label maps already stored in the episode: ``<camera>_robot_mask`` for the robot and,
    where the dataset has it, ``options.object_feature`` for the task objects."""

    name = "dataset"
    Options = DatasetMaskOptions

    def check(self, features, cameras):
        missing = [mask_feature_name(c) for c in cameras if mask_feature_name(c) not in features]
        if missing:
            raise SourceConfigError(
                f"segmentation.source=dataset needs the mask feature(s) "
                f"{', '.join('steps/observation/' + m for m in missing)}, which the input dataset lacks; "
                f"use a model source (robotseg, sam2) or generate masks first (configs/segment_robotseg.yaml)"
            )
        template = self.options.object_feature
        if template is None:
            return
        try:
            names = [template.format(camera=c) for c in cameras]
        except (KeyError, IndexError, ValueError) as e:
            raise SourceConfigError(
                f"segmentation.object_feature {template!r}: only the placeholder {{camera}} is allowed ({e!r})"
            ) from None
        absent = [n for n in names if n not in features]
        # The default names a feature that only some datasets have: without it there are no
        # objects to keep. A name the recipe chose must exist.
        if absent and template != DatasetMaskOptions.object_feature:
            raise SourceConfigError(
                f"segmentation.object_feature: the input dataset has no feature "
                f"{', '.join('steps/observation/' + n for n in absent)}; set segmentation.object_feature "
                f"to an existing object-mask feature, or null to read no objects"
            )

    def object_cameras(self, features, cameras):
        template = self.options.object_feature
        if template is None:
            return []
        return [c for c in cameras if template.format(camera=c) in features]

    def segment(self, model, clip):
        return _stored_label_maps(clip, mask_feature_name(clip.camera))

    def segment_clip(self, model, clip):
        robot = self.segment(model, clip)
        template = self.options.object_feature
        name = template.format(camera=clip.camera) if template is not None else None
        if name is None or name not in clip.observation:
            return ClipMasks(robot=robot)
        objects = _stored_label_maps(clip, name)
        count = max((int(window.max()) for _, window in _windows(objects) if window.size), default=0)
        return ClipMasks(robot=robot, objects=objects, object_names=tuple(f"object {k}" for k in range(1, count + 1)))


def _stored_label_maps(clip: CameraClip, feature: str) -> Frames | np.ndarray:
    """The ``(T, H, W)`` uint8 label maps of ``clip`` stored in observation ``feature``.

    Stored as one-channel PNGs (how TFDS writes a mask ``Image``), they are returned still
    encoded (a :class:`Frames`): nothing is decoded until a stage reads a window, and the
    output can write the same bytes.
    """
    labels = clip.observation[feature]
    if isinstance(labels, Frames) and len(labels.frame_shape) == 3:
        # (H, W, C) masks: the first channel holds the labels; re-encoded one-channel.
        labels = Frames.from_windows(
            (window[..., 0] for _, window in labels.windows()), "png", f"episode {clip.episode_key}, {feature}"
        )
    elif not isinstance(labels, Frames):
        labels = np.asarray(labels)
        if labels.ndim == 4:
            labels = labels[..., 0]
        labels = labels.astype(np.uint8)
    if tuple(labels.shape) != tuple(clip.frames.shape[:3]):
        raise ValueError(
            f"episode {clip.episode_key}, camera {clip.camera}: {feature} has shape {tuple(labels.shape)}, "
            f"which does not match frames {tuple(clip.frames.shape[:3])}"
        )
    return labels


def _windows(labels: Frames | np.ndarray):
    if isinstance(labels, Frames):
        return labels.windows()
    return [(0, labels)]
