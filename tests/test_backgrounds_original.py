"""The original-frames background."""

import numpy as np

from backgrounds.base import BackgroundRequest, background_source_class
from backgrounds.original import OriginalBackground


def test_original_returns_the_episode_frames_for_every_seed():
    assert background_source_class("original") is OriginalBackground
    frames = np.random.default_rng(0).integers(0, 256, (4, 10, 14, 3), dtype=np.uint8)
    source = OriginalBackground()
    source.check()
    for seed in (0, 7):
        robot, replace = np.zeros((4, 10, 14), bool), np.ones((10, 14), bool)
        request = BackgroundRequest("episode_0", "image_0", 0, seed, frames, robot, replace)
        background = source.generate(source.load_model(), request)
        assert background.shape == (4, 10, 14, 3) and background.dtype == np.uint8
        np.testing.assert_array_equal(background, frames)
