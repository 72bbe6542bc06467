"""Procedural backgrounds: determinism, variety, the structure of each kind, option checks."""

import numpy as np
import pytest

from backgrounds.base import BackgroundConfigError, BackgroundRequest, background_source_class
from backgrounds.procedural import (
    KINDS,
    PALETTE_NAMES,
    ProceduralBackground,
    ProceduralOptions,
    colour_ramp,
    fractal_noise,
)


def make_request(seed, height=24, width=40, steps=2):
    return BackgroundRequest(
        episode_key="episode_0",
        camera="image_0",
        variant=0,
        seed=seed,
        frames=np.zeros((steps, height, width, 3), np.uint8),
        foreground=np.zeros((steps, height, width), bool),
        replace=np.ones((height, width), bool),
    )


def distinct_colours(image):
    return len(np.unique(image.reshape(-1, 3), axis=0))


def test_registry_resolves_procedural():
    assert background_source_class("procedural") is ProceduralBackground


@pytest.mark.parametrize("size", [(24, 40), (40, 24), (33, 17)])
def test_same_seed_same_background_other_seeds_differ(size):
    source = ProceduralBackground()
    source.check()
    images = []
    for seed in range(12):
        first = source.generate(None, make_request(seed, *size))
        again = source.generate(None, make_request(seed, *size))
        assert first.shape == (*size, 3) and first.dtype == np.uint8
        np.testing.assert_array_equal(first, again)
        images.append(first.tobytes())
    assert len(set(images)) == 12


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_has_its_structure(kind):
    source = ProceduralBackground(ProceduralOptions(kinds=[kind]))
    for seed in range(8):
        image = source.generate(None, make_request(seed, 48, 64))
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        count = distinct_colours(image)
        if kind == "solid":
            assert count == 1
        elif kind == "checker":
            # Two colours in alternating cells; at least one cell edge crosses a 48x64 image.
            assert count == 2
        elif kind == "stripes":
            assert 2 <= count <= 4
        else:  # noise and gradients are continuous ramps between colours
            assert count > 8, f"{kind} seed {seed}: only {count} colours"


def test_checker_neighbouring_cells_alternate():
    source = ProceduralBackground(ProceduralOptions(kinds=["checker"]))
    image = source.generate(None, make_request(3, 64, 64))
    colours = np.unique(image.reshape(-1, 3), axis=0)
    # Both colours cover a fair share of the image, as a checkerboard's cells do.
    shares = [np.all(image == colour, axis=-1).mean() for colour in colours]
    assert min(shares) > 0.25


def test_gray_palette_stays_gray_for_every_kind():
    source = ProceduralBackground(ProceduralOptions(palettes=["gray"], blur_px=2.0))
    for seed in range(15):
        image = source.generate(None, make_request(seed, 32, 32)).astype(int)
        assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])


def test_random_palette_gives_colour():
    source = ProceduralBackground(ProceduralOptions(palettes=["random"], kinds=["solid"]))
    saturations = []
    for seed in range(20):
        pixel = source.generate(None, make_request(seed, 4, 4))[0, 0].astype(int)
        saturations.append(pixel.max() - pixel.min())
    assert max(saturations) > 60


def test_blur_softens_checker_edges():
    sharp = ProceduralBackground(ProceduralOptions(kinds=["checker"]))
    blurred = ProceduralBackground(ProceduralOptions(kinds=["checker"], blur_px=4.0))
    counts = [distinct_colours(blurred.generate(None, make_request(seed, 48, 48))) for seed in range(6)]
    assert all(distinct_colours(sharp.generate(None, make_request(seed, 48, 48))) == 2 for seed in range(6))
    assert max(counts) > 2


def test_fractal_noise_spans_unit_range_and_is_smooth():
    noise = fractal_noise(np.random.default_rng(0), 64, 96)
    assert noise.shape == (64, 96) and noise.dtype == np.float32
    assert noise.min() >= 0 and noise.max() <= 1 and noise.max() - noise.min() > 0.5
    # Smooth: neighbouring pixels differ far less than random pixels do.
    neighbour_step = np.abs(np.diff(noise, axis=1)).mean()
    shuffled = np.random.default_rng(1).permutation(noise.ravel())
    assert neighbour_step < 0.5 * np.abs(np.diff(shuffled)).mean()


def test_colour_ramp_interpolates_between_stops():
    colours = np.array([[0, 0, 0], [200, 100, 50]], np.float32)
    ramp = colour_ramp(np.array([0.0, 0.5, 1.0]), colours)
    np.testing.assert_allclose(ramp, [[0, 0, 0], [100, 50, 25], [200, 100, 50]], atol=1)


@pytest.mark.parametrize(
    "options, key, named",
    [
        (ProceduralOptions(kinds=["noise", "plaid"]), "background.kinds", "'plaid'"),
        (ProceduralOptions(kinds=[]), "background.kinds", "checker"),
        (ProceduralOptions(palettes=["sepia"]), "background.palettes", "'sepia'"),
        (ProceduralOptions(blur_px=-1.0), "background.blur_px", "-1.0"),
    ],
)
def test_check_names_the_key_and_allowed_values(options, key, named):
    with pytest.raises(BackgroundConfigError) as error:
        ProceduralBackground(options).check()
    message = str(error.value)
    assert key in message and named in message
    if "kinds" in key:
        assert all(kind in message for kind in KINDS)
    if "palettes" in key:
        assert all(palette in message for palette in PALETTE_NAMES)
