"""Mask sources: where an episode's robot label maps come from.

A mask source has the shape of Beam's ``ModelHandler`` without any Beam in it:
``load_model()`` builds whatever is heavy (once per worker), ``segment(model, clip)``
turns one camera's whole, ordered episode into label maps. The pipeline wraps every
source in one generic ``ModelHandler`` (``pipelines/handlers.py``), so adding a source
means subclassing :class:`MaskSource` and registering it; no pipeline change.

Recipes choose a source by name (``segmentation.source``); the rest of the
``segmentation`` section is validated against the source's ``Options`` dataclass.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import Any, ClassVar, Mapping

import numpy as np

from segmentation.labels import mask_feature_name


class SourceConfigError(ValueError):
    """A source cannot start with the options it was given (bad path, missing feature...).

    Raised by ``check()`` before any Beam work starts; the message names the key or path.
    """


@dataclasses.dataclass
class CameraClip:
    """One camera of one episode: every frame, in order.

    ``observation`` holds the episode's other per-step observation arrays (stacked over
    steps), so sources that read stored masks or depth can find them.
    """

    episode_key: str
    camera: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    observation: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


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

    @abc.abstractmethod
    def segment(self, model: Any, clip: CameraClip) -> np.ndarray:
        """Label maps for every frame of ``clip``: ``(T, H, W)`` uint8, the project's convention."""


#: name -> source class, or "module:Class" for sources whose import is heavy (torch);
#: those are imported on first use so that reading a recipe stays fast.
MASK_SOURCES: dict[str, type[MaskSource] | str] = {
    "robotseg": "segmentation.robotseg.source:RobotSegMaskSource",
    "sam2": "segmentation.sam2_source:Sam2MaskSource",
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


@register_mask_source
class DatasetMaskSource(MaskSource):
    """Label maps already stored in the episode as ``<camera>_robot_mask``."""

    name = "dataset"

    def check(self, features, cameras):
        missing = [mask_feature_name(c) for c in cameras if mask_feature_name(c) not in features]
        if missing:
            raise SourceConfigError(
                f"segmentation.source=dataset needs the mask feature(s) "
                f"{', '.join('steps/observation/' + m for m in missing)}, which the input dataset lacks; "
                f"use a model source (robotseg, sam2) or generate masks first (configs/segment_robotseg.yaml)"
            )

    def segment(self, model, clip):
        labels = np.asarray(clip.observation[mask_feature_name(clip.camera)])
        if labels.ndim == 4:
            labels = labels[..., 0]
        if labels.shape != clip.frames.shape[:3]:
            raise ValueError(
                f"episode {clip.episode_key}, camera {clip.camera}: mask shape {labels.shape} "
                f"does not match frames {clip.frames.shape[:3]}"
            )
        return labels.astype(np.uint8)
