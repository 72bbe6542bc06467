"""Compositing guarantees: robot kept, background replaced, no flicker, protected regions, jitter."""

import dataclasses

import cv2
import numpy as np
import pytest
from scipy import ndimage

from augment.composite import composite_clip, robot_alpha
from augment.regions import protected_mask
from augment.settings import CompositeSettings
from augment.variants import plan_camera

T, H, W = 6, 48, 64


def moving_robot_clip(seed: int = 0):
    """Random frames, a robot (disk + arm bar) that moves across them, a random static background."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    foreground = np.zeros((T, H, W), dtype=np.uint8)
    for t in range(T):
        cv2.circle(foreground[t], (16 + 4 * t, 20), 9, 1, -1)
        cv2.rectangle(foreground[t], (16 + 4 * t, 20), (20 + 4 * t, H - 1), 1, -1)  # touches the border
    background = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return frames, foreground.astype(bool), background


def ellipse(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def erode(masks: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.stack([cv2.erode(m.astype(np.uint8), kernel) for m in masks]).astype(bool)


def dilate(masks: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in masks]).astype(bool)


def reference_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """The documented ramp, computed on the whole frame with scipy's exact distance transform."""
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    signed = np.where(mask, inside, -outside)
    return np.clip((signed + feather) / (2 * feather), 0, 1)


# --- robot_alpha --------------------------------------------------------------------------


@pytest.mark.parametrize("feather", [2.0, 2.5, 4.0])
def test_alpha_is_one_on_eroded_mask_zero_outside_dilated_and_soft_between(feather):
    _, foreground, _ = moving_robot_clip()
    radius = int(np.ceil(feather))
    for mask in foreground:
        alpha = robot_alpha(mask, CompositeSettings(feather_px=feather))
        assert alpha.dtype == np.float32 and alpha.shape == mask.shape
        for kernel in (ellipse(radius), np.ones((2 * radius + 1,) * 2, np.uint8)):
            core = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
            halo = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
            assert core.sum() > 20
            assert (alpha[core] == 1.0).all()
            assert (alpha[~halo] == 0.0).all()
        soft = (alpha > 0) & (alpha < 1)
        assert soft.sum() > 20
        # The ramp sits on the border: above 1/2 just inside, below 1/2 just outside.
        assert (alpha[mask] > 0.5).all() and (alpha[~mask] < 0.5).all()


def test_alpha_matches_the_documented_ramp_exactly_including_at_the_image_border():
    _, foreground, _ = moving_robot_clip()
    for feather in (1.5, 3.0):
        for mask in foreground:
            expected = reference_alpha(mask, feather)
            np.testing.assert_allclose(robot_alpha(mask, CompositeSettings(feather_px=feather)), expected, atol=1e-6)


def test_small_feather_gives_a_hard_edge():
    _, foreground, _ = moving_robot_clip()
    for feather in (0.0, 1.0):
        alpha = robot_alpha(foreground[0], CompositeSettings(feather_px=feather))
        np.testing.assert_array_equal(alpha, foreground[0].astype(np.float32))


def test_erode_and_dilate_use_euclidean_disks():
    _, foreground, _ = moving_robot_clip()
    mask = foreground[2]
    eroded = robot_alpha(mask, CompositeSettings(feather_px=0, erode_px=2))
    np.testing.assert_array_equal(eroded, ndimage.distance_transform_edt(mask) > 2)
    dilated = robot_alpha(mask, CompositeSettings(feather_px=0, dilate_px=3))
    np.testing.assert_array_equal(dilated, ndimage.distance_transform_edt(~mask) <= 3)
    assert eroded.sum() < mask.sum() < dilated.sum()


def test_alpha_of_empty_and_full_masks():
    settings = CompositeSettings(feather_px=3)
    assert (robot_alpha(np.zeros((H, W), bool), settings) == 0).all()
    assert (robot_alpha(np.ones((H, W), bool), settings) == 1).all()


# --- composite_clip -----------------------------------------------------------------------


def test_robot_core_is_bit_identical_and_background_elsewhere():
    frames, foreground, background = moving_robot_clip()
    settings = CompositeSettings(feather_px=2.0)
    out = composite_clip(frames, foreground, background, None, plan_camera(settings, 1, (H, W)), settings)
    assert out.shape == frames.shape and out.dtype == np.uint8
    core = erode(foreground, ellipse(2))
    outside = ~dilate(foreground, ellipse(2))
    np.testing.assert_array_equal(out[core], frames[core])
    np.testing.assert_array_equal(out[outside], np.broadcast_to(background, frames.shape)[outside])
    # The frames and the background are independent noise: the band in between is a mix.
    band = ~core & ~outside
    assert (out[band] != frames[band]).any() and (out[band] != np.broadcast_to(background, frames.shape)[band]).any()


def test_static_background_does_not_flicker():
    frames, foreground, background = moving_robot_clip()
    settings = CompositeSettings(
        feather_px=2.0, background_transforms=[{"RandomBrightnessContrast": {"brightness_limit": 0.3, "p": 1.0}}]
    )
    out = composite_clip(frames, foreground, background, None, plan_camera(settings, 3, (H, W)), settings)
    halo = dilate(foreground, ellipse(2))
    for t in range(T - 1):
        both_background = ~halo[t] & ~halo[t + 1]
        assert both_background.sum() > 0.5 * H * W
        assert (out[t][both_background].astype(int) - out[t + 1][both_background]).max() == 0


def test_protected_regions_keep_the_original_pixels():
    frames, foreground, background = moving_robot_clip()
    settings = CompositeSettings(feather_px=2.0, protect={"*": [{"box": [0.5, 0.0, 1.0, 0.5]}]})
    protected = protected_mask(settings, "image_0", (H, W))
    assert protected.sum() == (H // 2) * (W // 2)
    out = composite_clip(frames, foreground, background, protected, plan_camera(settings, 0, (H, W)), settings)
    np.testing.assert_array_equal(out[:, protected], frames[:, protected])
    replaced = ~protected & ~dilate(foreground, ellipse(2))
    np.testing.assert_array_equal(out[replaced], np.broadcast_to(background, frames.shape)[replaced])


def test_same_plan_same_output_and_other_seed_other_output():
    frames, foreground, background = moving_robot_clip()
    settings = CompositeSettings(
        jitter_px=3, background_transforms=[{"ColorJitter": {"p": 1.0}}], robot_transforms=[{"HueSaturationValue": {"p": 1.0}}]
    )
    first = composite_clip(frames, foreground, background, None, plan_camera(settings, 11, (H, W)), settings)
    again = composite_clip(frames, foreground, background, None, plan_camera(settings, 11, (H, W)), settings)
    other = composite_clip(frames, foreground, background, None, plan_camera(settings, 12, (H, W)), settings)
    np.testing.assert_array_equal(first, again)
    assert (first != other).mean() > 0.5


def test_jitter_moves_the_whole_frame_by_the_drawn_offset():
    frames, foreground, background = moving_robot_clip()
    settings = CompositeSettings(jitter_px=4)
    plan = next(p for p in (plan_camera(settings, s, (H, W)) for s in range(100)) if 0 not in p.jitter_offset)
    dx, dy = plan.jitter_offset
    assert max(abs(dx), abs(dy)) <= 4
    still = composite_clip(frames, foreground, background, None, dataclasses.replace(plan, jitter_offset=(0, 0)), settings)
    moved = composite_clip(frames, foreground, background, None, plan, settings)
    ys, xs = np.mgrid[4 : H - 4, 4 : W - 4]
    np.testing.assert_array_equal(moved[:, ys + dy, xs + dx], still[:, ys, xs])
    assert (moved != still).any()


def test_background_transform_is_drawn_once_for_static_and_per_frame_backgrounds():
    frames, foreground, _ = moving_robot_clip()
    gray = np.full((H, W, 3), 100, np.uint8)
    settings = CompositeSettings(
        background_transforms=[{"RandomBrightnessContrast": {"brightness_limit": [0.2, 0.4], "contrast_limit": 0, "p": 1.0}}]
    )
    plan = plan_camera(settings, 5, (H, W))
    outside = ~dilate(foreground, ellipse(2))
    static = composite_clip(frames, foreground, gray, None, plan, settings)
    per_frame = composite_clip(frames, foreground, np.stack([gray] * T), None, plan, settings)
    for out in (static, per_frame):
        values = np.unique(out[outside])
        assert values.size == 1  # one brightness shift, the same on every frame
        assert 100 + 0.2 * 255 - 1 <= values[0] <= 100 + 0.4 * 255 + 1


def test_robot_transforms_change_only_the_robot():
    frames, foreground, background = moving_robot_clip()
    settings = CompositeSettings(feather_px=2.0, robot_transforms=[{"InvertImg": {"p": 1.0}}])
    out = composite_clip(frames, foreground, background, None, plan_camera(settings, 0, (H, W)), settings)
    core = erode(foreground, ellipse(2))
    outside = ~dilate(foreground, ellipse(2))
    np.testing.assert_array_equal(out[core], 255 - frames[core])
    np.testing.assert_array_equal(out[outside], np.broadcast_to(background, frames.shape)[outside])


def test_harmonization_pulls_robot_colour_toward_the_background_by_strength():
    frames, foreground, _ = moving_robot_clip()
    rng = np.random.default_rng(1)
    frames[..., 0] = np.clip(frames[..., 0].astype(int) // 4 + 180, 0, 255)  # a reddish robot
    blue = np.zeros((H, W, 3), np.uint8)
    blue[..., 2] = rng.integers(150, 250, (H, W))
    core = erode(foreground, ellipse(2))

    def robot_mean(strength):
        settings = CompositeSettings(feather_px=2.0, harmonize=strength)
        out = composite_clip(frames, foreground, blue, None, plan_camera(settings, 0, (H, W)), settings)
        return out[core].astype(float).mean(axis=0)

    none, half, full = robot_mean(0.0), robot_mean(0.5), robot_mean(1.0)
    np.testing.assert_allclose(none, frames[core].astype(float).mean(axis=0))
    # Red falls and blue rises with the strength.
    assert none[0] > half[0] + 20 > full[0] + 40
    assert none[2] < half[2] - 20 < full[2] - 40


def test_empty_robot_gives_the_background():
    frames, _, background = moving_robot_clip()
    settings = CompositeSettings()
    out = composite_clip(frames, np.zeros((T, H, W), bool), background, None, plan_camera(settings, 0, (H, W)), settings)
    np.testing.assert_array_equal(out, np.broadcast_to(background, frames.shape))


def test_mismatched_shapes_are_rejected():
    frames, foreground, background = moving_robot_clip()
    settings = CompositeSettings()
    plan = plan_camera(settings, 0, (H, W))
    with pytest.raises(ValueError, match="background"):
        composite_clip(frames, foreground, background[:-1], None, plan, settings)
    with pytest.raises(ValueError, match="foreground"):
        composite_clip(frames, foreground[:-1], background, None, plan, settings)
    with pytest.raises(ValueError, match="protected"):
        composite_clip(frames, foreground, background, np.zeros((H, W + 1), bool), plan, settings)
    with pytest.raises(ValueError, match="plan"):
        composite_clip(frames, foreground, background, None, plan_camera(settings, 0, (H + 1, W)), settings)
