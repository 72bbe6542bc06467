"""Protected regions: boxes and polygons in relative coordinates, per-step mask features."""

import cv2
import numpy as np
import pytest

from augment.regions import protected_mask, replace_mask
from augment.settings import CompositeSettings

H, W = 20, 40


def test_box_covers_the_pixels_whose_centres_lie_inside():
    settings = CompositeSettings(protect={"cam": [{"box": [0.25, 0.5, 0.5, 1.0]}]})
    mask = protected_mask(settings, "cam", (H, W))
    expected = np.zeros((H, W), bool)
    expected[10:20, 10:20] = True  # x in [10, 20) of 40, y in [10, 20) of 20
    np.testing.assert_array_equal(mask, expected)
    assert not protected_mask(settings, "other_cam", (H, W)).any()


def test_star_regions_apply_to_every_camera_and_unite_with_the_camera_own():
    settings = CompositeSettings(protect={"*": [{"box": [0.0, 0.0, 1.0, 0.25]}], "cam": [{"box": [0.0, 0.75, 1.0, 1.0]}]})
    mask = protected_mask(settings, "cam", (H, W))
    assert mask[:5].all() and mask[15:].all() and not mask[5:15].any()
    other = protected_mask(settings, "wrist", (H, W))
    assert other[:5].all() and not other[5:].any()


def test_polygon_is_rasterised_in_relative_coordinates():
    # A right triangle covering the lower-left half of the image.
    settings = CompositeSettings(protect={"*": [{"polygon": [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}]})
    mask = protected_mask(settings, "cam", (W, W))
    ys, xs = np.mgrid[0:W, 0:W]
    assert mask[ys > xs + 1].all()
    assert not mask[ys < xs - 1].any()
    assert abs(mask.mean() - 0.5) < 0.05
    square = CompositeSettings(protect={"*": [{"polygon": [[0.25, 0.5], [0.5, 0.5], [0.5, 1.0], [0.25, 1.0]]}]})
    box = CompositeSettings(protect={"*": [{"box": [0.25, 0.5, 0.5, 1.0]}]})
    # cv2.fillPoly may take in pixels whose centre lies up to half a pixel outside.
    from_polygon, from_box = protected_mask(square, "c", (H, W)), protected_mask(box, "c", (H, W))
    assert (from_polygon >= from_box).all()
    assert (from_polygon <= cv2.dilate(from_box.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)).all()


def test_protect_feature_is_united_over_steps():
    steps = np.zeros((3, H, W, 1), np.uint8)
    steps[0, 0, 0] = 255
    steps[2, 5, 7] = 1
    settings = CompositeSettings(protect_feature="{camera}_protect_mask")
    mask = protected_mask(settings, "image_0", (H, W), {"image_0_protect_mask": steps})
    assert mask.sum() == 2 and mask[0, 0] and mask[5, 7]


def test_missing_or_misshapen_protect_feature_is_an_error_naming_it():
    settings = CompositeSettings(protect_feature="{camera}_protect_mask")
    with pytest.raises(ValueError, match="image_0_protect_mask"):
        protected_mask(settings, "image_0", (H, W), {"other": np.zeros((H, W))})
    with pytest.raises(ValueError, match="image_0_protect_mask"):
        protected_mask(settings, "image_0", (H, W), {"image_0_protect_mask": np.zeros((2, H, W + 1))})


def test_replace_mask_is_the_complement():
    protected = np.zeros((H, W), bool)
    protected[3:6, 4:9] = True
    replace = replace_mask(protected)
    assert replace.dtype == bool
    np.testing.assert_array_equal(replace, ~protected)
