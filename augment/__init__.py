"""Per-episode augmentation: variant seeds and plans, compositing, jitter, previews.

Plain numpy / OpenCV / albumentations; no Beam, no TensorFlow. The usual flow for one
camera of one episode::

    plans = plan_variants(settings, episode_key, camera, frames.shape[:3], robot_labels, object_labels)
    for plan in plans:  # one per variant
        background = ...  # drawn from plan.seed, not showing plan.foreground
        frames_out = composite_clip(frames, plan.kept, background, plan.protected, plan.camera_plan, settings.composite)

The names below are loaded on first use: albumentations imports torch (seconds), and
code that only reads a recipe (``augment.settings``) should not wait for it.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "CompositeSettings": "augment.settings",
    "PlanSettings": "augment.plan",
    "VariantPlan": "augment.plan",
    "plan_variants": "augment.plan",
    "variant_seed": "augment.variants",
    "CameraPlan": "augment.variants",
    "plan_camera": "augment.variants",
    "protected_mask": "augment.regions",
    "replace_mask": "augment.regions",
    "robot_alpha": "augment.composite",
    "composite_clip": "augment.composite",
    "clip_alpha": "augment.composite",
    "harmonize_clip": "augment.photometric",
    "jitter_clip": "augment.jitter",
    "mask_overlay": "augment.previews",
    "contact_sheet": "augment.previews",
    "png_bytes": "augment.previews",
    "gif_bytes": "augment.previews",
    "write_png": "augment.previews",
    "write_gif": "augment.previews",
    "mask_coverage": "augment.previews",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'augment' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return __all__
