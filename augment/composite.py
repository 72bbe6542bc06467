"""Compositing: the robot (and protected regions) over a new background, for a whole clip.

``composite_clip`` is called once per (episode, camera, variant) with every frame, in
order, and a :class:`~augment.variants.CameraPlan` drawn once for that clip. Per frame:

1. the background, with the plan's background transforms (a static background is
   transformed once and reused, so its pixels are identical in every frame);
2. protected regions take the original frame's pixels;
3. the robot, with the plan's robot transforms and harmonisation (both off by default),
   is alpha-blended on top with a feathered edge (:func:`robot_alpha`);
4. the plan's camera jitter shifts the whole frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from augment.jitter import jitter_clip
from augment.photometric import apply_harmonization, apply_replay, fit_harmonization
from augment.settings import CompositeSettings
from augment.variants import CameraPlan


def robot_alpha(foreground: np.ndarray, settings: CompositeSettings) -> np.ndarray:
    """Opacity ``(H, W)`` float32 in [0, 1] of the robot over the background.

    The mask ``M`` is ``foreground`` eroded by ``settings.erode_px`` and then dilated by
    ``settings.dilate_px`` (Euclidean disks). With ``f = settings.feather_px``:

    * alpha is exactly 1 on every pixel of ``M`` whose Euclidean distance to the nearest
      pixel outside ``M`` is >= ``f``. That includes ``M`` eroded by a disk of radius
      ``f`` (and by any square or elliptic kernel that covers that disk, such as
      ``cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2r+1, 2r+1))`` with ``r >= f``);
    * alpha is exactly 0 on every pixel outside ``M`` at distance >= ``f`` from the
      nearest pixel of ``M``, so everywhere outside ``M`` dilated by that disk;
    * in between it ramps linearly with the signed distance to the mask border, 1/2 at
      the border. ``f <= 1`` gives a hard edge: alpha is ``M`` itself.
    """
    mask = np.asarray(foreground) != 0
    alpha = np.zeros(mask.shape, dtype=np.float32)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return alpha
    # Work on the mask's bounding box plus a margin wider than any dilation or feather:
    # the distances inside it are the same as on the whole frame, and alpha is 0 beyond.
    margin = int(np.ceil(settings.dilate_px + settings.feather_px)) + 2
    top, bottom = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, mask.shape[0])
    left, right = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, mask.shape[1])
    alpha[top:bottom, left:right] = _feathered(mask[top:bottom, left:right], settings)
    return alpha


def _feathered(mask: np.ndarray, settings: CompositeSettings) -> np.ndarray:
    """:func:`robot_alpha` on a crop that holds the whole mask."""
    if settings.erode_px > 0:
        mask = _inside_distance(mask) > settings.erode_px
    if settings.dilate_px > 0:
        mask = mask | (_inside_distance(~mask) <= settings.dilate_px)
    feather = float(settings.feather_px)
    if feather <= 0 or not mask.any() or mask.all():
        return mask.astype(np.float32)
    signed = np.where(mask, _inside_distance(mask), -_inside_distance(~mask))
    return np.clip((signed + feather) / (2.0 * feather), 0.0, 1.0).astype(np.float32)


def clip_alpha(foreground: np.ndarray, settings: CompositeSettings) -> np.ndarray:
    """:func:`robot_alpha` of every frame: ``(T, H, W)`` float32.

    It depends only on the masks and the settings, so the variants of one camera can
    share it (pass it to :func:`composite_clip` as ``alpha``). With a feather of at most
    :data:`BAND_FEATHER_PX` and no erosion or dilation, the whole window is computed at
    once (:func:`_band_alpha`), with the same values as frame by frame.
    """
    masks = np.asarray(foreground) != 0
    if masks.ndim == 3 and settings.erode_px == 0 and settings.dilate_px == 0 and 1 < settings.feather_px <= BAND_FEATHER_PX:
        return _band_alpha(masks, float(settings.feather_px))
    return np.stack([robot_alpha(mask, settings) for mask in masks]) if len(masks) else np.zeros(masks.shape, np.float32)


#: Feathers up to this width take :func:`clip_alpha`'s vectorised path (its cost grows with
#: the square of the width; the distance transform's does not).
BAND_FEATHER_PX = 6.0


def _band_alpha(masks: np.ndarray, feather: float) -> np.ndarray:
    """:func:`robot_alpha` of ``(T, H, W)`` bool masks (no erosion or dilation), all frames at once.

    Alpha differs from 0 and 1 only within ``feather`` pixels of the mask border, so only
    the exact Euclidean distances below ``feather`` are needed: with ``d_1 < ... < d_K``
    the distances of pixel offsets below it, a mask pixel whose nearest outside pixel is
    at ``d_j`` survives the erosions by the disks of radius ``d_1 .. d_(j-1)`` and no
    other, and an outside pixel whose nearest mask pixel is at ``d_j`` is reached by the
    dilations by ``d_j .. d_K``. Counting them gives each pixel's distance, the same value
    the distance transform gives; every other pixel is at least ``feather`` away (alpha 1
    inside, 0 outside, as in :func:`_feathered`). Pixels outside the frame are on neither
    side, as there: the frames are stacked into one tall image with separator rows that
    neither erode nor dilate.
    """
    alpha = np.zeros(masks.shape, np.float32)
    union = masks.any(axis=0)
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    if rows.size == 0:
        return alpha
    # The masks' bounding box over the window plus a margin wider than the feather.
    reach = int(np.ceil(feather))
    margin = reach + 2
    top, bottom = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, masks.shape[1])
    left, right = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, masks.shape[2])
    mask = masks[:, top:bottom, left:right]
    steps, height, width = mask.shape
    squared = sorted({dy * dy + dx * dx for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)} - {0})
    squared = [d for d in squared if d < feather * feather]
    # Frame t at rows [t * (height + reach), ... + height) of the tall image; the rows in
    # between are 1 for the erosions (never outside) and 0 for the dilations (never mask).
    stacked = np.ones((steps, height + reach, width), np.uint8)
    stacked[:, :height] = mask
    eroding = stacked.reshape(-1, width)
    dilating = eroding.copy()
    dilating.reshape(stacked.shape)[:, height:] = 0
    count = eroding.copy()  # 1 on the mask: codes K + 1 + j inside, K - j outside
    count.reshape(stacked.shape)[:, height:] = 0
    for limit in squared:
        disk = np.array(
            [[dy * dy + dx * dx <= limit for dx in range(-reach, reach + 1)] for dy in range(-reach, reach + 1)], np.uint8
        )
        cv2.add(count, cv2.erode(eroding, disk), dst=count)
        cv2.add(count, cv2.dilate(dilating, disk), dst=count)
    # The signed distance of each code, and alpha from it as _feathered computes it.
    lengths = np.sqrt(np.asarray(squared, np.float32))
    k = len(squared)
    signed = np.concatenate([[-np.inf], -lengths[::-1], lengths, [np.inf]]).astype(np.float32)
    table = np.zeros(256, np.float32)
    table[: 2 * k + 2] = np.clip((signed + feather) / (2.0 * feather), 0.0, 1.0).astype(np.float32)
    code = cv2.LUT(count, table).reshape(stacked.shape)
    alpha[:, top:bottom, left:right] = code[:, :height]
    return alpha


def composite_clip(
    frames: np.ndarray,
    foreground: np.ndarray,
    background: np.ndarray,
    protected: np.ndarray | None,
    plan: CameraPlan,
    settings: CompositeSettings,
    alpha: np.ndarray | None = None,
    harmonization: np.ndarray | None | str = "fit",
    background_prepared: bool = False,
) -> np.ndarray:
    """The augmented clip ``(T, H, W, 3)`` uint8.

    ``frames`` (T, H, W, 3) uint8 RGB, the original clip; ``foreground`` (T, H, W) bool,
    the robot in each frame; ``background`` (H, W, 3) uint8 (static) or (T, H, W, 3);
    ``protected`` (H, W) bool or ``None``, pixels that keep the original frame;
    ``alpha``, :func:`clip_alpha` of ``foreground`` if already computed;
    ``harmonization``, the plan's colour harmonisation fitted once for the whole clip
    (:func:`fit_clip_harmonization`) when ``frames`` is one window of it, or ``"fit"`` to
    fit it on ``frames``; ``background_prepared``, whether ``background`` already has the
    plan's background transforms (:func:`prepare_background`: a static background
    transformed once for all the windows of a clip).

    Every step works frame by frame with the clip-wide draws of ``plan``, so compositing
    a clip window by window gives the same frames as compositing it whole.

    Guarantees (with ``settings.robot_transforms`` empty and ``harmonize`` 0, before the
    jitter, which shifts everything):

    * robot pixels where :func:`robot_alpha` is 1 (see there: at least the robot mask
      eroded by ``feather_px``) are bit-identical to ``frames``;
    * protected pixels where alpha is 0 are bit-identical to ``frames``;
    * every other pixel where alpha is 0 (at least everything outside the mask dilated
      by ``feather_px``) equals the transformed background exactly, so with a static
      background it is identical in every frame;
    * the same inputs and plan give the same output.
    """
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    clip_shape = frames.shape[:3]
    frame_shape = clip_shape[1:]
    foreground = np.asarray(foreground)  # compared with 0 only where it is read
    if foreground.shape != clip_shape:
        raise ValueError(f"foreground must be (T, H, W) = {clip_shape}, got {foreground.shape}")
    background = np.asarray(background)
    if background.dtype != np.uint8 or background.shape not in (frames.shape, frames.shape[1:]):
        raise ValueError(
            f"background must be uint8 (H, W, 3) or (T, H, W, 3) matching frames {frames.shape}, "
            f"got {background.dtype} {background.shape}"
        )
    if protected is not None:
        protected = np.asarray(protected, dtype=bool)
        if protected.shape != frame_shape:
            raise ValueError(f"protected must be (H, W) = {frame_shape}, got {protected.shape}")
    if tuple(plan.frame_shape) != frame_shape:
        raise ValueError(f"the plan was drawn for frames of {tuple(plan.frame_shape)}, these are {frame_shape}")

    if len(frames) == 0:
        return frames.copy()

    if alpha is None:
        alpha = clip_alpha(foreground, settings)
    elif alpha.shape != clip_shape:
        raise ValueError(f"alpha must be (T, H, W) = {clip_shape}, got {alpha.shape}")
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)

    # Transforming a static background once is what makes it identical in every frame.
    if not background_prepared:
        background = apply_replay(plan.background_replay, background, "composite.background_transforms")
    robot = apply_replay(plan.robot_replay, frames, "composite.robot_transforms")
    if isinstance(harmonization, str):
        harmonization = fit_harmonization(robot, foreground != 0, background, plan.harmonize)
    if harmonization is not None:
        robot = apply_harmonization(robot, alpha > 0, harmonization)

    # The whole window is handled as one tall (T * H, W) image by OpenCV's masked copies
    # and comparisons: numpy's boolean-mask copies are 20x slower, and one call per window
    # costs less than one per frame.
    steps, height, width = clip_shape
    tall = (steps * height, width)
    out = np.empty(frames.shape, dtype=np.uint8)
    np.copyto(out, background)  # broadcasts a static background over the frames
    if protected is not None and protected.any():
        protected_u8 = np.broadcast_to(protected.astype(np.uint8), clip_shape).reshape(tall)
        cv2.copyTo(frames.reshape(*tall, 3), protected_u8, out.reshape(*tall, 3))

    # The soft edge (0 < alpha < 1) is a thin band: blend only its pixels, addressed by flat
    # index (numpy's multi-dimensional boolean indexing is several times slower).
    alpha_tall = alpha.reshape(tall)
    band = cv2.inRange(alpha_tall, _ABOVE_ZERO, _BELOW_ONE)  # 255 in the band, else 0
    edge = np.flatnonzero(np.bitwise_and(band, 1, out=band).view(bool))
    # np.take and a 3-byte view move whole pixels, several times faster than row indexing.
    out_pixels, robot_pixels = out.reshape(-1, 3), np.ascontiguousarray(robot).reshape(-1, 3)
    under = np.take(out_pixels, edge, axis=0).astype(np.float32)
    weight = np.take(alpha.reshape(-1), edge)[:, None]
    blended = under + weight * (np.take(robot_pixels, edge, axis=0).astype(np.float32) - under)
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    out_pixels.view("V3").reshape(-1)[edge] = blended.view("V3").reshape(-1)
    opaque = cv2.compare(alpha_tall, 1.0, cv2.CMP_GE)
    cv2.copyTo(np.ascontiguousarray(robot).reshape(*tall, 3), opaque, out.reshape(*tall, 3))

    return jitter_clip(out, plan.jitter_offset)


# cv2.inRange bounds are inclusive: the float32 neighbours of 0 and 1 make them strict.
_ABOVE_ZERO = float(np.nextafter(np.float32(0), np.float32(1)))
_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))


def prepare_background(background, plan: CameraPlan):
    """A static ``(H, W, 3)`` background with the plan's background transforms applied, for
    :func:`composite_clip` with ``background_prepared=True`` on every window of the clip
    (the same pixels as transforming it in each call). A per-frame background (``(T, H, W,
    3)``, an array or a ``Frames``) is returned as it is: it is transformed a window at a time."""
    if getattr(background, "ndim", 3) != 3:
        return background
    return apply_replay(plan.background_replay, np.asarray(background), "composite.background_transforms")


def fit_clip_harmonization(
    frames: np.ndarray, foreground: np.ndarray, background: np.ndarray, plan: CameraPlan
) -> np.ndarray | None:
    """The plan's colour harmonisation for a whole clip, fitted on some of its frames.

    ``frames`` (n, H, W, 3) and ``foreground`` (n, H, W) are a sample of the clip's frames
    (e.g. evenly spaced), ``background`` the clip's background ((H, W, 3), or the same
    sample of a per-frame one). Pass the result to every window's :func:`composite_clip`.
    """
    if plan.harmonize <= 0:
        return None
    robot = apply_replay(plan.robot_replay, np.ascontiguousarray(frames), "composite.robot_transforms")
    background = apply_replay(plan.background_replay, np.asarray(background), "composite.background_transforms")
    return fit_harmonization(robot, np.asarray(foreground) != 0, background, plan.harmonize)


def _inside_distance(mask: np.ndarray) -> np.ndarray:
    """For each pixel of ``mask``, the exact Euclidean distance to the nearest pixel outside it (0 outside)."""
    if mask.all():
        # OpenCV returns a huge sentinel when there is no zero pixel; every pixel is "far".
        return np.full(mask.shape, np.inf, dtype=np.float32)
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
