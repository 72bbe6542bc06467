"""Known-answer tests of J, F and J&F (segmentation/metrics.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segmentation import metrics
from segmentation.labels import ARM, BODY, GRIPPER


def square(size: int, top: int, left: int, side: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    mask = np.zeros(shape or (size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_tolerance_is_davis_fraction_of_diagonal():
    # 128 x 128: diagonal 181.02 px, 0.008 of it = 1.45 -> 2 px; 64 x 64 -> 0.72 -> 1 px.
    assert metrics.boundary_tolerance_px((128, 128)) == 2
    assert metrics.boundary_tolerance_px((64, 64)) == 1
    assert metrics.boundary_tolerance_px((480, 854)) == math.ceil(0.008 * math.hypot(480, 854))
    assert metrics.boundary_tolerance_px((128, 128), bound_th=3) == 3


def test_boundary_map_of_square_is_its_outline_shifted_up_left():
    # seg2bmap marks outside pixels on the top/left and inside pixels on the bottom/right:
    # a 10 x 10 square at rows/cols 20..29 has the outline of the 11 x 11 box 19..29.
    boundary = metrics.boundary_map(square(64, 20, 20, 10))
    expected = np.zeros((64, 64), bool)
    expected[19:30, 19:30] = True
    expected[20:29, 20:29] = False
    np.testing.assert_array_equal(boundary, expected)
    assert boundary.sum() == 40


def test_identical_masks_score_one():
    mask = square(128, 30, 40, 25)
    score = metrics.score_masks(mask, mask)
    assert (score.J, score.F, score.JF) == (1.0, 1.0, 1.0)


def test_disjoint_far_apart_masks_score_zero():
    score = metrics.score_masks(square(128, 5, 5, 10), square(128, 90, 90, 10))
    assert (score.J, score.F, score.JF) == (0.0, 0.0, 0.0)


def test_shift_inside_tolerance_band():
    # 10 x 10 square shifted right by 2 px: intersection 10 x 8 = 80, union 100 + 100 - 80 = 120.
    # The tolerance at 128 x 128 is 2 px, so every boundary pixel finds a partner: F = 1.
    gt = square(128, 50, 50, 10)
    pred = square(128, 50, 52, 10)
    score = metrics.score_masks(pred, gt)
    assert score.J == pytest.approx(80 / 120)
    assert score.F == pytest.approx(1.0)
    assert score.JF == pytest.approx((80 / 120 + 1.0) / 2)


def test_shift_outside_tolerance_band():
    # 20 x 20 square (outline 4 * 20 = 80 boundary pixels) shifted right by d = 5 > r = 2.
    # Of the shifted outline, the top and bottom rows match except their d - r = 3 rightmost
    # pixels; of the left and right columns (19 interior pixels each) only the r = 2 pixels
    # next to the top and bottom rows match on the left side, none on the right side.
    # Matched = 2 * (21 - 3) + 2 * 2 = 40 of 80: precision = recall = F = 0.5.
    side, d, r = 20, 5, 2
    gt = square(128, 40, 40, side)
    pred = square(128, 40, 40 + d, side)
    matched = 2 * ((side + 1) - (d - r)) + 2 * r
    expected_f = matched / (4 * side)
    assert expected_f == 0.5
    score = metrics.score_masks(pred, gt)
    assert score.F == pytest.approx(expected_f)
    assert score.J == pytest.approx((side * (side - d)) / (side * (side + d)))


def test_empty_masks():
    empty = np.zeros((64, 64), bool)
    assert metrics.score_masks(empty, empty) == metrics.TargetScore(1.0, 1.0, 1.0)
    missed = metrics.score_masks(empty, square(64, 10, 10, 8))
    assert (missed.J, missed.F) == (0.0, 0.0)
    hallucinated = metrics.score_masks(square(64, 10, 10, 8), empty)
    assert (hallucinated.J, hallucinated.F) == (0.0, 0.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        metrics.region_similarity(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def label_map(size: int = 64) -> np.ndarray:
    labels = np.zeros((size, size), np.uint8)
    labels[40:60, 10:50] = BODY
    labels[15:40, 20:30] = ARM
    labels[5:15, 18:32] = GRIPPER
    return labels


def test_label_map_targets():
    gt = label_map()
    # Predict the gripper as arm: arm gets arm + gripper pixels, gripper is missed, robot is perfect.
    pred = gt.copy()
    pred[pred == GRIPPER] = ARM
    scores = metrics.score_label_maps(pred, gt)
    assert scores["robot"].J == 1.0 and scores["robot"].F == 1.0
    assert scores["gripper"].J == 0.0 and scores["gripper"].F == 0.0
    arm_pixels, gripper_pixels = 25 * 10, 10 * 14
    assert scores["arm"].J == pytest.approx(arm_pixels / (arm_pixels + gripper_pixels))


def test_skip_first_last_and_short_clips():
    assert list(metrics.scored_frame_indices(5)) == [1, 2, 3]
    assert list(metrics.scored_frame_indices(5, skip_first_last=False)) == [0, 1, 2, 3, 4]
    assert list(metrics.scored_frame_indices(2)) == [0, 1]
    assert list(metrics.scored_frame_indices(1)) == [0]


def test_clip_episode_and_overall_means():
    gt = np.stack([label_map()] * 4)
    pred = gt.copy()
    pred[1] = 0  # frame 1 predicted empty: 0 for every target present
    frames = metrics.score_clip("cam", pred, gt, frame_ids=[10, 11, 12, 13])
    assert [f.frame for f in frames] == [11, 12]  # first and last annotated frame skipped
    episode = metrics.episode_scores("train/000000", "train/000000", frames)
    assert episode.mean["robot"] == metrics.TargetScore(0.5, 0.5, 0.5)

    all_frames = metrics.score_clip("cam", pred, gt, skip_first_last=False)
    assert len(all_frames) == 4
    assert metrics.episode_scores("k", "k", all_frames).mean["arm"].J == pytest.approx(0.75)

    perfect = metrics.episode_scores("train/000001", "train/000001", metrics.score_clip("cam", gt, gt))
    # Overall = mean of per-episode means, not of frames.
    result = metrics.overall_scores([episode, perfect], unmatched_gt=["train/000002"])
    assert result.overall["gripper"].JF == pytest.approx(0.75)
    decoded = json.loads(result.to_json())
    assert set(decoded["overall"]) == {"arm", "gripper", "robot"}
    assert decoded["overall"]["robot"] == {"J": 0.75, "F": 0.75, "JF": 0.75}
    assert decoded["unmatched_gt"] == ["train/000002"]
    assert len(decoded["episodes"]) == 2


def test_table_lists_every_target():
    table = metrics.format_table({"robot": metrics.TargetScore.of(0.5, 1.0)})
    assert "J&F" in table.splitlines()[0]
    assert table.splitlines()[1].split() == ["robot", "50.0", "100.0", "75.0"]


def gripper_video() -> tuple[np.ndarray, np.ndarray]:
    """Six 20 x 20 frames: the gripper's ground truth appears on frame 2 (a 4 x 4 square).

    The prediction is exact on frames 2 and 3 and far off (disjoint) on frame 4; frame 5
    (last) is never scored, frames 0-1 are empty on both sides.
    """
    gt = np.zeros((6, 20, 20), bool)
    gt[2:, 5:9, 5:9] = True
    pred = gt.copy()
    pred[4] = False
    pred[4, 14:18, 14:18] = True
    return pred, gt


def test_object_scores_by_hand_sav_and_robotseg_protocols():
    pred, gt = gripper_video()
    # SA-V: frames 1..4 (first and last dropped), then the object starts where it is
    # first seen (frame 2): frames 2, 3 exact (J = F = 1), frame 4 disjoint (J = F = 0).
    sav = metrics.score_object(pred, gt)
    assert [f for f, _ in sav] == [2, 3, 4]
    assert [s.J for _, s in sav] == [1.0, 1.0, 0.0]
    assert [s.F for _, s in sav] == [1.0, 1.0, 0.0]
    # RobotSeg: the track starts at the first frame with ground truth (2, the prompt
    # frame), then drops its first and last: frames 3 and 4, J&F = (1 + 0) / 2.
    robotseg = metrics.score_object(pred, gt, from_first_present=True)
    assert [f for f, _ in robotseg] == [3, 4]
    mean = metrics.TargetScore.mean([s for _, s in robotseg])
    assert (mean.J, mean.F, mean.JF) == (0.5, 0.5, 0.5)
    # Frame ids name annotated frames (VRS file numbers).
    assert [f for f, _ in metrics.score_object(pred, gt, frame_ids=range(10, 16), from_first_present=True)] == [13, 14]


def test_target_without_ground_truth_is_not_scored_under_robotseg_protocol():
    empty = np.zeros((5, 8, 8), bool)
    assert metrics.score_object(empty, empty, from_first_present=True) == []
    assert metrics.score_object(empty, empty) == []  # SA-V: never seen on either side
    hallucinated = empty.copy()
    hallucinated[2, 1:3, 1:3] = True
    assert [s.J for _, s in metrics.score_object(hallucinated, empty)] == [0.0, 1.0]


def test_frames_regroup_and_targets_average_over_their_own_frames():
    pred, gt = gripper_video()
    robot = np.ones_like(gt)
    frames = metrics.frames_from_objects(
        "video", {"gripper": metrics.score_object(pred, gt, from_first_present=True), "robot": metrics.score_object(robot, robot)}
    )
    assert [(f.frame, sorted(f.targets)) for f in frames] == [
        (1, ["robot"]),
        (2, ["robot"]),
        (3, ["gripper", "robot"]),
        (4, ["gripper", "robot"]),
    ]
    episode = metrics.episode_scores("v", "v", frames)
    assert episode.mean["gripper"].JF == 0.5 and episode.mean["robot"].JF == 1.0
    assert "arm" not in episode.mean
    result = metrics.overall_scores([episode])
    rows = metrics.csv_rows(result, "AU")
    assert [(r["target"], r["frames"], r["JF"]) for r in rows] == [("gripper", 2, 50.0), ("robot", 4, 100.0)]
