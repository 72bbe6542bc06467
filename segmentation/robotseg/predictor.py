"""RobotSeg's released video API on our model: ``build_robotseg_video_predictor`` and its predictor.

Scripts written for the release (and for SAM 2's ``SAM2VideoPredictor``) run unchanged::

    predictor = build_robotseg_video_predictor("robotseg-infer.yaml", "robotseg.pt", device="cuda")
    state = predictor.init_state("video_frames/")        # folder of JPEGs, a video file, or (T, H, W, 3) uint8
    frame_idx, obj_ids, logits = predictor.add_new_robot(state, frame_idx=0, obj_id=1, robot="arm")
    for frame_idx, obj_ids, logits in predictor.propagate_in_video(state, robot="arm"):
        masks = logits > 0.0                              # (num_objects, 1, H, W), video resolution

Return conventions are SAM 2's: ``(frame_idx, obj_ids, video_res_masks)`` with mask
logits ``(num_objects, 1, H, W)`` at the video's size, objects in the order they were
added; ``propagate_in_video`` goes forward from the first prompted frame (``reverse=True``
backward), so a forward call then a backward call covers the clip.

Everything runs through the engine of ``segmentation.robotseg.video`` (``iter_logits``),
the one the Beam mask source and ``eval`` use: same preprocessing, same chunked
image encoding, same memory bank. Differences from SAM 2, by design:

* an object's frames before its first prompted frame are not tracked in a forward
  call (SAM 2 tracks them toward a later prompt); they come back as no-object logits;
* prompts added after tracking restart that object's tracking from its prompts
  (SAM 2 treats clicks on tracked frames as corrections); mask prompts
  (``add_new_mask``) are not supported.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE

from segmentation.labels import TARGETS
from segmentation.robotseg.config import RobotSegConfig
from segmentation.robotseg.model import RobotSeg, build_robotseg
from segmentation.robotseg.prompts import FramePrompt
from segmentation.robotseg.video import InferenceOptions, RobotSegTracker, Track, Visit, group_by_cond_frames, iter_logits

#: Config file names of the release, mapped to our named configurations.
RELEASE_CONFIGS = {"robotseg-infer": "robotseg_hiera_t", "robotseg": "robotseg_hiera_t"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def load_video_frames(video: str | os.PathLike | np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 RGB from a folder of images, a video file or in-memory frames.

    A folder's images are ordered by the integer in their names (SAM 2's ``00000.jpg``
    convention), falling back to name order.
    """
    if not isinstance(video, (str, os.PathLike)):
        frames = np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"in-memory frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        return frames
    path = pathlib.Path(video)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix in _IMAGE_SUFFIXES]
        if not files:
            raise ValueError(f"{path}: no image files ({', '.join(_IMAGE_SUFFIXES[:3])})")
        files.sort(key=lambda p: (int(p.stem), p.name) if p.stem.isdigit() else (float("inf"), p.name))
        frames = []
        for file in files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{file}: cannot read image")
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if len({f.shape for f in frames}) > 1:
            raise ValueError(f"{path}: frames differ in size")
        return np.stack(frames)
    if not path.is_file():
        raise ValueError(f"{path}: no such video file or frame folder")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be decoded")
    return np.stack(frames)


@dataclasses.dataclass
class RobotObject:
    """One tracked object of a state: its target and its prompts (``None`` = RobotSeg's automatic prompt)."""

    obj_id: Any
    target: str
    target_given: bool  # False: points/box without `robots=`; propagate_in_video(robot=...) may set it
    prompts: dict[int, FramePrompt | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Session:
    """Tracking in progress for objects that share conditioning frames (memory banks, cached prompt-frame logits)."""

    objects: list[Any]  # obj_ids, in group order
    tracks: list[Track]
    states: list[Any]
    cond_logits: dict[int, list[torch.Tensor]]  # frame -> per object (1, 1, h, w)
    directions: set[str]


@dataclasses.dataclass
class InferenceState:
    """What ``init_state`` returns. Also readable with SAM 2's keys (``state["num_frames"]``...)."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    num_frames: int
    video_height: int
    video_width: int
    device: torch.device
    objects: "collections.OrderedDict[Any, RobotObject]" = dataclasses.field(default_factory=collections.OrderedDict)
    sessions: dict[tuple[int, ...], _Session] = dataclasses.field(default_factory=dict)

    @property
    def obj_ids(self) -> list[Any]:
        return list(self.objects)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class RobotSegVideoPredictor:
    """The release's video predictor on :class:`RobotSeg`; see the module docstring."""

    def __init__(self, model: RobotSeg, options: InferenceOptions | None = None):
        self.model = model.eval()
        self.options = options or InferenceOptions()
        if self.options.compile:
            model.enable_compile()
        self.tracker = RobotSegTracker(model)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        return self.model.image_size

    # ------------------------------------------------------------------ state

    def init_state(
        self,
        video_path,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> InferenceState:
        """A state for a folder of frames, a video file, or in-memory ``(T, H, W, 3)`` uint8 frames.

        Frames stay in memory at their own size (SAM 2's offload flags are accepted and
        have no effect: nothing is kept on the device between chunks).
        """
        frames = load_video_frames(video_path)
        return InferenceState(frames, len(frames), frames.shape[1], frames.shape[2], self.device)

    def reset_state(self, state: InferenceState) -> None:
        """Forget every object, prompt and tracking result."""
        state.objects.clear()
        state.sessions.clear()

    def _object(self, state: InferenceState, obj_id: Any, target: str | None) -> RobotObject:
        if target is not None and target not in TARGETS:
            raise ValueError(f"object {obj_id}: unknown robot target {target!r}; expected one of {TARGETS}")
        obj = state.objects.get(obj_id)
        if obj is None:
            obj = state.objects[obj_id] = RobotObject(obj_id, target or "robot", target is not None)
        elif target is not None and target != obj.target:
            if obj.target_given:
                raise ValueError(f"object {obj_id} tracks {obj.target!r}; use another obj_id for {target!r}")
            obj.target, obj.target_given = target, True
        state.sessions.clear()  # new prompts: tracking restarts from the prompts
        return obj

    def _check_frame(self, state: InferenceState, frame_idx: int) -> int:
        if not 0 <= frame_idx < state.num_frames:
            raise ValueError(f"frame_idx {frame_idx} outside a video of {state.num_frames} frames")
        return int(frame_idx)

    # ------------------------------------------------------------------ prompts

    def add_new_robot(self, state: InferenceState, frame_idx: int, obj_id: Any, robot: str = "robot"):
        """Prompt ``obj_id`` on ``frame_idx`` with RobotSeg's automatic robot prompt for ``robot`` (arm, gripper, robot).

        Returns ``(frame_idx, obj_ids, video_res_masks)`` for that frame.
        """
        frame_idx = self._check_frame(state, frame_idx)
        obj = self._object(state, obj_id, robot)
        obj.prompts[frame_idx] = None
        return frame_idx, state.obj_ids, self._frame_output(state, frame_idx)

    def add_new_points_or_box(
        self,
        state: InferenceState,
        frame_idx: int,
        obj_id: Any,
        points=None,
        labels=None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box=None,
        robots: str | None = None,
    ):
        """Clicks (labels 1 positive, 0 negative) and/or a box ``[x0, y0, x1, y1]`` for ``obj_id`` on ``frame_idx``.

        Coordinates are video pixels (``normalize_coords=False``: fractions of the width
        and height). ``robots`` names the object's target (default ``robot``, or the one
        it was added with). Returns ``(frame_idx, obj_ids, video_res_masks)``.
        """
        frame_idx = self._check_frame(state, frame_idx)
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        obj = self._object(state, obj_id, robots)
        scale = np.array([1.0, 1.0]) if normalize_coords else np.array([state.video_width, state.video_height], float)
        xy = _as_array(points, (-1, 2)) * scale if points is not None else np.zeros((0, 2))
        new_labels = [int(v) for v in _as_array(labels, (-1,))] if labels is not None else []
        old = obj.prompts.get(frame_idx)
        if box is not None and not clear_old_points:
            raise ValueError("cannot add box without clearing old points (use clear_old_points=True), as in SAM 2")
        if not clear_old_points and old is not None:
            xy = np.concatenate([np.asarray(old.points, float).reshape(-1, 2), xy])
            new_labels = list(old.labels) + new_labels
            box_xyxy = old.box
        else:
            box_xyxy = tuple(float(v) for v in (_as_array(box, (4,)) * np.tile(scale, 2))) if box is not None else None
        obj.prompts[frame_idx] = FramePrompt(frame_idx, obj.target, tuple(map(tuple, xy.tolist())), tuple(new_labels), box_xyxy)
        return frame_idx, state.obj_ids, self._frame_output(state, frame_idx)

    add_new_points = add_new_points_or_box  # SAM 2's deprecated name

    def _frame_output(self, state: InferenceState, frame_idx: int) -> torch.Tensor:
        """Every object's prompt-frame logits on ``frame_idx`` (no-object logits where it has no prompt)."""
        prompted = [(i, o) for i, o in enumerate(state.objects.values()) if frame_idx in o.prompts]
        tracks = [Track(o.target, {frame_idx: o.prompts[frame_idx]}) for _, o in prompted]
        states = [self.tracker.start(t.target, state.num_frames, frame_idx) for t in tracks]
        low = [None] * len(state.objects)
        for _, index, logits in iter_logits(
            self.tracker, state.frames, [Visit(frame_idx, "cond")], tracks, states, self.options, self.device
        ):
            low[prompted[index][0]] = logits
        return self._video_res(state, low)

    # ------------------------------------------------------------------ tracking

    def propagate_in_video(
        self,
        state: InferenceState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
        robot: str | None = None,
    ) -> Iterator[tuple[int, list[Any], torch.Tensor]]:
        """Yield ``(frame_idx, obj_ids, video_res_masks)`` per frame, forward from the first prompted frame (or backward).

        ``robot`` sets the target of objects prompted with points or a box only; an object
        added for another target is an error.
        """
        if robot is not None:
            for obj in state.objects.values():
                if obj.target != robot:
                    if obj.target_given:
                        raise ValueError(f"propagate_in_video(robot={robot!r}): object {obj.obj_id} tracks {obj.target!r}")
                    self._object(state, obj.obj_id, robot)
        if not state.objects or not any(o.prompts for o in state.objects.values()):
            raise RuntimeError("No prompts are given for any object; call add_new_robot or add_new_points_or_box first")
        if start_frame_idx is None:
            start_frame_idx = min(f for o in state.objects.values() for f in o.prompts)
        limit = state.num_frames if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            order = list(range(start_frame_idx, max(start_frame_idx - limit, 0) - 1, -1)) if start_frame_idx > 0 else []
        else:
            order = list(range(start_frame_idx, min(start_frame_idx + limit, state.num_frames - 1) + 1))
        yield from self._propagate(state, order, "reverse" if reverse else "forward")

    def _propagate(
        self, state: InferenceState, order: list[int], direction: str
    ) -> Iterator[tuple[int, list[Any], torch.Tensor]]:
        objects = [o for o in state.objects.values() if o.prompts]
        groups = group_by_cond_frames([Track(o.target, dict(o.prompts)) for o in objects])
        ids_by_group = {cond: [o.obj_id for o in objects if tuple(sorted(o.prompts)) == cond] for cond in groups}
        runs = []  # (session, frames it yields this call, generator)
        for cond, tracks in groups.items():
            session = state.sessions.get(cond)
            # Only forward-then-backward continues a session (SAM 2's usual two calls); anything else restarts it.
            fresh = session is None or direction in session.directions or direction == "forward"
            if fresh:
                states = [self.tracker.start(t.target, state.num_frames, cond[0]) for t in tracks]
                session = state.sessions[cond] = _Session(ids_by_group[cond], tracks, states, {}, set())
            session.directions.add(direction)
            # Forward tracking starts after the first prompted frame, backward before it.
            step = [f for f in order if f not in cond and (f > cond[0] if direction == "forward" else f < cond[0])]
            visits = ([Visit(f, "cond") for f in cond] if fresh else []) + [Visit(f, direction) for f in step]
            generator = iter_logits(self.tracker, state.frames, visits, session.tracks, session.states, self.options, self.device)
            cond_now = set(cond) if fresh else set()
            runs.append((session, set(step) | cond_now, generator, cond_now))
        buffers: dict[int, dict[tuple[int, int], torch.Tensor]] = collections.defaultdict(dict)
        position = {obj_id: i for i, obj_id in enumerate(state.objects)}
        for frame in order:
            low: list[torch.Tensor | None] = [None] * len(state.objects)
            for run_index, (session, produces, generator, cond_now) in enumerate(runs):
                if frame in produces:
                    while sum(k[0] == run_index for k in buffers[frame]) < len(session.tracks):
                        f, index, logits = next(generator)
                        buffers[f][(run_index, index)] = logits
                        if f in cond_now:  # kept for a later backward call, which does not revisit prompt frames
                            session.cond_logits.setdefault(f, [None] * len(session.tracks))[index] = logits
                for index, obj_id in enumerate(session.objects):
                    logits = buffers[frame].get((run_index, index))
                    if logits is None and frame in session.cond_logits:
                        logits = session.cond_logits[frame][index]
                    if logits is not None:
                        low[position[obj_id]] = logits
            buffers.pop(frame, None)
            yield frame, state.obj_ids, self._video_res(state, low)

    def _video_res(self, state: InferenceState, low: list[torch.Tensor | None]) -> torch.Tensor:
        """``(num_objects, 1, H, W)`` float logits at video size; objects without output get SAM 2's no-object score."""
        size = (state.video_height, state.video_width)
        out = torch.full((len(low), 1, *size), NO_OBJ_SCORE, dtype=torch.float32, device=self.device)
        for i, logits in enumerate(low):
            if logits is not None:
                out[i : i + 1] = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
        return out


def _as_array(value, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=float).reshape(shape)


def build_robotseg_video_predictor(
    config_file: str | RobotSegConfig = "robotseg_hiera_t",
    ckpt_path: str | None = None,
    device: str | torch.device = "cuda",
    options: InferenceOptions | None = None,
    strict: bool = False,
) -> RobotSegVideoPredictor:
    """The release's entry point: a :class:`RobotSegVideoPredictor` for ``config_file`` and ``ckpt_path``.

    ``config_file`` is one of our config names (``robotseg_hiera_t``, ``tiny``), a
    :class:`RobotSegConfig`, or the release's config file name (``robotseg-infer.yaml``,
    any folder), which maps to ``robotseg_hiera_t``. ``device="cuda"`` without a GPU
    falls back to the CPU, as nothing else could run.
    """
    if isinstance(config_file, str):
        stem = pathlib.Path(config_file).name.removesuffix(".yaml")
        config_file = RELEASE_CONFIGS.get(stem, stem)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        device = torch.device("cpu")
    model = build_robotseg(config_file, ckpt_path, device, strict=strict)
    return RobotSegVideoPredictor(model, options)
