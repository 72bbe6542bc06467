"""Image-library backgrounds: crops from a temp folder, corrupt and missing files, remote access."""

import logging
import weakref

import cv2
import numpy as np
import pytest

from backgrounds.base import BackgroundConfigError, BackgroundRequest, background_source_class
from backgrounds.images import FileAccess, ImageLibraryBackground, ImageLibraryOptions, random_crop

SOLID_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 200, 220)]


def make_request(seed, height=24, width=40):
    return BackgroundRequest(
        episode_key="episode_0",
        camera="image_0",
        variant=0,
        seed=seed,
        frames=np.zeros((2, height, width, 3), np.uint8),
        foreground=np.zeros((2, height, width), bool),
        replace=np.ones((height, width), bool),
    )


def write_image(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def coordinate_image(height=128, width=256):
    """Red encodes x, green encodes y: a crop tells where it came from."""
    red = np.broadcast_to(np.arange(width, dtype=np.float32)[None, :] * 255 / (width - 1), (height, width))
    green = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None] * 255 / (height - 1), (height, width))
    return np.rint(np.stack([red, green, np.zeros_like(red)], axis=-1)).astype(np.uint8)


@pytest.fixture
def solid_library(tmp_path):
    """Three PNGs and two JPEGs (one in a subfolder), each one solid colour."""
    (tmp_path / "more").mkdir()
    names = ["a.png", "b.png", "c.PNG", "d.jpg", "more/e.jpeg"]
    for name, colour in zip(names, SOLID_COLOURS):
        write_image(tmp_path / name, np.full((40, 60, 3), colour, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def loaded(options, files=None):
    source = ImageLibraryBackground(options, files=files)
    source.check()
    return source, source.load_model()


def test_registry_resolves_images():
    assert background_source_class("images") is ImageLibraryBackground


def test_folder_lists_images_recursively_and_glob_filters(solid_library):
    folder = ImageLibraryBackground(ImageLibraryOptions(path=str(solid_library)))
    assert [p.rsplit("/", 1)[-1] for p in folder.list_library()] == ["a.png", "b.png", "c.PNG", "d.jpg", "e.jpeg"]
    pngs = ImageLibraryBackground(ImageLibraryOptions(path=str(solid_library / "*.png")))
    assert [p.rsplit("/", 1)[-1] for p in pngs.list_library()] == ["a.png", "b.png"]


@pytest.mark.parametrize("size", [(24, 40), (40, 24)])
def test_crops_come_from_library_images_deterministically(solid_library, size):
    source, model = loaded(ImageLibraryOptions(path=str(solid_library)))
    used = set()
    for seed in range(40):
        image = source.generate(model, make_request(seed, *size))
        assert image.shape == (*size, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, source.generate(model, make_request(seed, *size)))
        # Solid images crop to their colour (JPEG within a few levels).
        distances = [np.abs(image.astype(int) - colour).max() for colour in SOLID_COLOURS]
        assert min(distances) <= 6
        used.add(int(np.argmin(distances)))
    assert used == set(range(len(SOLID_COLOURS)))


def test_crop_window_follows_scale_aspect_and_flip(tmp_path):
    write_image(tmp_path / "coords.png", coordinate_image(128, 256))
    full = ImageLibraryOptions(path=str(tmp_path), scale=[1.0, 1.0], flip=False)
    source, model = loaded(full)
    # Camera aspect 2 = image aspect: the whole image, resized.
    image = source.generate(model, make_request(0, 32, 64)).astype(int)
    assert image[..., 0].min() <= 3 and image[..., 0].max() >= 252
    assert image[..., 1].min() <= 5 and image[..., 1].max() >= 250

    # Square camera at full scale: the largest square, all 128 rows and half of the columns.
    square = source.generate(model, make_request(1, 32, 32)).astype(int)
    assert square[..., 1].max() - square[..., 1].min() >= 245
    assert 115 <= square[..., 0].max() - square[..., 0].min() <= 135

    # A quarter of the area is half of each side: half of the red range.
    quarter, quarter_model = loaded(ImageLibraryOptions(path=str(tmp_path), scale=[0.25, 0.25], flip=False))
    for seed in range(10):
        crop = quarter.generate(quarter_model, make_request(seed, 32, 64)).astype(int)
        assert 115 <= crop[..., 0].max() - crop[..., 0].min() <= 135
        assert np.all(np.diff(crop[..., 0], axis=1) >= 0)  # never mirrored

    flipping, flipping_model = loaded(ImageLibraryOptions(path=str(tmp_path), flip=True))
    mirrored = [
        bool(np.all(np.diff(flipping.generate(flipping_model, make_request(seed, 32, 64))[..., 0].astype(int), axis=1) <= 0))
        for seed in range(30)
    ]
    assert 5 <= sum(mirrored) <= 25


def test_random_crop_handles_tall_images():
    image = coordinate_image(256, 64)
    crop = random_crop(np.random.default_rng(0), image, 20, 50, (1.0, 1.0))
    assert crop.shape == (20, 50, 3)
    assert crop[..., 0].max() - crop[..., 0].min() >= 245  # full width used


def test_corrupt_file_is_skipped_with_a_warning(solid_library, caplog):
    (solid_library / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with caplog.at_level(logging.WARNING, logger="backgrounds.images"):
        source, model = loaded(ImageLibraryOptions(path=str(solid_library)))
    assert any("broken.png" in record.getMessage() for record in caplog.records)
    for seed in range(40):
        image = source.generate(model, make_request(seed))
        assert min(np.abs(image.astype(int) - colour).max() for colour in SOLID_COLOURS) <= 6


def test_cache_off_gives_the_same_backgrounds(solid_library):
    cached, cached_model = loaded(ImageLibraryOptions(path=str(solid_library)))
    uncached, uncached_model = loaded(ImageLibraryOptions(path=str(solid_library), cache_mb=0))
    for seed in range(10):
        np.testing.assert_array_equal(
            cached.generate(cached_model, make_request(seed)), uncached.generate(uncached_model, make_request(seed))
        )


def test_library_model_is_weak_referenceable(solid_library):
    _, model = loaded(ImageLibraryOptions(path=str(solid_library)))
    assert weakref.ref(model)() is model


def test_all_corrupt_library_fails_naming_the_path(tmp_path, caplog):
    (tmp_path / "x.png").write_bytes(b"garbage")
    (tmp_path / "y.jpg").write_bytes(b"")
    source = ImageLibraryBackground(ImageLibraryOptions(path=str(tmp_path)))
    # Files exist; decoding shows they are broken, before the run starts (exit 2), naming a file and why.
    with pytest.raises(BackgroundConfigError, match=f"none of the 2 file.*{tmp_path}.*x.png: not a decodable image"):
        source.check()
    with pytest.raises(BackgroundConfigError, match=str(tmp_path)):
        source.load_model()


def test_empty_folder_and_unmatched_glob_fail_naming_the_path(tmp_path):
    with pytest.raises(BackgroundConfigError, match=f"background.path.*{tmp_path}"):
        ImageLibraryBackground(ImageLibraryOptions(path=str(tmp_path))).check()
    pattern = str(tmp_path / "*.webp")
    with pytest.raises(BackgroundConfigError, match=r"\*\.webp"):
        ImageLibraryBackground(ImageLibraryOptions(path=pattern)).check()


@pytest.mark.parametrize("scale", [[0.0, 1.0], [0.8, 0.5], [0.5], [0.5, 1.5]])
def test_bad_scale_names_the_key(solid_library, scale):
    with pytest.raises(BackgroundConfigError, match="background.scale"):
        ImageLibraryBackground(ImageLibraryOptions(path=str(solid_library), scale=scale)).check()


def test_remote_path_needs_file_access_and_uses_it():
    encoded = {
        f"mem://bucket/photos/{index}.png": cv2.imencode(".png", np.full((30, 30, 3), colour[::-1], np.uint8))[1].tobytes()
        for index, colour in enumerate(SOLID_COLOURS[:2])
    }
    options = ImageLibraryOptions(path="mem://bucket/photos")
    with pytest.raises(BackgroundConfigError, match="FileAccess"):
        ImageLibraryBackground(options).check()

    patterns = []

    def list_paths(pattern):
        patterns.append(pattern)
        return list(encoded)

    source, model = loaded(options, files=FileAccess(list_paths=list_paths, read_bytes=encoded.__getitem__))
    assert patterns[0] == "mem://bucket/photos/**"
    colours = {tuple(source.generate(model, make_request(seed))[0, 0]) for seed in range(20)}
    assert colours == {SOLID_COLOURS[0], SOLID_COLOURS[1]}
