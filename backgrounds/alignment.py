"""Camera motion between frames of one episode: a homography per frame, and how far to trust it.

A clean plate of a moving camera (``backgrounds.clean_plate``) lines every frame up with one
reference frame before taking its median. Each frame's homography (frame -> reference) is
found in two steps, both on the background only (the robot and the kept objects move on
their own, so their pixels are masked out):

1. features and RANSAC: SIFT keypoints matched across the two frames (Lowe's ratio test), a
   homography fitted to the matches with RANSAC. Coarse, but it copes with large motion (a
   long pan);
2. ECC refinement (``cv2.findTransformECC``): the homography that maximises the correlation of
   the two images' intensities, started from step 1 (or from no motion when step 1 found too
   few matches). Sub-pixel, and it works on smooth scenes with few corners.

The result is checked: the frame warped into the reference must correlate with it
(normalised cross-correlation of the grey levels on the background both frames show) at
least ``min_correlation``. A blank frame, a frame of another scene, or a cut fails that test
and is reported instead of being blended in.

Homographies are exact for a camera that rotates about its centre and for a flat scene; for a
camera that also travels (a pan with parallax, a hand-held camera) they are the best single
map of the background, which is what the median needs.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

#: Frames are aligned at most this many pixels on their long side (and the homography scaled
#: back): alignment cost stays flat with the camera's resolution.
ALIGN_SIDE = 320


@dataclasses.dataclass(frozen=True)
class AlignmentSettings:
    """Thresholds of :func:`align`."""

    # Feature matches RANSAC must keep before its homography is used to start ECC.
    min_inliers: int = 12
    # Background correlation (NCC, -1..1) of the aligned frame with the reference, below which
    # the frame counts as not aligned.
    min_correlation: float = 0.85
    # A homography that moves no image corner by more than this many pixels is no motion.
    static_px: float = 1.0


@dataclasses.dataclass(frozen=True)
class Alignment:
    """One frame lined up with the reference (or not)."""

    homography: np.ndarray | None  # (3, 3) float64, frame pixels -> reference pixels; None: not aligned
    inliers: int  # RANSAC inliers of the feature step (0 when it found too few matches)
    correlation: float  # NCC of the aligned frame with the reference on the shared background
    reason: str = ""  # why it failed ("" when aligned)

    @property
    def ok(self) -> bool:
        return self.homography is not None


def corner_shift(homography: np.ndarray, size: tuple[int, int]) -> float:
    """The largest distance in pixels that ``homography`` moves a corner of an image of ``size`` (H, W)."""
    height, width = size
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64)
    moved = cv2.perspectiveTransform(corners[None], homography)[0]
    return float(np.abs(moved - corners).max())


def _corner_distance(first: np.ndarray, second: np.ndarray, size: tuple[int, int]) -> float:
    """How far apart (pixels, the largest over the image corners) two homographies put the corners."""
    return corner_shift(np.linalg.inv(first) @ second, size)


def grey(frame: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 grey levels of an RGB frame."""
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class Reference:
    """The reference frame, prepared once (grey levels, mask and features at the alignment scale)
    for aligning many frames to it."""

    def __init__(self, frame: np.ndarray, hidden: np.ndarray, settings: AlignmentSettings = AlignmentSettings()):
        self.settings = settings
        self.size = frame.shape[:2]
        self.scale = min(1.0, ALIGN_SIDE / max(self.size))
        self.grey, self.mask = _prepared(frame, hidden, self.scale)
        self._detector = cv2.SIFT_create()
        self.keypoints, self.descriptors = self._detector.detectAndCompute(self.grey, self.mask)

    def align(self, frame: np.ndarray, hidden: np.ndarray, guess: np.ndarray | None = None) -> Alignment:
        """The homography that maps ``frame`` (``(H, W, 3)``; ``hidden`` ``(H, W)`` bool: not background)
        onto the reference, with its feature inliers and correlation.

        ``guess`` (frame -> reference, full resolution), typically the previous frame's
        homography, is a second start for ECC besides the features' (repetitive texture, a
        checkerboard floor, can give RANSAC a consistent but wrong model); the result that
        correlates best wins.
        """
        if frame.shape[:2] != self.size:
            raise ValueError(f"frame of size {frame.shape[:2]} aligned to a reference of size {self.size}")
        image, mask = _prepared(frame, hidden, self.scale)
        if not mask.any() or float(image[mask > 0].std()) < 1.0:
            return Alignment(None, 0, 0.0, "the frame's background is blank (no texture to align)")
        scale = np.diag([self.scale, self.scale, 1.0])
        start, inliers = self._features(image, mask)
        starts = [h for h in (start, None if guess is None else scale @ guess @ np.linalg.inv(scale)) if h is not None]
        if len(starts) == 2 and _corner_distance(starts[0], starts[1], image.shape) < 1.0:
            starts = starts[:1]  # the same start twice
        best, correlation = None, -1.0
        for candidate in starts or [np.eye(3)]:
            homography = _ecc(self.grey, self.mask, image, mask, candidate)
            if homography is None:
                homography = candidate if candidate is start else None  # RANSAC's own answer
            if homography is None:
                continue
            score = self._correlation(image, mask, homography)
            if score > correlation:
                best, correlation = homography, score
        homography = best
        if homography is None:
            return Alignment(None, inliers, 0.0, f"no motion estimate ({inliers} feature inliers, ECC did not converge)")
        if not correlation >= self.settings.min_correlation:
            return Alignment(
                None,
                inliers,
                correlation,
                f"background correlation {correlation:.2f} < {self.settings.min_correlation} after alignment "
                f"({inliers} feature inliers)",
            )
        full = np.linalg.inv(scale) @ homography @ scale
        return Alignment(full / full[2, 2], inliers, correlation)

    def _features(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray | None, int]:
        """RANSAC homography from SIFT matches (frame -> reference, alignment scale) and its inlier count."""
        keypoints, descriptors = self._detector.detectAndCompute(image, mask)
        if descriptors is None or self.descriptors is None or len(keypoints) < 4 or len(self.keypoints) < 4:
            return None, 0
        pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(descriptors, self.descriptors, k=2)
        # Lowe's ratio test: keep a match only when it is clearly better than the next best.
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        if len(good) < 4:
            return None, 0
        source = np.float32([keypoints[m.queryIdx].pt for m in good])
        target = np.float32([self.keypoints[m.trainIdx].pt for m in good])
        homography, inlier_mask = cv2.findHomography(source, target, cv2.RANSAC, 2.0)
        inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
        if homography is None or inliers < self.settings.min_inliers:
            return None, inliers
        return homography, inliers

    def _correlation(self, image: np.ndarray, mask: np.ndarray, homography: np.ndarray) -> float:
        """NCC of ``image`` warped onto the reference with the reference, where both show background."""
        height, width = self.grey.shape
        warped = cv2.warpPerspective(image, homography, (width, height), flags=cv2.INTER_LINEAR)
        inside = cv2.warpPerspective(mask, homography, (width, height), flags=cv2.INTER_NEAREST)
        shared = (inside > 0) & (self.mask > 0)
        if shared.sum() < 0.1 * shared.size:
            return 0.0
        a = warped[shared].astype(np.float64)
        b = self.grey[shared].astype(np.float64)
        a -= a.mean()
        b -= b.mean()
        norm = np.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / norm) if norm > 0 else 0.0


def _prepared(frame: np.ndarray, hidden: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Grey levels and background mask (uint8, 255 = background) at the alignment scale."""
    image = grey(frame)
    mask = np.where(hidden, 0, 255).astype(np.uint8)
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    return image, mask


def _ecc(
    reference: np.ndarray, reference_mask: np.ndarray, image: np.ndarray, mask: np.ndarray, start: np.ndarray
) -> np.ndarray | None:
    """ECC-refined homography frame -> reference from ``start``; None when ECC does not converge.

    ``findTransformECC`` finds the warp that maps reference coordinates into the frame
    (``frame(warp(x)) ~ reference(x)``), the inverse of ours, so it is inverted on the way in
    and out. Only background shown in both frames counts.
    """
    height, width = image.shape
    inverse = np.linalg.inv(start)
    warp = (inverse / inverse[2, 2]).astype(np.float32)
    # 30 iterations: more moved the result by a few hundredths of a pixel on the rendered
    # episodes of benchmarks/clean_plate_quality.py, at 2.5x the time.
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-3)
    blur = 5  # Gaussian blur of both images: a wider basin of convergence
    try:
        if hasattr(cv2, "findTransformECCWithMask"):  # OpenCV 5: a mask on each image
            _, warp = cv2.findTransformECCWithMask(
                reference.astype(np.float32),
                image.astype(np.float32),
                reference_mask,
                mask,
                warp,
                cv2.MOTION_HOMOGRAPHY,
                criteria,
                blur,
            )
        else:  # OpenCV 4: one mask, on the frame; the reference's moved there by ``start``
            shared = mask & cv2.warpPerspective(reference_mask, inverse, (width, height), flags=cv2.INTER_NEAREST)
            _, warp = cv2.findTransformECC(
                reference.astype(np.float32), image.astype(np.float32), warp, cv2.MOTION_HOMOGRAPHY, criteria, shared, blur
            )
    except cv2.error:
        return None
    try:
        homography = np.linalg.inv(warp.astype(np.float64))
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(homography).all():
        return None
    return homography / homography[2, 2]
