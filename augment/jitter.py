"""Camera jitter: one small whole-frame shift per variant, as if the camera had been nudged.

The shift is drawn once per plan and applied to every composited frame, so the episode
looks filmed from a slightly different, but fixed, viewpoint.
"""

from __future__ import annotations

import cv2
import numpy as np


def draw_jitter_offset(rng: np.random.Generator, max_px: int) -> tuple[int, int]:
    """A whole-pixel shift ``(dx, dy)``, each uniform in ``[-max_px, max_px]``."""
    if max_px <= 0:
        return (0, 0)
    dx, dy = rng.integers(-max_px, max_px + 1, size=2)
    return (int(dx), int(dy))


def jitter_clip(frames: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """Shift every frame of ``(T, H, W, C)`` by ``offset = (dx, dy)`` pixels.

    The pixel at ``(x, y)`` moves to ``(x + dx, y + dy)``, exactly (whole pixels, no
    resampling). The strip uncovered at the border is filled by mirroring the frame's
    edge, so no black bars appear.
    """
    dx, dy = offset
    if dx == 0 and dy == 0:
        return frames
    height, width = frames.shape[1:3]
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        out[t] = cv2.warpAffine(
            frame, shift, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101
        ).reshape(frame.shape)
    return out
