"""The clean plate: the scene behind the robot, recovered from the episode itself.

With a static camera every background pixel the robot uncovers at some step shows the
scene; the temporal median of those uncovered values is the scene there. The median is
taken over a fixed number of frames spread through the episode (``sample_frames``). Pixels the
robot never leaves are filled by OpenCV inpainting. The result is a background of its
own (re-lit by the recipe's photometric transforms) and the start that diffusion
inpainting refines.

Kept task objects are hidden like the robot (the request's ``foreground`` holds both):
they are composited back on top of the new background, so a copy of them in the plate
would show twice, or smear where they move.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from backgrounds.base import BackgroundConfigError, BackgroundRequest, BackgroundSource

#: Values per sorting block (uint16), so long episodes at high resolution stay within ~32 MB.
_BLOCK_VALUES = 2**24

#: Sorts after every uint8 value: marks the samples a pixel's median must skip.
_HIDDEN = 256


def dilated_masks(masks: np.ndarray, dilate_px: int) -> np.ndarray:
    """``(T, H, W)`` bool masks grown by ``dilate_px`` pixels in every direction, frame by frame."""
    if dilate_px <= 0:
        return masks.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
    return np.stack([cv2.dilate(mask, kernel) for mask in masks.astype(np.uint8)]).astype(bool)


def visible_median(frames: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel temporal median of the samples not ``hidden``.

    Returns the ``(H, W, 3)`` uint8 median (0 where a pixel is hidden in every frame)
    and the ``(H, W)`` bool map of pixels visible at least once. Hidden samples are
    pushed past 255 and the stack sorted along time, so the median of the ``n`` visible
    samples sits at indices ``(n - 1) // 2`` and ``n // 2``.
    """
    steps, height, width, _ = frames.shape
    visible_counts = steps - hidden.sum(axis=0)  # (H, W)
    median = np.zeros((height, width, 3), np.uint8)
    rows_per_block = max(1, _BLOCK_VALUES // (steps * width * 3))
    for top in range(0, height, rows_per_block):
        rows = slice(top, top + rows_per_block)
        # Time last so the sort runs over contiguous memory.
        stack = np.moveaxis(frames[:, rows], 0, -1).astype(np.uint16)  # (h, W, 3, T)
        stack = np.where(np.moveaxis(hidden[:, rows], 0, -1)[:, :, None, :], np.uint16(_HIDDEN), stack)
        stack.sort(axis=-1)
        counts = visible_counts[rows][:, :, None, None].repeat(3, axis=2)  # (h, W, 3, 1)
        low = np.take_along_axis(stack, np.maximum(counts - 1, 0) // 2, axis=-1)
        high = np.take_along_axis(stack, counts // 2, axis=-1)
        block = ((low.astype(np.uint32) + high + 1) // 2)[..., 0]
        median[rows] = np.where(counts[..., 0] > 0, block, 0).astype(np.uint8)
    return median, visible_counts > 0


def clean_plate(frames: np.ndarray, foreground: np.ndarray, dilate_px: int = 2, inpaint_radius: int = 3) -> np.ndarray:
    """The scene behind the foreground (robot, kept objects) for a static camera, ``(H, W, 3)`` uint8.

    ``frames`` is ``(T, H, W, 3)`` uint8, ``foreground`` ``(T, H, W)`` bool. The mask is
    grown by ``dilate_px`` so its soft edges do not leak into the plate; pixels covered in
    every frame (an object that never moves) are inpainted (Telea, ``inpaint_radius``
    pixels of context).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or foreground.shape != frames.shape[:3]:
        raise ValueError(
            f"clean_plate needs frames (T, H, W, 3) and foreground (T, H, W); got {frames.shape} and {foreground.shape}"
        )
    hidden = dilated_masks(foreground, dilate_px)
    plate, seen = visible_median(frames, hidden)
    if not seen.any():
        # The foreground fills the view in every frame: nothing to recover, nothing to inpaint
        # from. The plain median is the least surprising answer.
        plate, _ = visible_median(frames, np.zeros_like(hidden))
        return plate
    if seen.all():
        return plate
    return cv2.inpaint(plate, (~seen).astype(np.uint8), inpaint_radius, cv2.INPAINT_TELEA)


@dataclasses.dataclass
class CleanPlateOptions:
    """Recipe keys of ``background.source: clean_plate``."""

    # Pixels the robot mask is grown by before taking the median (hides its soft edges).
    dilate_px: int = 2
    # Neighbourhood radius in pixels OpenCV inpainting uses for pixels the robot never uncovers.
    inpaint_radius: int = 3
    # Frames the median is taken over, evenly spaced through the episode (all of a shorter one):
    # the plate's cost and memory then do not grow with the episode's length.
    sample_frames: int = 64


class CleanPlateBackground(BackgroundSource):
    """The episode's own scene without the robot; the same for every seed (variation comes
    from the recipe's photometric transforms)."""

    name = "clean_plate"
    Options = CleanPlateOptions

    def check(self) -> None:
        options = self.options
        if options.dilate_px < 0:
            raise BackgroundConfigError(f"{self.key_path}.dilate_px must be >= 0, got {options.dilate_px}")
        if options.inpaint_radius < 1:
            raise BackgroundConfigError(f"{self.key_path}.inpaint_radius must be >= 1, got {options.inpaint_radius}")
        if options.sample_frames < 1:
            raise BackgroundConfigError(f"{self.key_path}.sample_frames must be >= 1, got {options.sample_frames}")

    def generate(self, model, request: BackgroundRequest) -> np.ndarray:
        frames, foreground = request.sample(self.options.sample_frames)
        return clean_plate(frames, foreground, self.options.dilate_px, self.options.inpaint_radius)

    def generate_batch(self, model, requests: list[BackgroundRequest]) -> list[np.ndarray]:
        """One plate per (episode, camera), shared by its variants: the plate has no randomness."""
        plates: dict[tuple[str, str], np.ndarray] = {}
        for request in requests:
            if (request.episode_key, request.camera) not in plates:
                plates[request.episode_key, request.camera] = self.generate(model, request)
        return [plates[r.episode_key, r.camera] for r in requests]
