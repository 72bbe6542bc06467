"""Clean plate: exact where the robot ever moves away, inpainted where it never does."""

import numpy as np
import pytest
from scipy import ndimage

from backgrounds.base import BackgroundConfigError, BackgroundRequest, background_source_class
from backgrounds.clean_plate import CleanPlateBackground, CleanPlateOptions, clean_plate, visible_median

HEIGHT, WIDTH, STEPS = 36, 52, 12


def static_scene():
    """A smooth scene (two gradients) with a sharp-edged box: easy to inpaint, easy to check."""
    ys = np.linspace(0, 1, HEIGHT)[:, None]
    xs = np.linspace(0, 1, WIDTH)[None, :]
    scene = np.stack([60 + 120 * xs + 0 * ys, 70 + 100 * ys + 0 * xs, 150 - 60 * xs * ys], axis=-1)
    scene[4:10, 30:44] = (190, 90, 60)
    return np.rint(scene).astype(np.uint8)


def occluded_episode(seed=0):
    """The scene behind a robot: an arm sweeping left to right and a base that never moves."""
    rng = np.random.default_rng(seed)
    scene = static_scene()
    robot = np.zeros((STEPS, HEIGHT, WIDTH), bool)
    for step in range(STEPS):
        left = 2 + 4 * step
        robot[step, 8:30, left : left + 10] = True  # the arm
    robot[:, 26:34, 20:28] = True  # the base: never uncovered
    frames = np.repeat(scene[None], STEPS, axis=0)
    # The robot's pixels are noisy colours, different every frame.
    frames[robot] = rng.integers(0, 256, (robot.sum(), 3), dtype=np.uint8)
    return scene, frames, robot


def test_scene_recovered_exactly_where_uncovered_and_inpainted_elsewhere():
    scene, frames, robot = occluded_episode()
    plate = clean_plate(frames, robot, dilate_px=2, inpaint_radius=3)
    assert plate.shape == (HEIGHT, WIDTH, 3) and plate.dtype == np.uint8

    # A 5x5 square contains the 2-pixel dilation, so these pixels are surely seen at least once.
    grown = ndimage.maximum_filter(robot, size=(1, 5, 5))
    ever_seen = ~grown.all(axis=0)
    never_seen = robot.all(axis=0)
    assert ever_seen.sum() > 0.8 * HEIGHT * WIDTH and never_seen.sum() == 64
    np.testing.assert_array_equal(plate[ever_seen], scene[ever_seen])

    # Where the base always stood: filled (no holes), close to the smooth scene.
    filled = plate[never_seen].astype(int)
    assert filled.min() >= 50
    assert np.abs(filled - scene[never_seen].astype(int)).mean() < 12


def black_pixels(image):
    return int((image == 0).all(axis=-1).sum())


def test_dilation_keeps_robot_edges_out_of_the_plate():
    scene, frames, robot = occluded_episode()
    # The robot's outline is blurred one pixel past its mask, as in real footage.
    halo = ndimage.maximum_filter(robot, size=(1, 3, 3)) & ~robot
    frames[halo] = 0
    assert black_pixels(clean_plate(frames, robot, dilate_px=2)) == 0
    assert black_pixels(clean_plate(frames, robot, dilate_px=0)) > 0  # the rim leaks in without dilation


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_visible_median_matches_numpy_nanmedian():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (9, 7, 11, 3), dtype=np.uint8)
    hidden = rng.random((9, 7, 11)) < 0.4
    hidden[:, 0, 0] = True  # one pixel never seen
    median, seen = visible_median(frames, hidden)
    expected = np.nanmedian(np.where(hidden[..., None], np.nan, frames.astype(float)), axis=0)
    np.testing.assert_array_equal(seen, ~hidden.all(axis=0))
    np.testing.assert_array_equal(median[seen], np.floor(expected[seen] + 0.5).astype(np.uint8))
    assert median[0, 0].tolist() == [0, 0, 0]


def test_robot_everywhere_falls_back_to_the_plain_median():
    frames = np.stack([np.full((6, 8, 3), value, np.uint8) for value in (10, 50, 90)])
    plate = clean_plate(frames, np.ones((3, 6, 8), bool))
    assert np.all(plate == 50)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="foreground"):
        clean_plate(np.zeros((3, 6, 8, 3), np.uint8), np.zeros((3, 6, 7), bool))


def test_source_returns_the_plate_for_every_seed():
    assert background_source_class("clean_plate") is CleanPlateBackground
    scene, frames, robot = occluded_episode()
    source = CleanPlateBackground()
    source.check()
    plates = []
    for seed in (0, 1, 2):
        request = BackgroundRequest("episode_0", "image_0", seed, seed, frames, robot, np.ones((HEIGHT, WIDTH), bool))
        plates.append(source.generate(source.load_model(), request))
    # The plate is the episode's own scene: variation comes from the recipe's photometric transforms.
    np.testing.assert_array_equal(plates[0], plates[1])
    np.testing.assert_array_equal(plates[0], plates[2])
    np.testing.assert_array_equal(plates[0], clean_plate(frames, robot))


@pytest.mark.parametrize(
    "options, key",
    [
        (CleanPlateOptions(dilate_px=-1), "background.dilate_px"),
        (CleanPlateOptions(inpaint_radius=0), "background.inpaint_radius"),
    ],
)
def test_check_names_the_key(options, key):
    with pytest.raises(BackgroundConfigError, match=key):
        CleanPlateBackground(options).check()


def test_a_kept_object_never_reaches_the_plate():
    """A kept task object is in the request's foreground: hidden like the robot, so the plate
    shows the scene where it stands (it is composited back on top), not a copy of it."""
    scene, frames, robot = occluded_episode()
    frames = frames.copy()
    cube = np.zeros((HEIGHT, WIDTH), bool)
    cube[14:20, 6:12] = True  # seen by the camera in every frame at some point of the sweep
    frames[:, cube] = (20, 230, 20)  # a green cube that never moves
    source = CleanPlateBackground()
    model = source.load_model()
    ones = np.ones((HEIGHT, WIDTH), bool)

    as_scene = source.generate(model, BackgroundRequest("episode_0", "image_0", 0, 0, frames, robot, ones))
    kept = robot | cube[None]
    as_kept = source.generate(model, BackgroundRequest("episode_0", "image_0", 0, 0, frames, kept, ones))

    # Not kept, the cube is part of the scene: the plate shows it exactly.
    np.testing.assert_array_equal(as_scene[cube], frames[0][cube])
    # Kept, it is inpainted away: close to the smooth scene under it, nowhere near green.
    green = np.array([20, 230, 20])
    assert np.abs(as_kept[cube].astype(int) - green).sum(axis=-1).min() > 100
    assert np.abs(as_kept[cube].astype(int) - scene[cube].astype(int)).mean() < 15
