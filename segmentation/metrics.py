"""Video mask metrics: region similarity J, boundary accuracy F and J&F, as RobotSeg's release scores them.

The rules are those of the release's ``tools/benchmark.py`` (run by ``tools/evaluator.py``;
its per-frame part is the vos-benchmark / DAVIS code SA-V's ``sav_benchmark.py`` also uses):

* J is the intersection over union of a predicted and a ground-truth mask; 1 when both
  are empty.
* F is the F-measure of boundary precision and recall. Boundaries are DAVIS's
  ``seg2bmap`` pixels; a boundary pixel is matched when a boundary pixel of the other
  mask lies within Euclidean distance ``r`` (the dilation by ``skimage.morphology.disk(r)``,
  the offsets with ``dy^2 + dx^2 <= r^2``), ``r = ceil(0.008 * sqrt(H^2 + W^2))``. Both
  boundaries empty: F = 1; exactly one empty: F = 0. (A mask covering the whole frame
  has an empty boundary.)
* Frames: one target (a VRS object folder) at a time, over its annotated frames in
  order; by default the first and last are dropped (``[1:-1]``, so a clip of 1 or 2
  frames scores nothing), not with ``skip_first_last=False`` (``eval_auto_semi.sh``'s
  ``--do_not_skip_first_and_last_frame``). Of those, the frames before the target first
  shows up in the ground truth or the prediction are not scored, and a target whose
  ground truth is empty on every remaining frame is not scored at all.
* Aggregation: per clip (a VRS video, or one camera of an episode) and target, the mean
  of J and of F over its scored frames; overall, per target, the mean of those clip
  means over all clips (every clip weighs the same); J&F is (J + F) / 2 at each level.
  Scores are kept in [0, 1]; tables and CSVs print them x 100 as the release does.

Label maps are split into targets with ``segmentation.labels.target_mask``.
No TensorFlow or Beam here: ``pipelines/evaluate.py`` reads datasets and calls these.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from segmentation.labels import TARGETS, target_mask

#: DAVIS's boundary tolerance, as a fraction of the image diagonal.
BOUND_TH = 0.008


@dataclasses.dataclass(frozen=True)
class TargetScore:
    """J, F and their mean J&F for one target, each in [0, 1]."""

    J: float
    F: float
    JF: float

    @classmethod
    def of(cls, j: float, f: float) -> "TargetScore":
        """Score with J&F derived from ``j`` and ``f``."""
        return cls(J=float(j), F=float(f), JF=(float(j) + float(f)) / 2)

    @classmethod
    def mean(cls, scores: Sequence["TargetScore"]) -> "TargetScore":
        """Mean of several scores (J and F averaged; J&F is then their mean)."""
        if not scores:
            raise ValueError("cannot average an empty list of scores")
        return cls.of(float(np.mean([s.J for s in scores])), float(np.mean([s.F for s in scores])))

    def as_dict(self) -> dict[str, float]:
        return {"J": self.J, "F": self.F, "JF": self.JF}


@dataclasses.dataclass(frozen=True)
class FrameScores:
    """Scores of one frame of one camera: the targets scored on that frame (maybe not all)."""

    camera: str
    frame: int  # frame (step) index inside the clip
    targets: dict[str, TargetScore]


@dataclasses.dataclass(frozen=True)
class EpisodeScores:
    """Scores of one compared episode: every scored frame of every camera, and the means.

    ``key`` names the ground-truth episode, ``pred_key`` the prediction that was scored
    against it (they differ when a pipeline output names its source episode).
    ``clip_means`` holds, per camera, each target's mean over that camera's scored frames
    (the release's per-object score of one video); ``mean`` is the mean of those over the
    cameras (for a VRS video, its one clip).
    """

    key: str
    pred_key: str
    frames: tuple[FrameScores, ...]
    mean: dict[str, TargetScore]
    clip_means: dict[str, dict[str, TargetScore]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """A whole comparison: per-episode scores, the overall means and what did not match."""

    episodes: tuple[EpisodeScores, ...]
    overall: dict[str, TargetScore]
    unmatched_pred: tuple[str, ...] = ()
    unmatched_gt: tuple[str, ...] = ()
    skip_first_last: bool = True

    def to_json(self) -> str:
        """JSON text: ``overall`` maps each target to ``{"J", "F", "JF"}``; per-episode means follow."""
        return json.dumps(
            {
                "overall": {target: score.as_dict() for target, score in self.overall.items()},
                "num_episodes": len(self.episodes),
                "skip_first_last": self.skip_first_last,
                "episodes": [
                    {
                        "key": episode.key,
                        "pred_key": episode.pred_key,
                        "num_frames": len(episode.frames),
                        "mean": {target: score.as_dict() for target, score in episode.mean.items()},
                    }
                    for episode in self.episodes
                ],
                "unmatched_pred": list(self.unmatched_pred),
                "unmatched_gt": list(self.unmatched_gt),
            },
            indent=2,
        )


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: intersection over union of two boolean masks; 1 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    _check_same_shape(pred, gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS's ``seg2bmap`` at the mask's own size: pixels where the mask changes.

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour, so the boundary of a filled rectangle rows [r0, r1] x cols [c0, c1] is the
    outline of rows [r0 - 1, r1] x cols [c0 - 1, c1].
    """
    seg = np.asarray(mask, bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_tolerance_px(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Matching radius in pixels: ``bound_th`` of the diagonal rounded up, or ``bound_th`` itself if >= 1.

    The diagonal is the correctly rounded square root of the exact integer ``H^2 + W^2``,
    the value ``numpy.linalg.norm((H, W))`` gives, so the rounding up agrees with the release
    even where ``bound_th * diagonal`` lands on a whole number.
    """
    if bound_th >= 1:
        return int(bound_th)
    height, width = int(shape[0]), int(shape[1])
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def _disk(radius: int) -> np.ndarray:
    # The release dilates with skimage.morphology.disk(r): offsets with x^2 + y^2 <= r^2.
    # OpenCV's MORPH_ELLIPSE differs for r >= 2 (at r = 2 it also holds the offsets
    # (dy, dx) = (+-1, +-2), at distance sqrt(5) > 2), so build the disk here.
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """F: F-measure of boundary precision and recall within the DAVIS tolerance band.

    Both empty -> 1; exactly one empty -> 0.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    _check_same_shape(pred, gt)
    pred_boundary = boundary_map(pred)
    gt_boundary = boundary_map(gt)
    n_pred = np.count_nonzero(pred_boundary)
    n_gt = np.count_nonzero(gt_boundary)
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0

    disk = _disk(boundary_tolerance_px(pred.shape, bound_th))
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), disk).astype(bool)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), disk).astype(bool)
    precision = np.count_nonzero(pred_boundary & gt_dilated) / n_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def score_masks(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> TargetScore:
    """J, F and J&F of one predicted boolean mask against its ground truth."""
    return TargetScore.of(region_similarity(pred, gt), boundary_f_measure(pred, gt, bound_th))


def score_label_maps(
    pred: np.ndarray, gt: np.ndarray, targets: Iterable[str] = TARGETS, bound_th: float = BOUND_TH
) -> dict[str, TargetScore]:
    """Per-target scores of one predicted label map against the ground-truth label map."""
    return {t: score_masks(target_mask(pred, t), target_mask(gt, t), bound_th) for t in targets}


def scored_frame_indices(num_frames: int, skip_first_last: bool = True) -> range:
    """Positions of the annotated frames considered: all, or all but the first and last (none of 1 or 2 frames)."""
    if skip_first_last:
        return range(1, max(num_frames - 1, 1))
    return range(num_frames)


def score_clip(
    camera: str,
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    frame_ids: Sequence[int] | None = None,
    skip_first_last: bool = True,
    targets: Iterable[str] = TARGETS,
    bound_th: float = BOUND_TH,
) -> list[FrameScores]:
    """Per-frame scores of one camera's clip: ``pred`` and ``gt`` are ``(T, H, W)`` label maps.

    Each target is cut out of the label maps and scored on its own (:func:`score_object`);
    ``frame_ids`` name the annotated frames (default ``0..T-1``).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"camera {camera}: prediction shape {pred.shape} != ground truth shape {gt.shape}")
    per_target = {
        t: score_object(
            target_mask(pred, t), target_mask(gt, t), frame_ids=frame_ids, skip_first_last=skip_first_last, bound_th=bound_th
        )
        for t in targets
    }
    return frames_from_objects(camera, per_target)


def scored_object_frames(gt: np.ndarray, pred: np.ndarray | None = None, *, skip_first_last: bool = True) -> list[int]:
    """Positions (into ``gt`` ``(T, H, W)``, frames in annotation order) of the frames one target is scored on.

    The release's rule: of the considered frames (:func:`scored_frame_indices`), scoring
    starts at the first where the target shows up in the ground truth or in ``pred``
    (an object is only accumulated once seen); if the ground truth is empty on all of the
    remaining frames, the target is not scored (only objects seen in the ground truth are
    reported).
    """
    gt_present = np.asarray(gt, bool).reshape(len(gt), -1).any(axis=1)
    seen = gt_present if pred is None else gt_present | np.asarray(pred, bool).reshape(len(gt), -1).any(axis=1)
    frames = list(scored_frame_indices(len(gt), skip_first_last))
    while frames and not seen[frames[0]]:
        frames.pop(0)
    if not any(gt_present[f] for f in frames):
        return []
    return frames


def score_object(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    frame_ids: Sequence[int] | None = None,
    skip_first_last: bool = True,
    bound_th: float = BOUND_TH,
) -> list[tuple[int, TargetScore]]:
    """``(frame_id, score)`` per scored frame of one target's binary masks ``(T, H, W)``.

    One object folder of a VRS video; see :func:`scored_object_frames` for which frames count.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    ids = list(range(len(gt))) if frame_ids is None else list(frame_ids)
    frames = scored_object_frames(gt, pred, skip_first_last=skip_first_last)
    return [(int(ids[i]), score_masks(pred[i], gt[i], bound_th)) for i in frames]


def frames_from_objects(camera: str, per_target: Mapping[str, Sequence[tuple[int, TargetScore]]]) -> list[FrameScores]:
    """Regroup per-target ``(frame_id, score)`` lists into :class:`FrameScores`, in frame order."""
    by_frame: dict[int, dict[str, TargetScore]] = {}
    for target, scores in per_target.items():
        for frame, score in scores:
            by_frame.setdefault(frame, {})[target] = score
    return [FrameScores(camera=camera, frame=f, targets=by_frame[f]) for f in sorted(by_frame)]


def episode_scores(key: str, pred_key: str, frames: Sequence[FrameScores], targets: Iterable[str] = TARGETS) -> EpisodeScores:
    """Collect an episode's frame scores: per camera, each target averaged over the frames it was scored on.

    A target scored on no frame of a camera (not in its ground truth) has no mean there.
    """
    targets = tuple(targets)
    clip_means: dict[str, dict[str, TargetScore]] = {}
    for camera in dict.fromkeys(f.camera for f in frames):
        means = {}
        for t in targets:
            scored = [f.targets[t] for f in frames if f.camera == camera and t in f.targets]
            if scored:
                means[t] = TargetScore.mean(scored)
        clip_means[camera] = means
    mean = {}
    for t in targets:
        per_clip = [means[t] for means in clip_means.values() if t in means]
        if per_clip:
            mean[t] = TargetScore.mean(per_clip)
    return EpisodeScores(key=key, pred_key=pred_key, frames=tuple(frames), mean=mean, clip_means=clip_means)


def overall_scores(
    episodes: Sequence[EpisodeScores],
    *,
    unmatched_pred: Sequence[str] = (),
    unmatched_gt: Sequence[str] = (),
    skip_first_last: bool = True,
    targets: Iterable[str] = TARGETS,
) -> EvalResult:
    """Per target, the mean over every clip (episode camera, or VRS video) of its per-clip mean.

    This is the release's global score: the mean over all (video, object) scores, each
    the mean over that object's scored frames; J&F = (J + F) / 2.
    """
    if not episodes:
        raise ValueError("no episodes were scored")
    overall = {}
    for t in targets:
        scored = [means[t] for e in episodes for means in e.clip_means.values() if t in means]
        if scored:
            overall[t] = TargetScore.mean(scored)
    return EvalResult(
        episodes=tuple(episodes),
        overall=overall,
        unmatched_pred=tuple(unmatched_pred),
        unmatched_gt=tuple(unmatched_gt),
        skip_first_last=skip_first_last,
    )


CSV_COLUMNS = ("video", "pred_key", "setting", "target", "frames", "J", "F", "JF")


def csv_rows(result: EvalResult, setting: str = "") -> list[dict[str, object]]:
    """One row per scored (episode/video, target): the per-video CSV, scores in percent as SA-V prints them."""
    rows = []
    for episode in result.episodes:
        for target, score in episode.mean.items():
            frames = sum(1 for f in episode.frames if target in f.targets)
            rows.append(
                {
                    "video": episode.key,
                    "pred_key": episode.pred_key,
                    "setting": setting,
                    "target": target,
                    "frames": frames,
                    "J": 100 * score.J,
                    "F": 100 * score.F,
                    "JF": 100 * score.JF,
                }
            )
    return rows


def format_table(overall: Mapping[str, TargetScore]) -> str:
    """A plain-text table: one row per target, columns J, F, J&F (percent)."""
    lines = [f"{'target':<10}{'J':>8}{'F':>8}{'J&F':>8}"]
    for target, score in overall.items():
        lines.append(f"{target:<10}{100 * score.J:8.1f}{100 * score.F:8.1f}{100 * score.JF:8.1f}")
    return "\n".join(lines)


def _check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
