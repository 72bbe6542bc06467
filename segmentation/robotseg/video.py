"""Video inference on in-memory frames: RobotSeg on the release's predictor, and a chunked engine for SAM 2-like trackers.

RobotSeg (:func:`segment_video`) runs through
:class:`segmentation.robotseg.predictor.RobotSegVideoPredictor`, the release's API, one
target at a time (the release propagates one robot category per call). The rest of this
module is the engine the ``sam2`` source uses (:func:`track_video`):

The engine encodes every frame once, in chunks of ``chunk_size`` frames, and runs each
tracked target's memory attention and decoder on those shared features. A target is a
:class:`Track`: its conditioning frames and their prompts (``None`` = RobotSeg's
automatic robot prompt). As in SAM 2, the conditioning frames are segmented first,
then tracking runs forward from the first of them to the end and backward from it to
frame 0. Each frame is visited exactly once, so frame features are freed right after
use and the tracker's memory keeps only what later frames can select: memory does not
grow with the episode. Targets whose conditioning frames differ
are tracked in separate passes (one image-encoder pass each).

Outputs are resized to each frame's own size and thresholded (optionally refined with
a guided filter), then combined into the project's label maps
(:func:`segmentation.labels.label_map_from_targets`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segmentation.labels import TARGETS, label_map_from_targets
from segmentation.robotseg.model import PointPrompt
from segmentation.robotseg.postprocess import refine_mask, refine_rgb
from segmentation.robotseg.prompts import FramePrompt


@dataclasses.dataclass
class InferenceOptions:
    """How to run video inference (not what the model is)."""

    chunk_size: int = 8  # frames per image-encoder batch
    bf16: bool = True  # bf16 autocast (CUDA only; CPU runs float32)
    compile: bool = False  # torch.compile the image encoder (RobotSeg)
    refine: bool = False  # guided-filter edge refinement of the output masks
    refine_radius: int = 4
    refine_eps: float = 1e-3
    mask_threshold: float = 0.0  # on the logits


@dataclasses.dataclass
class Track:
    """One target to segment through the clip: its conditioning frames and their prompts."""

    target: str
    prompts: dict[int, FramePrompt | None]  # frame -> prompt; None: no clicks (RobotSeg's RPG only)


@dataclasses.dataclass
class Visit:
    """One frame of the schedule: ``cond`` (conditioning), ``forward`` or ``reverse`` tracking."""

    frame: int
    kind: str


class FrameTracker(Protocol):
    """What the engine needs from a model: shared frame encoding and per-target steps."""

    image_size: int

    def encode(self, images: torch.Tensor) -> Sequence[Any]:
        """Per-frame features of ``images`` ``(N, 3, S, S)`` (RGB in [0, 1], model size)."""

    def start(self, target: str, num_frames: int, first_cond_frame: int) -> Any:
        """A fresh tracking state (memory bank) for one target prompted first on ``first_cond_frame``."""

    def step(self, state: Any, frame: int, features: Any, prompt: PointPrompt | None, kind: str) -> torch.Tensor:
        """Mask logits ``(1, 1, h, w)`` (any resolution) for ``frame``; updates ``state``'s memory."""


def schedule(cond_frames: Sequence[int], num_frames: int) -> list[Visit]:
    """SAM 2's order: conditioning frames, then forward from the first of them, then backward to 0."""
    cond = sorted(set(cond_frames))
    if not cond or cond[0] < 0 or cond[-1] >= num_frames:
        raise ValueError(f"conditioning frames {cond} outside a clip of {num_frames} frames")
    visits = [Visit(f, "cond") for f in cond]
    visits += [Visit(f, "forward") for f in range(cond[0] + 1, num_frames) if f not in cond]
    visits += [Visit(f, "reverse") for f in range(cond[0] - 1, -1, -1)]
    return visits


def tracks_for(targets: Sequence[str], prompts: Sequence[FramePrompt] = ()) -> list[Track]:
    """One :class:`Track` per target: prompted frames if any, else automatic from frame 0.

    Targets that only appear in ``prompts`` are tracked too.
    """
    names = list(dict.fromkeys([*targets, *(p.target for p in prompts)]))
    for name in names:
        if name not in TARGETS:
            raise ValueError(f"unknown target {name!r}; expected one of {TARGETS}")
    tracks = []
    for name in names:
        own = {p.frame: p for p in prompts if p.target == name}
        tracks.append(Track(name, own if own else {0: None}))
    return tracks


def point_prompt(prompt: FramePrompt, frame_size: tuple[int, int], image_size: int, device: torch.device) -> PointPrompt:
    """A frame-pixel prompt in model-input pixels; a box becomes corner points 2 and 3 first, as in SAM 2."""
    h, w = frame_size
    coords = [[prompt.box[0], prompt.box[1]], [prompt.box[2], prompt.box[3]]] if prompt.box is not None else []
    labels = [2, 3] if prompt.box is not None else []
    coords += [list(p) for p in prompt.points]
    labels += list(prompt.labels)
    scale = torch.tensor([image_size / w, image_size / h], device=device)
    return PointPrompt(
        coords=torch.tensor(coords, dtype=torch.float32, device=device).unsqueeze(0) * scale,
        labels=torch.tensor(labels, dtype=torch.int32, device=device).unsqueeze(0),
    )


def preprocess(frames: np.ndarray, image_size: int, device: torch.device) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, S, S)`` float in [0, 1] (plain resize, as SAM 2)."""
    images = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    if images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return images.clamp(0, 1)


def _autocast(device: torch.device, options: InferenceOptions):
    if options.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def iter_logits(
    tracker: FrameTracker,
    frames: np.ndarray,
    visits: Sequence[Visit],
    tracks: Sequence[Track],
    states: Sequence[Any],
    options: InferenceOptions,
    device: torch.device,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The engine: run ``visits`` for ``tracks`` (with their tracking ``states``), yield ``(frame, track index, logits)``.

    Frames are encoded ``chunk_size`` visits at a time, each track's step runs on the
    shared features; logits are the model's ``(1, 1, h, w)``. ``states`` carry the memory
    banks, so a caller may run a clip's visits in several calls (the video predictor's
    forward, then backward, propagation) and get what one call would.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    h, w = frames.shape[1:3]
    chunk_size = max(1, options.chunk_size)
    for begin in range(0, len(visits), chunk_size):
        chunk = visits[begin : begin + chunk_size]
        indices = [v.frame for v in chunk]
        if options.compile and len(indices) < chunk_size:  # one shape for the compiled encoder
            indices += [indices[-1]] * (chunk_size - len(indices))
        with _autocast(device, options):
            features = tracker.encode(preprocess(frames[indices], tracker.image_size, device))
        for visit, frame_features in zip(chunk, features):
            for index, (track, state) in enumerate(zip(tracks, states)):
                prompt = track.prompts.get(visit.frame) if visit.kind == "cond" else None
                points = point_prompt(prompt, (h, w), tracker.image_size, device) if prompt is not None else None
                with _autocast(device, options):
                    logits = tracker.step(state, visit.frame, frame_features, points, visit.kind)
                yield visit.frame, index, logits
        del features


def group_by_cond_frames(tracks: Sequence[Track]) -> dict[tuple[int, ...], list[Track]]:
    """Tracks that share their conditioning frames share one schedule (and one image-encoder pass)."""
    groups: dict[tuple[int, ...], list[Track]] = {}
    for track in tracks:
        groups.setdefault(tuple(sorted(track.prompts)), []).append(track)
    return groups


@torch.inference_mode()
def iter_masks(
    tracker: FrameTracker,
    frames: np.ndarray,
    tracks: Sequence[Track],
    options: InferenceOptions,
    device: torch.device,
) -> Iterator[tuple[int, str, np.ndarray]]:
    """Yield ``(frame, target, mask (H, W) bool)`` for every frame of every track, in visiting order."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    num_frames = frames.shape[0]
    if num_frames == 0:
        return
    for cond_frames, group in group_by_cond_frames(tracks).items():
        visits = schedule(cond_frames, num_frames)
        with _autocast(device, options):
            states = [tracker.start(track.target, num_frames, cond_frames[0]) for track in group]
        for frame, index, logits in iter_logits(tracker, frames, visits, group, states, options, device):
            yield frame, group[index].target, _to_mask(logits, frames[frame], options)


def _to_mask(logits: torch.Tensor, frame: np.ndarray, options: InferenceOptions) -> np.ndarray:
    """Logits (any size) -> boolean mask at the frame's own size."""
    h, w = frame.shape[:2]
    resized = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    if options.refine:
        probability = torch.sigmoid(resized - options.mask_threshold).cpu().numpy()
        return refine_mask(frame, probability, options.refine_radius, options.refine_eps)
    return (resized > options.mask_threshold).cpu().numpy()


def track_video(
    tracker: FrameTracker,
    frames: np.ndarray,
    tracks: Sequence[Track],
    options: InferenceOptions | None = None,
    device: torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Boolean masks ``(T, H, W)`` per tracked target."""
    options = options or InferenceOptions()
    device = device or torch.device("cpu")
    masks = {track.target: np.zeros(frames.shape[:3], dtype=bool) for track in tracks}
    for frame, target, mask in iter_masks(tracker, frames, tracks, options, device):
        masks[target][frame] = mask
    return masks


def label_maps_from_masks(masks: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The project's label maps from per-target masks (absent targets count as empty)."""
    empty = np.zeros(shape, dtype=bool)
    return label_map_from_targets(masks.get("robot", empty), masks.get("arm", empty), masks.get("gripper", empty))


def _robotseg_passes(predictor, state, track: Track) -> Iterator[tuple[int, torch.Tensor]]:
    """One target through the release's API: its prompts, then forward and (if prompted later than frame 0) backward."""
    predictor.reset_state(state)
    for frame, prompt in sorted(track.prompts.items()):
        if prompt is None:  # automatic: the Robot Prompt Generator alone
            predictor.add_new_robot(state, frame, obj_id=0, robot=track.target)
            continue
        points = [list(p) for p in prompt.points] or None
        predictor.add_new_points_or_box(
            state,
            frame,
            obj_id=0,
            robots=track.target,
            points=points,
            labels=list(prompt.labels) if points else None,
            box=list(prompt.box) if prompt.box is not None else None,
        )
    first = min(track.prompts)
    outputs = state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    # Tracked frames older than the memory and pointer windows are never read again: dropping them
    # keeps memory bounded on long episodes (the release keeps them all) without changing any mask.
    # The first frames after `first` stay for the backward pass, which reads them.
    window = max(predictor.num_maskmem, predictor.max_obj_ptrs_in_encoder)
    for frame, _, logits in predictor.propagate_in_video(state, track.target):
        yield frame, logits[0]
        for old in [t for t in outputs if t < frame - window and t > first + window]:
            del outputs[old]
    if first > 0:
        for frame, _, logits in predictor.propagate_in_video(state, track.target, start_frame_idx=first, reverse=True):
            if frame != first:
                yield frame, logits[0]
            for old in [t for t in outputs if frame + window < t < first]:
                del outputs[old]


def segment_video(
    predictor,
    frames: np.ndarray,
    targets: Sequence[str] = ("robot",),
    prompts: Sequence[FramePrompt] | None = None,
    options: InferenceOptions | None = None,
) -> np.ndarray:
    """RobotSeg label maps ``(T, H, W)`` uint8 for ``frames`` ``(T, H, W, 3)`` uint8, on the release's predictor.

    ``predictor`` is a :class:`~segmentation.robotseg.predictor.RobotSegVideoPredictor`. Each
    target runs as the release runs one category: without prompts ``add_new_robot`` on frame
    0, with prompts (points and/or a box) on their frames, then ``propagate_in_video`` forward
    (and backward from a later first prompt). ``options.refine`` applies the release's
    guided refinement (:func:`segmentation.robotseg.postprocess.guided_refine_mask`) to
    every frame except the first prompted one, as its evaluation script does.
    """
    options = options or InferenceOptions()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    masks = {}
    was_training = predictor.training
    predictor.eval()  # inference behaviour (no dropout, hard no-object masks) even mid-training
    try:
        with torch.inference_mode(), _autocast(predictor.device, options):
            state = predictor.init_state(frames)
            for track in tracks_for(targets, prompts or ()):
                out = np.zeros(frames.shape[:3], dtype=bool)
                first = min(track.prompts)
                for frame, logits in _robotseg_passes(predictor, state, track):
                    mask = (logits[0] > options.mask_threshold).cpu().numpy()
                    out[frame] = refine_rgb(mask, frames[frame]) if options.refine and frame != first else mask
                masks[track.target] = out
    finally:
        predictor.train(was_training)
    return label_maps_from_masks(masks, frames.shape[:3])


def load_frame_folder(folder) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 RGB from a folder of images named by their index (``00000.jpg``...), in index order."""
    import pathlib

    import cv2

    folder = pathlib.Path(folder)
    files = sorted(
        (p for p in folder.iterdir() if p.stem.isdigit() and p.suffix.lower() in (".jpg", ".jpeg", ".png")),
        key=lambda p: int(p.stem),
    )
    if not files:
        raise ValueError(f"{folder}: no image files named by their frame index")
    frames = []
    for file in files:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{file}: cannot read image")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if len({f.shape for f in frames}) > 1:
        raise ValueError(f"{folder}: frames differ in size")
    return np.stack(frames)
