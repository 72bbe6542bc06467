"""Robot and task-object masks: the label convention, mask sources (stored masks, RobotSeg, SAM 2, SAM 3) and metrics."""

from segmentation.labels import (
    ARM,
    BACKGROUND,
    BODY,
    GRIPPER,
    TARGETS,
    mask_feature_name,
    object_mask_feature_name,
    target_mask,
    targets_mask,
)
from segmentation.sources import (
    MASK_SOURCES,
    CameraClip,
    ClipMasks,
    MaskSource,
    SourceConfigError,
    mask_source_class,
    register_mask_source,
)

__all__ = [
    "ARM",
    "BACKGROUND",
    "BODY",
    "GRIPPER",
    "TARGETS",
    "mask_feature_name",
    "object_mask_feature_name",
    "target_mask",
    "targets_mask",
    "MASK_SOURCES",
    "CameraClip",
    "ClipMasks",
    "MaskSource",
    "SourceConfigError",
    "mask_source_class",
    "register_mask_source",
]
