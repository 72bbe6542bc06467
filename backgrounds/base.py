"""Background sources: where the new scene behind the robot comes from.

Same shape as the mask sources (and Beam's ``ModelHandler``): ``load_model()`` once per
worker, ``generate_batch(model, requests)`` for many (episode, camera, variant)
requests. A background is drawn once per request from the request's seed and reused for
every frame of the episode, which is what keeps an augmented episode free of flicker.

Recipes choose a source by name (``background.source``); the rest of the
``background`` section is validated against the source's ``Options`` dataclass.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import inspect
from typing import Any, ClassVar

import numpy as np


class BackgroundConfigError(ValueError):
    """A background source cannot start with its options (empty library, missing model...)."""


@dataclasses.dataclass
class BackgroundRequest:
    """Everything a source may use to draw one background for one (episode, camera, variant)."""

    episode_key: str
    camera: str
    variant: int
    seed: int  # derived from (recipe seed, episode key, camera, variant) by augment.variants
    # (T, H, W, 3) uint8, the original frames. In the pipeline an array-like that decodes on
    # access (``frames[a:b]``, ``frames[indices]``): read only the frames you need.
    frames: Any
    # (T, H, W) bool: what is in front of the background in each frame, the whole robot (all
    # labels >= 1) and the kept task objects. A background must not show it: the clean plate
    # hides it, diffusion paints over it (the pipeline composites the kept parts back on top).
    # Array-like like ``frames``.
    foreground: Any
    replace: np.ndarray  # (H, W) bool, the pixels the recipe replaces when not covered by the foreground

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the camera."""
        return self.frames.shape[1], self.frames.shape[2]

    @property
    def steps(self) -> int:
        return len(self.frames)

    def sample(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``(frames, foreground)`` at ``count`` steps evenly spaced from the first to the last
        (every step of a shorter episode): ``(n, H, W, 3)`` uint8 and ``(n, H, W)`` bool.

        Per-episode statistics (a clean plate's median) come from such a sample, so what a
        source holds does not grow with the episode's length.
        """
        indices = sample_indices(self.steps, count)
        return np.asarray(self.frames[indices]), np.asarray(self.foreground[indices], bool)

    def foreground_union(self, window: int = 32) -> np.ndarray:
        """``(H, W)`` bool: every pixel the foreground covers in some frame, read ``window`` frames at a time."""
        union = np.zeros(self.size, bool)
        for start in range(0, self.steps, window):
            union |= np.asarray(self.foreground[start : start + window], bool).any(axis=0)
        return union

    def rng(self) -> np.random.Generator:
        """The request's own generator: same seed, same background."""
        return np.random.default_rng(self.seed)


def sample_indices(length: int, count: int) -> np.ndarray:
    """At most ``count`` indices evenly spaced from 0 to ``length - 1`` (all of them when ``length <= count``)."""
    if length <= count:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, num=count).round().astype(int))


@dataclasses.dataclass(frozen=True)
class BackgroundNote:
    """Something a source did for one request that the run's report must show: a fallback, a
    frame it could not use. The episode is still written; the note says how."""

    episode_key: str
    camera: str
    text: str


@dataclasses.dataclass
class NoOptions:
    """Options of a source that takes none."""


class BackgroundSource(abc.ABC):
    """Base class of every background source. Subclasses set ``name`` and ``Options``.

    ``generate`` returns ``(H, W, 3)`` uint8 for a static background (the usual case) or
    ``(T, H, W, 3)`` for one that follows the frames (``original``).
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    #: Where the source's options sit in the recipe, for error messages; ``mix`` sets
    #: ``background.sources[i]`` on its children.
    key_path: str = "background"

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.Options()

    def note(self, request: BackgroundRequest, text: str) -> None:
        """Record ``text`` about ``request`` for the run's report (see :meth:`take_notes`)."""
        # Kept in the instance's dict, so a subclass that does not call __init__ still has notes.
        self.__dict__.setdefault("_notes", []).append(BackgroundNote(request.episode_key, request.camera, text))

    def take_notes(self) -> list[BackgroundNote]:
        """The notes recorded since the last call, oldest first; the pipeline takes them after
        each ``generate_batch`` and files them with their episodes."""
        return self.__dict__.pop("_notes", [])

    def check(self) -> None:
        """Raise :class:`BackgroundConfigError` naming the key or path if the source cannot run."""

    def load_model(self) -> Any:
        """Build what is heavy (a diffusion pipeline, an image index). ``None`` if nothing."""
        return None

    @abc.abstractmethod
    def generate(self, model: Any, request: BackgroundRequest) -> np.ndarray:
        """The background for one request, at the camera's size."""

    def generate_batch(self, model: Any, requests: list[BackgroundRequest]) -> list[np.ndarray]:
        """Backgrounds for several requests; sources that batch on a GPU override this."""
        return [self.generate(model, request) for request in requests]


@dataclasses.dataclass
class BackgroundSpec:
    """A background source as a recipe names it: registry name, options, weight (in a ``mix``)."""

    source: str
    options: Any = None  # the source's ``Options`` dataclass; None: its defaults
    weight: float = 1.0


#: name -> class, or "module:Class" for sources whose import is heavy (imported on first use).
BACKGROUND_SOURCES: dict[str, type[BackgroundSource] | str] = {
    "original": "backgrounds.original:OriginalBackground",
    "procedural": "backgrounds.procedural:ProceduralBackground",
    "images": "backgrounds.images:ImageLibraryBackground",
    "clean_plate": "backgrounds.clean_plate:CleanPlateBackground",
    "mix": "backgrounds.mix:MixBackground",
    "diffusion": "backgrounds.diffusion:DiffusionInpaintBackground",
}


def register_background_source(cls: type[BackgroundSource]) -> type[BackgroundSource]:
    """Class decorator: make ``cls`` available to recipes under ``cls.name``."""
    BACKGROUND_SOURCES[cls.name] = cls
    return cls


def background_source_class(name: str) -> type[BackgroundSource]:
    """The registered class for ``name``; raises ``KeyError`` naming the known sources."""
    if name not in BACKGROUND_SOURCES:
        raise KeyError(f"unknown background source {name!r}; known: {', '.join(sorted(BACKGROUND_SOURCES))}")
    entry = BACKGROUND_SOURCES[name]
    if isinstance(entry, str):
        module_name, class_name = entry.split(":")
        entry = getattr(importlib.import_module(module_name), class_name)
        BACKGROUND_SOURCES[name] = entry
    return entry


def build_background_source(name: str, options: Any = None, files: Any = None) -> BackgroundSource:
    """The registered source ``name`` with ``options``.

    ``files`` (a ``backgrounds.images.FileAccess``) reaches the sources that read files
    (``images``, and ``mix`` for its children); the others do not take it.
    """
    source_class = background_source_class(name)
    if files is not None and "files" in inspect.signature(source_class).parameters:
        return source_class(options, files=files)
    return source_class(options)
