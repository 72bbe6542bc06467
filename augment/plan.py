"""The plan of one (episode, camera, variant): what stays, what is replaced, which randomness.

Two pipeline stages must agree on it: the background stage draws a background from the
plan's seed and must not show what will be composited on top, and the compose stage
draws the same photometric parameters from the same seed and keeps the same pixels.
:func:`plan_variants` is the one place that derives it, and both stages call it with the
same inputs, so they cannot disagree.

What a recipe keeps, per frame:

* the robot's ``segmentation.targets`` (``robot``, ``arm``, ``gripper``),
* the task objects the mask source found, with ``segmentation.keep_objects``,
* the protected regions (``composite.protect``, ``composite.protect_feature``), static.

Everything else is background, replaced by the new scene.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from augment.regions import protected_mask
from augment.settings import CompositeSettings
from augment.variants import CameraPlan, plan_camera, variant_seed
from segmentation.labels import BODY, targets_mask


@dataclasses.dataclass(frozen=True)
class PlanSettings:
    """What the recipe says that every plan depends on (small and picklable)."""

    seed: int  # the recipe's seed
    variants: int  # output.variants_per_episode
    targets: tuple[str, ...]  # segmentation.targets: the robot parts kept
    keep_objects: bool  # segmentation.keep_objects: task objects are kept like the robot
    composite: CompositeSettings


class MaskView:
    """One of a clip's per-frame masks (``kept`` or ``foreground``) as a read-only array-like.

    ``view[a:b]``, ``view[indices]`` and ``view[t]`` compute only those frames from the
    label maps; ``np.asarray(view)`` computes the whole ``(T, H, W)`` bool clip.
    """

    def __init__(self, masks: "PlanMasks", which: int):
        self._masks = masks
        self._which = which  # 0 kept, 1 foreground

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._masks.shape

    def __len__(self) -> int:
        return self._masks.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, tuple):  # frames by the first entry, pixels by the rest
            masks = self[index[0]]
            return masks[index[1:]] if isinstance(index[0], (int, np.integer)) else masks[(slice(None), *index[1:])]
        if isinstance(index, (int, np.integer)):
            return self._masks.at([int(index)])[self._which][0]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._masks.window(start, stop)[self._which]
            return self._masks.at(np.arange(start, stop, step))[self._which]
        return self._masks.at(np.arange(len(self))[np.asarray(index)])[self._which]

    def __array__(self, dtype=None, copy=None):
        array = self._masks.window(0, len(self))[self._which]
        return array if dtype is None else array.astype(dtype)


@dataclasses.dataclass(frozen=True, eq=False)
class PlanMasks:
    """The per-frame masks of one camera's plans, computed from its label maps on demand.

    The label maps (a ``segmentation.frames.Frames`` or an array) are decoded only for the
    frames asked for, so a stage can walk a long episode a window at a time. Every variant
    of the camera shares this object: the masks do not depend on the variant.
    """

    shape: tuple[int, int, int]  # (T, H, W)
    robot: Any = None  # (T, H, W) uint8 robot label maps, None without a mask source
    objects: Any = None  # (T, H, W) uint8 object label maps (0 none, k object k), or None
    targets: tuple[str, ...] = ("robot",)
    keep_objects: bool = False

    def window(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(kept, foreground)`` of frames ``start`` to ``stop - 1``: ``(n, H, W)`` bool each.

        ``kept`` is composited over the new background (robot targets and kept objects);
        ``foreground`` is what the new background must not show, being in front of it
        (the whole robot, whichever parts are kept, and the kept objects).
        """
        stop = min(stop, self.shape[0])
        return self._masks(lambda labels: labels[start:stop])

    def at(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """``(kept, foreground)`` of the frames at ``indices``."""
        indices = np.asarray(indices, dtype=int)
        return self._masks(lambda labels: labels[indices])

    def of_labels(self, count: int, robot: np.ndarray | None, objects: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(kept, foreground)`` of ``count`` frames whose label maps the caller has already
        decoded (``(count, H, W)`` robot and object labels, ``None`` where there are none)."""
        nothing = np.zeros((count, *self.shape[1:]), bool)
        robot_targets, whole_robot, kept_objects = nothing, nothing, nothing
        if robot is not None:
            robot_targets = targets_mask(robot, self.targets)
            whole_robot = robot >= BODY
        if objects is not None and self.keep_objects:
            kept_objects = objects > 0
        return robot_targets | kept_objects, whole_robot | kept_objects

    @property
    def kept(self) -> MaskView:
        return MaskView(self, 0)

    @property
    def foreground(self) -> MaskView:
        return MaskView(self, 1)

    def _masks(self, take) -> tuple[np.ndarray, np.ndarray]:
        robot = None if self.robot is None else np.asarray(take(self.robot))
        objects = None if self.objects is None or not self.keep_objects else np.asarray(take(self.objects))
        count = len(take(np.arange(self.shape[0])))
        return self.of_labels(count, robot, objects)


@dataclasses.dataclass(frozen=True, eq=False)
class VariantPlan:
    """Everything decided for one (episode, camera, variant) before any pixel is drawn.

    The masks and regions are shared (the same objects) by the variants of one camera.
    """

    episode_key: str
    camera: str
    variant: int
    seed: int  # augment.variants.variant_seed(recipe seed, episode key, variant, camera)
    camera_plan: CameraPlan  # the photometric, robot and jitter parameters drawn from ``seed``
    masks: PlanMasks  # the kept and foreground masks of each frame, computed a window at a time
    protected: np.ndarray  # (H, W) bool: keeps the original pixels in every frame
    replace: np.ndarray  # (H, W) bool: may be replaced by the new background (all but protected)

    @property
    def kept(self) -> np.ndarray:
        """``(T, H, W)`` bool, the whole clip: composited over the new background."""
        return self.masks.kept.__array__()

    @property
    def foreground(self) -> np.ndarray:
        """``(T, H, W)`` bool, the whole clip: what the new background must not show."""
        return self.masks.foreground.__array__()


def plan_variants(
    settings: PlanSettings,
    episode_key: str,
    camera: str,
    clip_shape: tuple[int, int, int],
    robot: Any | None,
    objects: Any | None = None,
    observation: Mapping[str, Any] | None = None,
) -> list[VariantPlan]:
    """The plans of every variant of one camera of one episode, variant 0 first.

    ``clip_shape`` is the clip's ``(T, H, W)``; ``robot`` its robot label maps
    (``segmentation.labels``; an array or a ``segmentation.frames.Frames``), ``None`` when
    the recipe has no mask source; ``objects`` its task-object label maps (0 none, k
    object k) or ``None``; ``observation`` holds ``composite.protect_feature``'s array
    when the recipe names one.
    """
    steps, height, width = (int(n) for n in clip_shape)
    if robot is not None:
        _check_shape(robot, (steps, height, width), episode_key, camera, "robot label maps")
    if objects is not None and settings.keep_objects:
        _check_shape(objects, (steps, height, width), episode_key, camera, "object label maps")
    masks = PlanMasks((steps, height, width), robot, objects, tuple(settings.targets), settings.keep_objects)
    protected = protected_mask(settings.composite, camera, (height, width), observation)
    replace = ~protected
    for array in (protected, replace):
        array.flags.writeable = False  # shared by every variant and stage
    plans = []
    for variant in range(settings.variants):
        seed = variant_seed(settings.seed, episode_key, variant, camera)
        plans.append(
            VariantPlan(
                episode_key=episode_key,
                camera=camera,
                variant=variant,
                seed=seed,
                camera_plan=plan_camera(settings.composite, seed, (height, width)),
                masks=masks,
                protected=protected,
                replace=replace,
            )
        )
    return plans


def _check_shape(labels: Any, shape: tuple[int, int, int], episode_key: str, camera: str, what: str) -> None:
    found = tuple(getattr(labels, "shape", np.shape(labels)))
    if found != shape:
        raise ValueError(f"episode {episode_key}, camera {camera}: {what} of shape {found} for frames {shape}")
