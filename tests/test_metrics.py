"""Known-answer tests of J, F and J&F (segmentation/metrics.py)."""

from __future__ import annotations

import json
import math

import cv2
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


def test_full_frame_masks_have_no_boundary():
    # seg2bmap marks changes between a pixel and its east / south / south-east neighbour,
    # and the image border is no change: a mask filling the frame has no boundary pixel.
    full = np.ones((16, 16), bool)
    assert metrics.boundary_map(full).sum() == 0
    assert metrics.score_masks(full, full) == metrics.TargetScore(1.0, 1.0, 1.0)
    # Full prediction, top half ground truth: J = 128 / 256; the prediction's boundary is
    # empty and the ground truth's is not, so precision 1, recall 0: F = 0 (not 1).
    half = np.zeros((16, 16), bool)
    half[:8] = True
    score = metrics.score_masks(full, half)
    assert (score.J, score.F) == (0.5, 0.0)


def test_boundary_of_a_block_in_the_bottom_right_corner():
    # Rows/cols 12..15 of a 16 x 16 frame: the boundary is the row above (row 11, cols
    # 11..15: 5 pixels) and the column left of it (col 11, rows 12..15: 4 pixels); the last
    # row and column compare only along the border, so the block's own edge pixels are not
    # boundary.
    mask = np.zeros((16, 16), bool)
    mask[12:, 12:] = True
    expected = np.zeros((16, 16), bool)
    expected[11, 11:] = True
    expected[12:, 11] = True
    np.testing.assert_array_equal(metrics.boundary_map(mask), expected)


def test_tolerance_rounds_exact_whole_numbers_down():
    # 0.008 * 500 is exactly 4.0 in floating point: ceil gives 4, not 5 (as the release's
    # np.ceil(0.008 * np.linalg.norm((300, 400)))).
    assert metrics.boundary_tolerance_px((300, 400)) == 4
    assert metrics.boundary_tolerance_px((75, 100)) == 1
    assert metrics.boundary_tolerance_px((750, 1000)) == 10


def test_boundary_match_uses_the_euclidean_disk_not_opencvs_ellipse():
    # 128 x 128: r = 2. A one-pixel mask's boundary is the 2 x 2 block at and above-left of
    # it. Ground truth pixel (50, 50): boundary rows 49-50 x cols 49-50. Prediction pixel
    # (51, 52): boundary rows 50-51 x cols 51-52. Squared distances to the nearest pixel of
    # the other boundary: prediction (50,51) 1, (51,51) 2, (50,52) 4, (51,52) 5 > r^2 = 4;
    # ground truth (50,50) 1, (49,50) 2, (50,49) 4, (49,49) 5. Precision = recall = 3/4.
    gt = np.zeros((128, 128), bool)
    gt[50, 50] = True
    pred = np.zeros_like(gt)
    pred[51, 52] = True
    assert metrics.boundary_f_measure(pred, gt) == pytest.approx(0.75)
    # OpenCV's 5 x 5 MORPH_ELLIPSE holds the offset (dy, dx) = (1, 2), so with it the pairs
    # at squared distance 5 would match and F would be 1: the disk choice matters here.
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    assert ellipse[2 + 1, 2 + 2] == 1
    with_ellipse = cv2.dilate(metrics.boundary_map(gt).astype(np.uint8), ellipse).astype(bool)
    assert np.all(with_ellipse[metrics.boundary_map(pred)])


def boundary_f_by_distances(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """F from first principles: a boundary pixel matches when the other boundary has a pixel within ``radius``."""
    pred_pixels = np.argwhere(metrics.boundary_map(pred))
    gt_pixels = np.argwhere(metrics.boundary_map(gt))
    if len(pred_pixels) == 0 or len(gt_pixels) == 0:
        return float(len(pred_pixels) == len(gt_pixels))
    squared = ((pred_pixels[:, None, :] - gt_pixels[None, :, :]) ** 2).sum(-1)
    precision = np.mean(squared.min(axis=1) <= radius * radius)
    recall = np.mean(squared.min(axis=0) <= radius * radius)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize(("shape", "radius"), [((40, 50), 1), ((130, 170), 2), ((300, 400), 4)])
def test_boundary_f_equals_nearest_distance_matching(shape, radius):
    # Radii by hand: diagonals 64.0, 214.0 and 500 px; 0.008 of them 0.51, 1.71, 4.0.
    assert metrics.boundary_tolerance_px(shape) == radius
    rng = np.random.default_rng(7)
    for _ in range(3):
        masks = []
        for _ in range(2):
            mask = np.zeros(shape, bool)
            for _ in range(4):
                y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
                mask[y : y + rng.integers(2, shape[0] // 3), x : x + rng.integers(2, shape[1] // 3)] = True
            masks.append(mask)
        expected = boundary_f_by_distances(masks[0], masks[1], radius)
        assert metrics.boundary_f_measure(masks[0], masks[1]) == pytest.approx(expected, abs=1e-12)


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
    # The release takes frames[1:-1]: a clip of 1 or 2 annotated frames has nothing to score.
    assert list(metrics.scored_frame_indices(2)) == []
    assert list(metrics.scored_frame_indices(1)) == []
    assert list(metrics.scored_frame_indices(2, skip_first_last=False)) == [0, 1]


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

    The prediction is exact on frames 2, 3 and 5 and far off (disjoint) on frame 4;
    frames 0-1 are empty on both sides.
    """
    gt = np.zeros((6, 20, 20), bool)
    gt[2:, 5:9, 5:9] = True
    pred = gt.copy()
    pred[4] = False
    pred[4, 14:18, 14:18] = True
    return pred, gt


def test_object_scores_by_hand_sav_and_robotseg_protocols():
    pred, gt = gripper_video()
    # Default (the release's benchmark()): frames 1..4 (first and last dropped), then the
    # object starts where it is first seen (frame 2): frames 2, 3 exact (J = F = 1),
    # frame 4 disjoint (J = F = 0).
    sav = metrics.score_object(pred, gt)
    assert [f for f, _ in sav] == [2, 3, 4]
    assert [s.J for _, s in sav] == [1.0, 1.0, 0.0]
    assert [s.F for _, s in sav] == [1.0, 1.0, 0.0]
    # RobotSeg (--do_not_skip_first_and_last_frame): every frame from the first seen one,
    # the last included: frames 2-5, J&F = (1 + 1 + 0 + 1) / 4.
    robotseg = metrics.score_object(pred, gt, skip_first_last=False)
    assert [f for f, _ in robotseg] == [2, 3, 4, 5]
    mean = metrics.TargetScore.mean([s for _, s in robotseg])
    assert (mean.J, mean.F, mean.JF) == (0.75, 0.75, 0.75)
    # Frame ids name annotated frames (VRS file numbers).
    assert [f for f, _ in metrics.score_object(pred, gt, frame_ids=range(10, 16), skip_first_last=False)] == [12, 13, 14, 15]


def test_prediction_before_the_ground_truth_starts_the_object():
    # The release accumulates an object from the first frame where it shows up on either
    # side: a false positive before the ground truth appears is scored (J = F = 0), and
    # every later frame is scored, both-empty ones as perfect (J = F = 1).
    gt = np.zeros((5, 16, 16), bool)
    gt[3, 4:8, 4:8] = True
    pred = np.zeros_like(gt)
    pred[1, 10:14, 10:14] = True
    pred[3] = gt[3]
    scores = metrics.score_object(pred, gt, skip_first_last=False)
    assert [(f, s.J, s.F) for f, s in scores] == [(1, 0.0, 0.0), (2, 1.0, 1.0), (3, 1.0, 1.0), (4, 1.0, 1.0)]


def test_target_without_ground_truth_is_not_scored():
    empty = np.zeros((5, 8, 8), bool)
    assert metrics.score_object(empty, empty, skip_first_last=False) == []
    assert metrics.score_object(empty, empty) == []  # never seen on either side
    # Seen only in the prediction: the release reports only objects of the ground truth.
    hallucinated = empty.copy()
    hallucinated[2, 1:3, 1:3] = True
    assert metrics.score_object(hallucinated, empty) == []
    assert metrics.score_object(hallucinated, empty, skip_first_last=False) == []
    # Ground truth only on the skipped first frame: not scored either.
    first_only = empty.copy()
    first_only[0, 1:3, 1:3] = True
    assert metrics.score_object(hallucinated, first_only) == []
    assert len(metrics.score_object(hallucinated, first_only, skip_first_last=False)) == 5


def test_frames_regroup_and_targets_average_over_their_own_frames():
    pred, gt = gripper_video()
    robot = np.ones_like(gt)
    frames = metrics.frames_from_objects(
        "video", {"gripper": metrics.score_object(pred, gt, skip_first_last=False), "robot": metrics.score_object(robot, robot)}
    )
    assert [(f.frame, sorted(f.targets)) for f in frames] == [
        (1, ["robot"]),
        (2, ["gripper", "robot"]),
        (3, ["gripper", "robot"]),
        (4, ["gripper", "robot"]),
        (5, ["gripper"]),
    ]
    episode = metrics.episode_scores("v", "v", frames)
    assert episode.mean["gripper"].JF == 0.75 and episode.mean["robot"].JF == 1.0
    assert "arm" not in episode.mean
    result = metrics.overall_scores([episode])
    rows = metrics.csv_rows(result, "AU")
    assert [(r["target"], r["frames"], r["JF"]) for r in rows] == [("gripper", 4, 75.0), ("robot", 4, 100.0)]


def test_each_camera_clip_weighs_the_same_in_the_overall_score():
    # The release's unit is one (video, object): per clip the mean over its frames, then
    # the mean over clips. Camera "a": 4 scored frames, all missed (J = 0); camera "b":
    # 1 scored frame, exact (J = 1). Mean of clip means 0.5 (pooled frames would give 0.2).
    gt = np.zeros((6, 8, 8), bool)
    gt[:, 2:5, 2:5] = True
    missed = metrics.score_object(np.zeros_like(gt), gt)
    exact = metrics.score_object(gt[:3], gt[:3])
    assert (len(missed), len(exact)) == (4, 1)
    frames = metrics.frames_from_objects("a", {"robot": missed}) + metrics.frames_from_objects("b", {"robot": exact})
    episode = metrics.episode_scores("e", "e", frames)
    assert episode.clip_means["a"]["robot"].J == 0.0 and episode.clip_means["b"]["robot"].J == 1.0
    assert episode.mean["robot"].J == 0.5
    other = metrics.episode_scores("f", "f", metrics.frames_from_objects("a", {"robot": exact}))
    # Three clips overall: (0 + 1 + 1) / 3.
    assert metrics.overall_scores([episode, other]).overall["robot"].J == pytest.approx(2 / 3)
