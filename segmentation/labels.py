"""The project's robot label-map convention, used by every mask source and consumer.

A label map is a ``uint8`` array the size of its frame:

* ``0`` background,
* ``1`` robot body (base and any link that is neither arm nor gripper),
* ``2`` arm,
* ``3`` gripper (hand and fingers).

The whole robot is every label ``>= 1``. On disk a label map is a one-channel PNG
stored as ``steps/observation/<camera>_robot_mask``.

Task objects (what the robot handles: the cube, the towel) have label maps of their own,
``uint8`` the size of the frame: ``0`` no object, ``k`` object ``k`` (1-based, in the
order the mask source names them). On disk: ``steps/observation/<camera>_object_mask``.
"""

from __future__ import annotations

import numpy as np

BACKGROUND = 0
BODY = 1
ARM = 2
GRIPPER = 3

#: Targets a recipe or a model can ask for, in RobotSeg's object-id order (000, 001, 002).
TARGETS = ("arm", "gripper", "robot")

MASK_FEATURE_SUFFIX = "_robot_mask"
OBJECT_MASK_SUFFIX = "_object_mask"


def mask_feature_name(camera: str) -> str:
    """Name of the observation feature that holds ``camera``'s label maps."""
    return f"{camera}{MASK_FEATURE_SUFFIX}"


def object_mask_feature_name(camera: str) -> str:
    """Name of the observation feature that holds ``camera``'s task-object label maps."""
    return f"{camera}{OBJECT_MASK_SUFFIX}"


def target_mask(labels: np.ndarray, target: str) -> np.ndarray:
    """Boolean mask of ``target`` (``robot``, ``arm`` or ``gripper``) in a label map of any shape."""
    if target == "robot":
        return labels >= BODY
    if target == "arm":
        return labels == ARM
    if target == "gripper":
        return labels == GRIPPER
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")


def targets_mask(labels: np.ndarray, targets: tuple[str, ...] | list[str]) -> np.ndarray:
    """Union of several targets' masks."""
    out = np.zeros(labels.shape, dtype=bool)
    for target in targets:
        out |= target_mask(labels, target)
    return out


def label_map_from_targets(robot: np.ndarray, arm: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """Combine three boolean target masks into one label map.

    Gripper wins over arm, arm over body, so overlapping predictions resolve toward the
    finer part (a model's ``arm`` and ``gripper`` outputs usually overlap at the wrist).
    """
    labels = np.zeros(robot.shape, dtype=np.uint8)
    labels[robot] = BODY
    labels[arm] = ARM
    labels[gripper] = GRIPPER
    return labels
