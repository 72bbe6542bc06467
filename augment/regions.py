"""Protected regions: parts of the scene (the table, the task's objects) that keep their pixels.

A recipe protects regions with boxes and polygons in relative coordinates
(``composite.protect``) and/or a per-step mask feature (``composite.protect_feature``).
The protected region is static over an episode: a per-step mask is united over steps,
so an object that moves stays protected wherever it goes.
"""

from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

from augment.settings import CompositeSettings

# Sub-pixel precision of cv2.fillPoly's fixed-point vertices (2**8 steps per pixel).
_POLYGON_SHIFT_BITS = 8


def protected_mask(
    settings: CompositeSettings,
    camera: str,
    shape: tuple[int, int],
    observation: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The ``(H, W)`` bool mask of pixels that keep their original values for ``camera``.

    The union of the regions listed under ``camera`` and under ``"*"`` in
    ``settings.protect``, and of the nonzero pixels of ``settings.protect_feature`` in
    ``observation`` (any step). A box covers the pixels whose centres lie inside it; a
    polygon, as rasterised by ``cv2.fillPoly``, may also take in pixels whose centre
    lies up to half a pixel outside it.
    """
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=bool)
    for key in ("*", camera):
        for region in settings.protect.get(key, []):
            if "box" in region:
                mask |= _box_mask(region["box"], height, width)
            else:
                mask |= _polygon_mask(region["polygon"], height, width)
    if settings.protect_feature is not None:
        mask |= _feature_mask(settings.protect_feature.format(camera=camera), camera, (height, width), observation)
    return mask


def replace_mask(protected: np.ndarray) -> np.ndarray:
    """The ``(H, W)`` bool mask of pixels a new background may replace: all but the protected.

    The robot is not part of it: it moves, so compositing cuts it out frame by frame.
    """
    return ~np.asarray(protected, dtype=bool)


def _box_mask(box: list[float], height: int, width: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    # Pixel j's centre is at relative x = (j + 0.5) / width.
    xs = (np.arange(width) + 0.5) / width
    ys = (np.arange(height) + 0.5) / height
    return ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]


def _polygon_mask(points: list[list[float]], height: int, width: int) -> np.ndarray:
    scale = 1 << _POLYGON_SHIFT_BITS
    # Relative x maps to pixel coordinate x * width - 0.5, where pixel centres are integers.
    pixels = np.asarray(points, dtype=np.float64) * (width, height) - 0.5
    vertices = np.rint(pixels * scale).astype(np.int32).reshape(-1, 1, 2)
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(canvas, [vertices], 1, lineType=cv2.LINE_8, shift=_POLYGON_SHIFT_BITS)
    return canvas.astype(bool)


def _feature_mask(name: str, camera: str, shape: tuple[int, int], observation: Mapping[str, np.ndarray] | None) -> np.ndarray:
    if observation is None or name not in observation:
        raise ValueError(
            f"composite.protect_feature: camera {camera} has no observation feature {name!r}"
            + (f"; available: {', '.join(sorted(observation))}" if observation else "")
        )
    feature = observation[name]
    # An encoded per-step mask (segmentation.frames.Frames) is read a window at a time.
    chunks = (window for _, window in feature.windows()) if hasattr(feature, "windows") else [np.asarray(feature)]
    union = np.zeros(shape, bool)
    for values in chunks:
        if values.ndim >= 3 and values.shape[-1] == 1 and values.shape[-3:-1] == shape:
            values = values[..., 0]
        if values.shape[-2:] != shape:
            raise ValueError(
                f"composite.protect_feature: feature {name!r} of camera {camera} has shape "
                f"{values.shape}, expected (H, W) or (T, H, W) with (H, W) = {shape}"
            )
        union |= (values != 0).reshape(-1, *shape).any(axis=0)
    return union
