"""Post-processing of RobotSeg masks: hole filling, and edge refinement with a guided filter (He et al., 2010).

The release refines its output masks with OpenCV's ``ximgproc.guidedFilter``, which needs
opencv-contrib (not installed by this project), so the filter is written here from
``cv2.boxFilter``. Its hole filling needs a CUDA extension; here it is OpenCV on CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


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


def guided_refine_mask(
    mask: np.ndarray,
    image_bgr: np.ndarray | None,
    small_radius: int = 3,
    large_radius: int = 7,
    eps: float = 1e-3,
    band_width: int = 3,
    thick_thresh: float = 6.0,
    area_change_thresh: float = 0.03,
) -> np.ndarray:
    """The release's boundary refinement (``test/utils.py: guided_refine_mask``): ``(H, W)`` uint8 in {0, 255}.

    ``mask`` is ``(H, W)`` bool/uint8 ({0,1} or {0,255}); ``image_bgr`` the frame as OpenCV
    reads it. Only a band of ``band_width`` pixels around the mask's boundary changes: two
    guided filters (radius 3 and 7) of the mask on the grey frame, blended by the local
    thickness of the mask (thin parts follow the small radius), thresholded at 0.5. If the
    mask's area changes by more than ``area_change_thresh`` the input mask is returned.
    """
    mask = np.asarray(mask).astype(np.uint8)
    if mask.max(initial=0) <= 1:
        mask = mask * 255
    if image_bgr is None or not mask.any():
        return mask
    guide = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    source = mask.astype(np.float32) / 255.0
    small = guided_filter(guide, source, small_radius, eps)
    large = guided_filter(guide, source, large_radius, eps)
    kernel = np.ones((2 * band_width + 1, 2 * band_width + 1), np.uint8)
    band = cv2.subtract(cv2.dilate(mask, kernel), cv2.erode(mask, kernel)) > 0
    # Distance to the background, spread to the neighbourhood: how thick the mask is near each pixel.
    distance = cv2.distanceTransform((mask > 0).astype(np.uint8), cv2.DIST_L2, 5)
    side = max(3, 2 * large_radius + 1)
    thickness = cv2.dilate(distance, np.ones((side, side), np.uint8))
    alpha = np.clip((thickness - 2.0) / max(thick_thresh - 2.0, 1e-6), 0.0, 1.0)
    refined = (((1.0 - alpha) * small + alpha * large) > 0.5).astype(np.uint8) * 255
    out = mask.copy()
    out[band] = refined[band]
    area = np.count_nonzero(mask)
    if abs(np.count_nonzero(out) - area) / float(area) > area_change_thresh:
        return mask
    return out


def refine_rgb(mask: np.ndarray, frame_rgb: np.ndarray) -> np.ndarray:
    """:func:`guided_refine_mask` for an RGB frame; boolean ``(H, W)``."""
    return guided_refine_mask(mask, cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2BGR)) > 0


def fill_holes_in_mask_scores(mask: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill background holes of at most ``max_area`` pixels in mask logits ``(N, 1, H, W)`` (they get 0.1).

    What the release's (and SAM 2.1's) ``fill_holes_in_mask_scores`` does with its CUDA
    connected-components kernel: background = logits <= 0, components with 8-connectivity;
    computed here with OpenCV on CPU, so it also runs where that extension is missing (there
    the release skips the step with a warning).
    """
    if max_area <= 0:
        return mask
    background = (mask <= 0).detach().cpu().numpy().astype(np.uint8)
    holes = np.zeros(background.shape, dtype=bool)
    for i in range(background.shape[0]):
        _, labels, stats, _ = cv2.connectedComponentsWithStats(background[i, 0], connectivity=8)
        area = stats[labels, cv2.CC_STAT_AREA]
        holes[i, 0] = (labels > 0) & (area <= max_area)
    return torch.where(torch.from_numpy(holes).to(mask.device), torch.tensor(0.1, dtype=mask.dtype, device=mask.device), mask)
