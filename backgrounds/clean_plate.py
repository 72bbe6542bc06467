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

A camera that moves (a pan, a hand-held camera) breaks the per-pixel median: a pixel then
sees different parts of the scene over time, and the median draws edges twice and leaves
ghosts. With ``motion: auto`` the plate first lines every sampled frame up with the middle one
(``backgrounds.alignment``: a homography per frame, robot and objects masked out), takes the
median in the middle frame's view (a canvas that grows to hold what the other frames see),
takes the pixels the full mask dilation hides in every frame from the frames a thinner mask
shows them in, inpaints what no frame shows, and warps that plate back into each frame: the background
becomes per frame (:class:`MovingPlate`). When the camera does not move (a few frames spread
through the episode all align within ``static_px`` of no motion) the plate is the static one,
exactly as without ``motion``.
Frames that cannot be aligned are left out of the median and get the static plate; the
source notes both for the run's report.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from backgrounds.alignment import Alignment, AlignmentSettings, Reference, corner_shift
from backgrounds.base import BackgroundConfigError, BackgroundRequest, BackgroundSource, sample_indices

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


#: A moving plate's canvas reaches at most this fraction of the frame's size past each side of
#: the reference view (what a long pan shows beyond it); farther is cut off and inpainted.
_CANVAS_MARGIN = 0.5

#: Frames aligned (and per-frame plates warped) at a time when the background covers a whole episode.
_WINDOW = 32

#: Sampled frames, spread through the episode, aligned first to tell a static camera from a
#: moving one: a static camera then costs this many alignments, not one per sampled frame.
_STATIC_PROBES = 8


@dataclasses.dataclass(frozen=True)
class PlateResult:
    """A clean plate and what happened while making it.

    ``plate`` is ``(H, W, 3)`` uint8 for a static camera, or a :class:`MovingPlate` (a
    ``(T, H, W, 3)`` array-like) for a moving one. ``notes`` are for the run's report: frames
    that could not be aligned and the fallbacks taken (empty when all went to plan).
    """

    plate: "np.ndarray | MovingPlate"
    moving: bool
    notes: tuple[str, ...] = ()


class MovingPlate:
    """The plate of a moving camera, warped into each frame's view when read.

    An array-like of shape ``(T, H, W, 3)`` (``plate[a:b]``, ``plate[indices]``): it holds the
    plate in the reference view (``canvas``) and each frame's homography, so memory does not
    grow with the episode; frames whose alignment failed read ``fallback`` (the static plate).
    """

    ndim = 4

    def __init__(self, canvas: np.ndarray, to_canvas: list[np.ndarray | None], size: tuple[int, int], fallback: np.ndarray):
        self.canvas = canvas
        # Per frame: frame pixels -> canvas pixels, None where the frame was not aligned.
        self.to_canvas = to_canvas
        self.size = size
        self.fallback = fallback

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.to_canvas), *self.size, 3)

    def __len__(self) -> int:
        return len(self.to_canvas)

    def frame(self, index: int) -> np.ndarray:
        """``(H, W, 3)`` uint8: the plate as frame ``index`` sees it."""
        to_canvas = self.to_canvas[index]
        if to_canvas is None:
            return self.fallback
        height, width = self.size
        # WARP_INVERSE_MAP: the map given goes from output (frame) pixels to source (canvas) ones.
        return cv2.warpPerspective(
            self.canvas,
            to_canvas,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.frame(int(key))
        indices = np.arange(len(self))[key]
        return (
            np.stack([self.frame(int(i)) for i in np.atleast_1d(indices)])
            if np.size(indices)
            else np.zeros((0, *self.shape[1:]), np.uint8)
        )

    def __array__(self, dtype=None, copy=None):
        frames = self[:]
        return frames if dtype is None else frames.astype(dtype)


def moving_clean_plate(
    frames: np.ndarray,
    foreground: np.ndarray,
    dilate_px: int = 2,
    inpaint_radius: int = 3,
    settings: AlignmentSettings = AlignmentSettings(),
) -> tuple[np.ndarray | None, list[np.ndarray | None], Reference, list[Alignment]]:
    """The clean plate of ``frames`` in the view of the middle frame, after lining every frame up with it.

    ``frames`` ``(n, H, W, 3)`` uint8 and ``foreground`` ``(n, H, W)`` bool as for
    :func:`clean_plate`. Canvas pixels that ``dilate_px`` hides in every frame take the median of
    the frames that show them under a thinner dilation (down to the mask itself, leak-free for the
    warp) before the rest is inpainted. Returns ``(canvas, to_canvas, reference, alignments)``: the plate on a
    canvas that holds the reference view and what the other frames see around it (``None``
    when fewer than half of the frames align), each frame's homography frame -> canvas (None
    where it did not align), the prepared reference (to align more frames to) and each frame's
    :class:`~backgrounds.alignment.Alignment`.
    """
    hidden = dilated_masks(foreground, dilate_px)
    middle = len(frames) // 2
    reference = Reference(frames[middle], hidden[middle], settings)
    # Outward from the middle, each frame starting from its neighbour's homography (motion is smooth).
    alignments: list[Alignment | None] = [None] * len(frames)
    alignments[middle] = Alignment(np.eye(3), 0, 1.0)
    for order in (range(middle + 1, len(frames)), range(middle - 1, -1, -1)):
        guess = np.eye(3)
        for i in order:
            alignments[i] = reference.align(frames[i], hidden[i], guess)
            if alignments[i].ok:
                guess = alignments[i].homography
    aligned = [i for i, a in enumerate(alignments) if a.ok]
    if 2 * len(aligned) < len(frames):
        return None, [None] * len(frames), reference, alignments
    offset, canvas_size = _canvas(frames.shape[1:3], [alignments[i].homography for i in aligned])
    to_canvas = [offset @ a.homography if a.ok else None for a in alignments]
    width, height = canvas_size
    warped = np.empty((len(aligned), height, width, 3), np.uint8)
    for row, i in enumerate(aligned):
        warped[row] = cv2.warpPerspective(frames[i], to_canvas[i], canvas_size, flags=cv2.INTER_LINEAR)
    canvas, seen = visible_median(warped, _unseen_on_canvas(hidden, aligned, to_canvas, canvas_size))
    # Canvas pixels that every frame hides under the full dilation (mostly around the robot's base,
    # which never moves) but that some frames show under a thinner one, down to the mask itself:
    # their median over those frames is the scene there, far closer to it than inpainting. These
    # thinner masks are made leak-free for the warp instead of dilated: a canvas pixel counts as
    # hidden if its bilinear sample touches any hidden frame pixel.
    for thinner in range(dilate_px - 1, -1, -1):
        if seen.all():
            break
        unseen = _unseen_on_canvas(dilated_masks(foreground, thinner), aligned, to_canvas, canvas_size, exact=True)
        median, seen_thinner = visible_median(warped, unseen)
        recovered = seen_thinner & ~seen
        canvas[recovered] = median[recovered]
        seen |= recovered
    # Inpaint what no frame shows, but only inside (and just around) the frames' views: the
    # rest of the canvas is never read back.
    footprint = np.zeros((height, width), np.uint8)
    ones = np.ones(frames.shape[1:3], np.uint8)
    for i in aligned:
        footprint |= cv2.warpPerspective(ones, to_canvas[i], canvas_size, flags=cv2.INTER_NEAREST)
    footprint = cv2.dilate(footprint, np.ones((5, 5), np.uint8))
    holes = (~seen) & (footprint > 0)
    if seen.any() and holes.any():
        canvas = cv2.inpaint(canvas, holes.astype(np.uint8), inpaint_radius, cv2.INPAINT_TELEA)
    return canvas, to_canvas, reference, alignments


def _unseen_on_canvas(
    hidden: np.ndarray,
    aligned: list[int],
    to_canvas: list[np.ndarray | None],
    canvas_size: tuple[int, int],
    exact: bool = False,
) -> np.ndarray:
    """``(len(aligned), height, width)`` bool: canvas pixels each aligned frame does not show (its
    ``hidden`` pixels, and everything outside its view).

    By default a canvas pixel is hidden when its nearest frame pixel is (the mask's dilation
    absorbs the warp's blur). With ``exact``, it is hidden when its bilinear sample draws on any
    hidden frame pixel or on anything outside the frame: no hidden colour reaches a shown pixel.
    """
    width, height = canvas_size
    unseen = np.empty((len(aligned), height, width), bool)
    for row, i in enumerate(aligned):
        if exact:
            weight = cv2.warpPerspective(
                hidden[i].astype(np.float32), to_canvas[i], canvas_size, flags=cv2.INTER_LINEAR, borderValue=1.0
            )
            unseen[row] = weight > 0
        else:
            shown = cv2.warpPerspective(
                (~hidden[i]).astype(np.uint8), to_canvas[i], canvas_size, flags=cv2.INTER_NEAREST, borderValue=0
            )
            unseen[row] = shown == 0
    return unseen


def _looks_static(frames: np.ndarray, foreground: np.ndarray, options: CleanPlateOptions) -> bool:
    """Whether up to ``_STATIC_PROBES`` frames spread through the sample all align with the middle
    one within ``static_px`` (a static camera). A frame that does not align is no evidence of
    stillness: the full alignment then runs, and reports it."""
    middle = len(frames) // 2
    probes = [int(i) for i in sample_indices(len(frames), _STATIC_PROBES) if i != middle]
    hidden = dilated_masks(foreground[[middle, *probes]], options.dilate_px)
    reference = Reference(frames[middle], hidden[0], options.alignment)
    for i, mask in zip(probes, hidden[1:]):
        alignment = reference.align(frames[i], mask)
        if not alignment.ok or corner_shift(alignment.homography, frames.shape[1:3]) > options.static_px:
            return False
    return True


def _canvas(size: tuple[int, int], homographies: list[np.ndarray]) -> tuple[np.ndarray, tuple[int, int]]:
    """The translation reference -> canvas and the canvas's (width, height): the bounding box of
    every frame's view in the reference, at most ``_CANVAS_MARGIN`` of the frame past each side."""
    height, width = size
    corners = np.array([[[0, 0], [width, 0], [0, height], [width, height]]], np.float64)
    points = np.concatenate([cv2.perspectiveTransform(corners, h)[0] for h in homographies])
    low = np.maximum(np.floor(points.min(axis=0)), [-_CANVAS_MARGIN * width, -_CANVAS_MARGIN * height])
    high = np.minimum(np.ceil(points.max(axis=0)), [(1 + _CANVAS_MARGIN) * width, (1 + _CANVAS_MARGIN) * height])
    low, high = np.minimum(low, 0), np.maximum(high, [width, height])
    offset = np.array([[1, 0, -low[0]], [0, 1, -low[1]], [0, 0, 1]], np.float64)
    return offset, (int(high[0] - low[0]), int(high[1] - low[1]))


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
    # auto: line frames up when the camera moves (a per-frame plate), today's static plate when
    # it does not; static: always the static plate (the per-pixel median), whatever the camera does.
    motion: str = "auto"
    # Feature matches (RANSAC inliers) needed before they are trusted to start the alignment.
    min_inliers: int = 12
    # Background correlation (-1..1) an aligned frame must reach with the reference, else it is
    # reported as not aligned and gets the static plate.
    min_correlation: float = 0.85
    # Sampled frames whose homographies all move the image corners less than this many pixels:
    # a static camera, today's plate.
    static_px: float = 1.0

    @property
    def alignment(self) -> AlignmentSettings:
        return AlignmentSettings(min_inliers=self.min_inliers, min_correlation=self.min_correlation, static_px=self.static_px)


MOTION_MODES = ("auto", "static")


def episode_clean_plate(request: BackgroundRequest, options: CleanPlateOptions) -> PlateResult:
    """The clean plate of one request's episode: static, or per frame when the camera moves.

    The median is taken over ``options.sample_frames`` frames. With ``motion: auto`` up to
    ``_STATIC_PROBES`` of them, spread through the episode, are aligned first; if none of them
    moves, the result is :func:`clean_plate`'s exactly. Otherwise all are aligned. A moving
    camera gets a :class:`MovingPlate` whose every frame (sampled or not) is aligned here, a
    window at a time; frames that cannot be aligned fall back to the static plate, and say so.
    """
    frames, foreground = request.sample(options.sample_frames)
    static = clean_plate(frames, foreground, options.dilate_px, options.inpaint_radius)
    if options.motion == "static" or len(frames) < 2:
        return PlateResult(static, moving=False)
    settings = options.alignment
    if _looks_static(frames, foreground, options):
        return PlateResult(static, moving=False)
    canvas, to_canvas, reference, alignments = moving_clean_plate(
        frames, foreground, options.dilate_px, options.inpaint_radius, settings
    )
    failed = [(i, a) for i, a in enumerate(alignments) if not a.ok]
    if canvas is None:
        first = failed[0][1].reason if failed else ""
        return PlateResult(
            static,
            moving=False,
            notes=(
                f"clean_plate camera {request.camera}: only {len(frames) - len(failed)} of {len(frames)} sampled frames "
                f"could be aligned (first failure: {first}); used the static plate (per-pixel median) instead",
            ),
        )
    size = frames.shape[1:3]
    if not failed and all(corner_shift(a.homography, size) <= settings.static_px for a in alignments):
        return PlateResult(static, moving=False)

    # A moving camera: every frame of the episode needs its own homography.
    offset = to_canvas[len(frames) // 2]  # the reference's: frame -> canvas is offset @ (frame -> reference)
    every: list[np.ndarray | None] = []
    guess = np.eye(3)  # the previous frame's homography: where to start the next
    unaligned: list[tuple[int, str]] = []
    hidden_all = request.foreground
    for start in range(0, request.steps, _WINDOW):
        window = np.asarray(request.frames[start : start + _WINDOW])
        hidden = dilated_masks(np.asarray(hidden_all[start : start + _WINDOW], bool), options.dilate_px)
        for offset_in_window, (frame, mask) in enumerate(zip(window, hidden)):
            alignment = reference.align(frame, mask, guess)
            every.append(offset @ alignment.homography if alignment.ok else None)
            if alignment.ok:
                guess = alignment.homography
            if not alignment.ok:
                unaligned.append((start + offset_in_window, alignment.reason))
    notes = ()
    if unaligned:
        steps = ", ".join(str(step) for step, _ in unaligned[:10]) + (" ..." if len(unaligned) > 10 else "")
        notes = (
            f"clean_plate camera {request.camera}: {len(unaligned)} of {request.steps} frames could not be aligned "
            f"(steps {steps}; first: {unaligned[0][1]}); they use the static plate (per-pixel median)",
        )
    return PlateResult(MovingPlate(canvas, every, size, static), moving=True, notes=notes)


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
        if options.motion not in MOTION_MODES:
            raise BackgroundConfigError(
                f"{self.key_path}.motion must be one of {', '.join(MOTION_MODES)}, got {options.motion!r}"
            )
        if options.min_inliers < 4:
            raise BackgroundConfigError(
                f"{self.key_path}.min_inliers must be >= 4 (a homography needs 4 points), got {options.min_inliers}"
            )
        if not -1.0 <= options.min_correlation <= 1.0:
            raise BackgroundConfigError(f"{self.key_path}.min_correlation must be in [-1, 1], got {options.min_correlation}")
        if not options.static_px >= 0:
            raise BackgroundConfigError(f"{self.key_path}.static_px must be >= 0, got {options.static_px}")

    def generate(self, model, request: BackgroundRequest) -> np.ndarray:
        result = episode_clean_plate(request, self.options)
        for note in result.notes:
            self.note(request, note)
        return result.plate

    def generate_batch(self, model, requests: list[BackgroundRequest]) -> list[np.ndarray]:
        """One plate per (episode, camera), shared by its variants: the plate has no randomness."""
        plates: dict[tuple[str, str], np.ndarray] = {}
        for request in requests:
            if (request.episode_key, request.camera) not in plates:
                plates[request.episode_key, request.camera] = self.generate(model, request)
        return [plates[r.episode_key, r.camera] for r in requests]
