"""RobotSeg's VRS protocol: prompts from ground truth, and `eval --protocol robotseg` end to end (tiny model)."""

from __future__ import annotations

import csv
import json
import pathlib

import cv2
import numpy as np
import pytest

from segmentation.labels import target_mask
from segmentation.robotseg import build_robotseg_video_predictor, save_checkpoint
from segmentation.robotseg.protocol import Click, box_of, first_present, interior_point, next_click
from segmentation.robotseg.synthetic import render_synthetic_clip
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FOLDERS = {"arm": "000", "gripper": "001", "robot": "002"}


def test_interior_point_is_the_pixel_farthest_from_the_boundary():
    mask = np.zeros((12, 16), bool)
    mask[2:9, 3:14] = True  # rows 2..8, columns 3..13: distance 4 on row 5, columns 6..10
    assert interior_point(mask) == (6, 5)  # ties: first in row-major order
    # An L shape: its centroid lies outside the mask, the interior point inside.
    ell = np.zeros((20, 20), bool)
    ell[2:18, 2:6] = True
    ell[14:18, 2:18] = True
    x, y = interior_point(ell)
    assert ell[y, x]
    # The border of the image counts as boundary: distance 3 on row 2, columns 2..6.
    assert interior_point(np.ones((5, 9), bool)) == (2, 2)


def test_next_click_goes_to_the_largest_error_region():
    gt = np.zeros((20, 20), bool)
    gt[2:12, 2:12] = True
    pred = gt.copy()
    pred[2:12, 8:12] = False  # missed 10 x 4 = 40 pixels
    pred[15:18, 15:18] = True  # false 3 x 3 = 9 pixels
    click = next_click(pred, gt)
    assert click.label == 1 and not pred[int(click.y), int(click.x)] and gt[int(click.y), int(click.x)]
    pred[14:20, 13:20] = True  # now the false region (42 pixels) is the largest
    click = next_click(pred, gt)
    assert click == Click(16, 16, 0) or (click.label == 0 and pred[click.y, click.x] and not gt[click.y, click.x])
    assert next_click(gt, gt) is None


def test_box_and_first_present():
    mask = np.zeros((3, 10, 10), bool)
    mask[2, 3:6, 4:9] = True
    assert box_of(mask[2]) == (4, 3, 8, 5)
    assert first_present(mask) == 2 and first_present(mask[:2]) is None


def write_vrs_split(root: pathlib.Path, videos: int = 2, frames: int = 5) -> dict[str, np.ndarray]:
    """Synthetic robots as a VRS split: image/<video>/<i>.jpg, mask_gt/<video>/<000|001|002>/<i>.png."""
    labels = {}
    for v in range(videos):
        clip = render_synthetic_clip(frames, (48, 64), seed=10 + v)
        name = f"video_{v}"
        (root / "image" / name).mkdir(parents=True)
        for i, frame in enumerate(clip.frames):
            cv2.imwrite(str(root / "image" / name / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        for target, folder in FOLDERS.items():
            (root / "mask_gt" / name / folder).mkdir(parents=True)
            for i, label in enumerate(clip.labels):
                cv2.imwrite(
                    str(root / "mask_gt" / name / folder / f"{i:05d}.png"), target_mask(label, target).astype(np.uint8) * 255
                )
        labels[name] = clip.labels
    return labels


def test_eval_protocol_robotseg_runs_every_setting_and_writes_the_per_video_csv(tmp_path, capsys):
    split = tmp_path / "VRS" / "test"
    write_vrs_split(split)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(build_robotseg_video_predictor("tiny", device="cpu"), checkpoint)
    table, scores = tmp_path / "scores.csv", tmp_path / "scores.json"
    status = run_cli(
        "eval",
        "--protocol",
        "robotseg",
        "--gt",
        split,
        "--config",
        "tiny",
        "--checkpoint",
        checkpoint,
        "--device",
        "cpu",
        "--csv",
        table,
        "--json",
        scores,
    )
    assert status == 0
    rows = list(csv.DictReader(table.open()))
    assert {(r["video"], r["setting"], r["target"]) for r in rows} == {
        (f"video_{v}", s, t) for v in range(2) for s in ("AU", "1C", "3C", "BB") for t in FOLDERS
    }
    assert all(int(r["frames"]) == 5 for r in rows)  # every frame from the prompt frame (0) on, as the release scores
    assert all(0.0 <= float(r["JF"]) <= 100.0 for r in rows)
    payload = json.loads(scores.read_text())
    assert payload["protocol"] == "robotseg" and set(payload["settings"]) == {"AU", "1C", "3C", "BB"}
    out = capsys.readouterr().out
    assert "setting 3C" in out and "J&F" in out


def test_eval_protocol_robotseg_scores_stored_predictions_from_the_first_seen_frame(tmp_path):
    split = tmp_path / "gt"
    labels = write_vrs_split(split, videos=1, frames=6)
    gripper = split / "mask_gt" / "video_0" / FOLDERS["gripper"]
    for i in (0, 1):  # the gripper's ground truth starts on frame 2
        cv2.imwrite(str(gripper / f"{i:05d}.png"), np.zeros((48, 64), np.uint8))
    pred = tmp_path / "pred"
    # A perfect prediction, except the gripper: empty on frame 0, and on frame 1 (before its ground truth) present.
    for target, folder in FOLDERS.items():
        (pred / "video_0" / folder).mkdir(parents=True)
        for i, label in enumerate(labels["video_0"]):
            mask = target_mask(label, target) if (target, i) != ("gripper", 0) else np.zeros((48, 64), bool)
            cv2.imwrite(str(pred / "video_0" / folder / f"{i:05d}.png"), mask.astype(np.uint8) * 255)
    table = tmp_path / "pred.csv"
    assert run_cli("eval", "--protocol", "robotseg", "--gt", split, "--pred", pred, "--csv", table) == 0
    rows = {r["target"]: r for r in csv.DictReader(table.open())}
    # As the release's benchmark: the gripper is scored from the first frame where it shows up
    # in the ground truth or the prediction (1, a false positive: J = F = 0), so 5 frames and
    # J&F = 4/5; the robot on all 6 frames.
    assert labels["video_0"][1].any() and target_mask(labels["video_0"][1], "gripper").any()
    assert rows["gripper"]["frames"] == "5" and float(rows["gripper"]["JF"]) == pytest.approx(80.0)
    assert rows["robot"]["frames"] == "6" and float(rows["robot"]["JF"]) == 100.0


def test_eval_protocol_robotseg_needs_a_checkpoint(tmp_path, capsys):
    split = tmp_path / "VRS"
    write_vrs_split(split, videos=1, frames=3)
    assert run_cli("eval", "--protocol", "robotseg", "--gt", split, "--config", "tiny") == 2
    assert "--checkpoint" in capsys.readouterr().err
