"""Previews: overlays, contact sheets, PNG and GIF files, mask coverage."""

import numpy as np
import pytest
from PIL import Image

from augment.previews import (
    LABEL_COLOURS,
    OBJECT_COLOUR,
    contact_sheet,
    mask_coverage,
    mask_overlay,
    write_gif,
    write_png,
)
from segmentation.labels import ARM, BODY, GRIPPER

T, H, W = 7, 40, 48


def clip_and_labels(seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    labels = np.zeros((T, H, W), np.uint8)
    labels[:, :10, :] = BODY
    labels[:, 10:15, :24] = ARM
    labels[:, 15:20, :12] = GRIPPER
    return frames, labels


def test_mask_overlay_tints_each_label_and_keeps_the_background():
    frames, labels = clip_and_labels()
    black = np.zeros((H, W, 3), np.uint8)
    overlay = mask_overlay(black, labels[0])
    for label in (BODY, ARM, GRIPPER):
        expected = np.rint(np.array(LABEL_COLOURS[label]) * 0.5)
        np.testing.assert_array_equal(overlay[labels[0] == label], np.broadcast_to(expected, ((labels[0] == label).sum(), 3)))
    np.testing.assert_array_equal(mask_overlay(frames[0], labels[0])[labels[0] == 0], frames[0][labels[0] == 0])


def test_contact_sheet_layout():
    frames, labels = clip_and_labels()
    variants = [255 - frames, frames // 2]
    sheet = contact_sheet(frames, labels, variants, n_frames=4)
    assert sheet.shape == ((2 + 2) * H, 4 * W, 3) and sheet.dtype == np.uint8
    # Columns are frames 0, 2, 4, 6 (evenly spaced over 7); cells away from the text label are untouched.
    np.testing.assert_array_equal(sheet[H - 10 : H, W : 2 * W], frames[2][H - 10 :])
    np.testing.assert_array_equal(sheet[3 * H + 20 : 4 * H, 3 * W : 4 * W], (frames // 2)[6][20:])
    # A text label was drawn on the first cell of the original row.
    assert (sheet[:15, :W] != frames[0][:15]).any()
    assert contact_sheet(frames[:2], labels[:2], [], n_frames=4).shape == (2 * H, 2 * W, 3)


def test_objects_get_their_own_overlay_colour_and_the_robot_wins_where_both_are_set():
    frames, labels = clip_and_labels()
    objects = np.zeros((T, H, W), np.uint8)
    objects[:, 25:35, 30:40] = 1
    objects[:, 5:12, 40:46] = 2  # overlaps the robot body (rows < 10) and the background
    black = np.zeros((H, W, 3), np.uint8)
    overlay = mask_overlay(black, labels[0], objects=objects[0])
    only_object = (objects[0] > 0) & (labels[0] == 0)
    assert only_object.sum() == 10 * 10 + 2 * 6
    np.testing.assert_array_equal(
        overlay[only_object], np.broadcast_to(np.rint(np.array(OBJECT_COLOUR) * 0.5), (only_object.sum(), 3))
    )
    body_and_object = (objects[0] > 0) & (labels[0] == BODY)
    np.testing.assert_array_equal(overlay[body_and_object][0], np.rint(np.array(LABEL_COLOURS[BODY]) * 0.5))
    assert OBJECT_COLOUR not in LABEL_COLOURS.values()
    # In a contact sheet, the masks row shows the objects; without objects it does not.
    with_objects = contact_sheet(frames, labels, [frames], n_frames=4, objects=objects)
    without = contact_sheet(frames, labels, [frames], n_frames=4)
    masks_row = slice(H, 2 * H)
    differs = (with_objects[masks_row] != without[masks_row]).any(axis=-1)
    cells = np.concatenate([only_object] * 4, axis=1)
    below_label = slice(20, H)  # the row's text label sits in its first cell's top rows
    assert differs[below_label][cells[below_label]].all()
    assert not differs[below_label][~cells[below_label]].any()
    with pytest.raises(ValueError, match="objects"):
        contact_sheet(frames, labels, [], objects=objects[:, :-1])


def test_contact_sheet_rejects_mismatched_variants():
    frames, labels = clip_and_labels()
    with pytest.raises(ValueError, match="variant 0"):
        contact_sheet(frames, labels, [frames[:, :-1]])


def test_png_round_trip(tmp_path):
    frames, _ = clip_and_labels()
    path = tmp_path / "sub" / "sheet.png"
    write_png(str(path), frames[0])
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), frames[0])


def test_gif_has_one_frame_per_step_with_clips_side_by_side(tmp_path):
    frames, _ = clip_and_labels()
    path = tmp_path / "episode.gif"
    write_gif(str(path), [frames, 255 - frames, frames], fps=4)
    with Image.open(path) as gif:
        assert gif.n_frames == T
        assert gif.size == (3 * W, H)
        assert gif.info["duration"] == 250
    with pytest.raises(ValueError, match="clip 1"):
        write_gif(str(path), [frames, frames[:, :, :-1]])


def test_mask_coverage_fractions():
    _, labels = clip_and_labels()
    coverage = mask_coverage(labels)
    total = H * W
    assert coverage["robot"] == pytest.approx((10 * W + 5 * 24 + 5 * 12) / total)
    assert coverage["arm"] == pytest.approx(5 * 24 / total)
    assert coverage["gripper"] == pytest.approx(5 * 12 / total)
    assert set(coverage) == {"robot", "arm", "gripper"}
