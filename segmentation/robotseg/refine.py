"""Edge refinement of predicted masks with a guided filter (He et al., 2010).

RobotSeg's release offers a guided-filter refinement of its output masks. OpenCV's
``ximgproc.guidedFilter`` needs opencv-contrib, which the project does not install, so
the filter is written here from ``cv2.boxFilter`` (the only primitive it needs).
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Filter ``source`` ``(H, W)`` so that its edges follow the grayscale ``guide`` ``(H, W)``, both in [0, 1]."""
    guide = guide.astype(np.float32)
    source = source.astype(np.float32)
    mean_i = _box(guide, radius)
    mean_p = _box(source, radius)
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    cov_ip = _box(guide * source, radius) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)


def refine_mask(frame: np.ndarray, probability: np.ndarray, radius: int = 4, eps: float = 1e-3) -> np.ndarray:
    """Boolean mask from a mask ``probability`` ``(H, W)`` snapped to the edges of ``frame`` ``(H, W, 3)`` uint8."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return guided_filter(gray, probability, radius, eps) > 0.5
