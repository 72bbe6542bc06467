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
from typing import Mapping

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


@dataclasses.dataclass(frozen=True, eq=False)
class VariantPlan:
    """Everything decided for one (episode, camera, variant) before any pixel is drawn.

    The mask arrays are shared (the same objects) by the variants of one camera.
    """

    episode_key: str
    camera: str
    variant: int
    seed: int  # augment.variants.variant_seed(recipe seed, episode key, variant, camera)
    camera_plan: CameraPlan  # the photometric, robot and jitter parameters drawn from ``seed``
    kept: np.ndarray  # (T, H, W) bool: composited over the new background (robot targets and kept objects)
    # (T, H, W) bool: what the new background must not show, because it is in front of it
    # (the whole robot, whichever parts are kept, and the kept objects).
    foreground: np.ndarray
    protected: np.ndarray  # (H, W) bool: keeps the original pixels in every frame
    replace: np.ndarray  # (H, W) bool: may be replaced by the new background (all but protected)


def plan_variants(
    settings: PlanSettings,
    episode_key: str,
    camera: str,
    clip_shape: tuple[int, int, int],
    robot: np.ndarray | None,
    objects: np.ndarray | None = None,
    observation: Mapping[str, np.ndarray] | None = None,
) -> list[VariantPlan]:
    """The plans of every variant of one camera of one episode, variant 0 first.

    ``clip_shape`` is the clip's ``(T, H, W)``; ``robot`` its robot label maps
    (``segmentation.labels``), ``None`` when the recipe has no mask source; ``objects``
    its task-object label maps (0 none, k object k) or ``None``; ``observation`` holds
    ``composite.protect_feature``'s array when the recipe names one.
    """
    steps, height, width = (int(n) for n in clip_shape)
    nothing = np.zeros((steps, height, width), bool)
    robot_targets, whole_robot = nothing, nothing
    if robot is not None:
        robot = _checked(robot, (steps, height, width), episode_key, camera, "robot label maps")
        robot_targets = targets_mask(robot, settings.targets)
        whole_robot = robot >= BODY
    kept_objects = nothing
    if objects is not None and settings.keep_objects:
        kept_objects = _checked(objects, (steps, height, width), episode_key, camera, "object label maps") > 0
    kept = robot_targets | kept_objects
    foreground = whole_robot | kept_objects
    protected = protected_mask(settings.composite, camera, (height, width), observation)
    replace = ~protected
    for array in (kept, foreground, protected, replace):
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
                kept=kept,
                foreground=foreground,
                protected=protected,
                replace=replace,
            )
        )
    return plans


def _checked(labels: np.ndarray, shape: tuple[int, int, int], episode_key: str, camera: str, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise ValueError(f"episode {episode_key}, camera {camera}: {what} of shape {labels.shape} for frames {shape}")
    return labels
