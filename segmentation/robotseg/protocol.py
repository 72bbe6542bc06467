"""RobotSeg's video evaluation protocol (VRS): prompts generated from the ground truth, one target at a time.

Settings, as in the paper's tables:

* ``AU`` automatic: ``add_new_robot`` on the target's first frame with ground truth;
* ``1C`` one positive click at the mask's interior centre (the pixel farthest from
  its boundary, by distance transform);
* ``3C`` three clicks: the first as ``1C``, each next one at the interior centre of the
  largest error region of the prediction so far (positive on a missed region, negative
  on a false one); the click prefix (1, 2 or 3 clicks) whose prompt-frame IoU is best is
  kept (our reading of "best prefix");
* ``BB`` the ground-truth box of the first frame.

Each target is tracked forward from its first present frame through the released
predictor API (``segmentation.robotseg.predictor``, the same engine as the Beam source),
one target per state as the release runs one category at a time. As the release's
``test/inference_auto_semi_vrs.py`` (``--guided_filter``, default on), every propagated
frame except the first is refined by the release's guided refinement; every frame from the
prompt frame on is scored (``eval_auto_semi.sh`` passes ``--do_not_skip_first_and_last_frame``).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np
import torch

from segmentation.robotseg.postprocess import refine_rgb
from segmentation.robotseg.predictor import RobotSegVideoPredictor

SETTINGS = ("AU", "1C", "3C", "BB")
#: Object ids the release uses per target (VRS folders 000, 001, 002).
OBJECT_IDS = {"arm": 0, "gripper": 1, "robot": 2}


@dataclasses.dataclass(frozen=True)
class Click:
    """One click in frame pixels: ``label`` 1 on the target, 0 off it."""

    x: float
    y: float
    label: int


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the pixel of ``mask`` farthest from its boundary (the image border counts as boundary).

    Ties go to the first pixel in row-major order, so the result is deterministic.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("interior_point of an empty mask")
    padded = np.pad(mask, 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def next_click(pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """A corrective click at the largest connected error region (None when the prediction is exact)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    best: tuple[int, np.ndarray, int] | None = None
    for error, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        count, components, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        for index in range(1, count):
            area = int(stats[index, cv2.CC_STAT_AREA])
            if best is None or area > best[0]:
                best = (area, components == index, label)
    if best is None:
        return None
    x, y = interior_point(best[1])
    return Click(x, y, best[2])


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the tight box of ``mask``, inclusive pixel coordinates."""
    ys, xs = np.nonzero(np.asarray(mask, bool))
    if xs.size == 0:
        raise ValueError("box_of an empty mask")
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def first_present(gt: np.ndarray) -> int | None:
    """Index of the first frame of ``gt`` ``(T, H, W)`` with any foreground, or None."""
    present = np.flatnonzero(np.asarray(gt, bool).reshape(len(gt), -1).any(axis=1))
    return int(present[0]) if present.size else None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def prompt_target(
    predictor: RobotSegVideoPredictor, state: dict, target: str, setting: str, frame: int, gt: np.ndarray
) -> list[Click] | tuple[int, int, int, int] | None:
    """Prompt ``target`` on ``frame`` of ``state`` per ``setting`` from its ground truth ``gt`` ``(H, W)``; returns the prompt used."""
    obj_id = OBJECT_IDS[target]
    if setting == "AU":
        torch.manual_seed(0)  # the prompt generator's sampling draws from the global RNG
        predictor.add_new_robot(state, frame, obj_id, robot=target)
        return None
    if setting == "BB":
        box = box_of(gt)
        predictor.add_new_points_or_box(state, frame, obj_id, box=box, robots=target)
        return box
    if setting not in ("1C", "3C"):
        raise ValueError(f"unknown setting {setting!r}; expected one of {SETTINGS}")
    x, y = interior_point(gt)
    clicks = [Click(x, y, 1)]
    best: tuple[float, list[Click]] | None = None
    for _ in range(1 if setting == "1C" else 3):
        _, ids, logits = predictor.add_new_points_or_box(
            state, frame, obj_id, points=[[c.x, c.y] for c in clicks], labels=[c.label for c in clicks], robots=target
        )
        pred = (logits[ids.index(obj_id), 0] > 0).cpu().numpy()
        iou = _iou(pred, gt)
        if best is None or iou > best[0]:
            best = (iou, list(clicks))
        click = next_click(pred, gt)
        if click is None:
            break
        clicks.append(click)
    chosen = best[1]
    predictor.add_new_points_or_box(
        state, frame, obj_id, points=[[c.x, c.y] for c in chosen], labels=[c.label for c in chosen], robots=target
    )
    return chosen


def segment_for_protocol(
    predictor: RobotSegVideoPredictor, frames: np.ndarray, gt: dict[str, np.ndarray], setting: str, refine: bool = True
) -> dict[str, np.ndarray]:
    """Predicted masks ``(T, H, W)`` per target of ``gt`` (masks over all ``frames``), each tracked from its first present frame.

    Targets with no ground truth anywhere are left out (the protocol does not score them).
    Frames before a target's first present frame stay empty (they are not scored).
    """
    starts = {t: first_present(m) for t, m in gt.items()}
    starts = {t: f for t, f in starts.items() if f is not None}
    out = {t: np.zeros(frames.shape[:3], bool) for t in starts}
    if not starts:
        return {}
    with torch.inference_mode():
        state = predictor.init_state(frames)
        for target, start in starts.items():
            predictor.reset_state(state)
            prompt_target(predictor, state, target, setting, start, np.asarray(gt[target][start], bool))
            for i, (frame, ids, logits) in enumerate(predictor.propagate_in_video(state, target)):
                mask = (logits[ids.index(OBJECT_IDS[target]), 0] > 0).cpu().numpy()
                out[target][frame] = refine_rgb(mask, frames[frame]) if refine and i != 0 else mask
    return out


def settings_from(names: Sequence[str]) -> tuple[str, ...]:
    """Validated setting names (upper case), in the given order."""
    out = tuple(n.upper() for n in names)
    unknown = [n for n in out if n not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown protocol setting {unknown[0]!r}; expected some of {', '.join(SETTINGS)}")
    return out
