"""Diffusion-inpainted backgrounds, on tiny random diffusers pipelines saved to a folder.

The pipelines paint noise, but through the real diffusers code: what is checked is the
contract around them (shape, seeds, where the clean plate survives, errors at check()).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_inpaint_pipeline import (
    save_tiny_flux_fill,
    save_tiny_sd_inpaint,
    save_tiny_sd_text_to_image,
    save_tiny_sdxl_inpaint,
)

from backgrounds.base import BackgroundConfigError, BackgroundRequest, background_source_class
from backgrounds.clean_plate import clean_plate
from backgrounds.diffusion import (
    DiffusionInpaintBackground,
    DiffusionOptions,
    fill_prompt,
    generation_size,
    inpaint_mask,
    native_resolution,
)

STEPS, HEIGHT, WIDTH = 5, 40, 56
REPLACE_ROWS = 22  # the recipe replaces rows [0, 22); the rest (a table edge, say) is protected
DILATE_PX = 2


def episode(seed=0):
    """Frames of a static scene with sensor noise, a robot block sliding right, and the replaced area.

    The robot reaches below the replaced rows, so some pixels are painted only because
    the robot covers them at some step.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    scene = np.stack([40 + 3 * xs, 60 + 4 * ys, 120 + 0 * xs], axis=-1)
    frames = np.clip(scene[None] + rng.normal(0, 3, (STEPS, HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    robot = np.zeros((STEPS, HEIGHT, WIDTH), bool)
    for step in range(STEPS):
        robot[step, 14:30, 8 + 4 * step : 18 + 4 * step] = True
    replace = np.zeros((HEIGHT, WIDTH), bool)
    replace[:REPLACE_ROWS] = True
    return frames, robot, replace


def request(seed, variant=0, size=(HEIGHT, WIDTH)):
    frames, robot, replace = episode()
    rows, cols = slice(0, size[0]), slice(0, size[1])
    frames, robot, replace = frames[:, rows, cols], robot[:, rows, cols], replace[rows, cols]
    return BackgroundRequest("episode_0", "image", variant, seed, frames, robot, replace)


def grown_box(rows, cols, by):
    """(H, W) bool: a box grown by ``by`` pixels each way (a square contains the disk dilation uses)."""
    box = np.zeros((HEIGHT, WIDTH), bool)
    box[max(rows[0] - by, 0) : rows[1] + by, max(cols[0] - by, 0) : cols[1] + by] = True
    return box


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory):
    return save_tiny_sd_inpaint(tmp_path_factory.mktemp("tiny_sd_inpaint"))


@pytest.fixture(scope="module")
def sd_source(sd_folder):
    options = DiffusionOptions(model=str(sd_folder), steps=2, dilate_px=DILATE_PX)
    return DiffusionInpaintBackground(options)


@pytest.fixture(scope="module")
def sd_model(sd_source):
    return sd_source.load_model()


def test_registry_names_the_source():
    assert background_source_class("diffusion") is DiffusionInpaintBackground


def test_check_accepts_an_inpainting_folder_and_reads_its_kind(sd_source):
    sd_source.check()
    assert sd_source.pipeline_kind().name == "sd"


def test_background_has_the_camera_shape_and_dtype(sd_source, sd_model):
    background = sd_source.generate(sd_model, request(seed=1))
    assert background.shape == (HEIGHT, WIDTH, 3)
    assert background.dtype == np.uint8


def test_generation_runs_at_the_native_pixel_count_with_the_camera_aspect(sd_model):
    # Tiny UNet: latent side 32, VAE scale 2 -> 64 px; 8 latent pixels per step of the size.
    assert native_resolution(sd_model) == 64
    assert generation_size((HEIGHT, WIDTH), 64, 16) == (48, 80)
    assert generation_size((480, 640), 512, 64) == (448, 576)
    assert generation_size((512, 512), 512, 64) == (512, 512)


def test_pixels_outside_the_inpaint_mask_are_the_clean_plate(sd_source, sd_model):
    req = request(seed=2)
    background = sd_source.generate(sd_model, req)
    plate = clean_plate(req.frames, req.foreground)
    # The robot's union is rows 14-30, columns 8-34; replaced rows 0-22; both grown by the dilation.
    painted_at_most = grown_box((0, REPLACE_ROWS), (0, WIDTH), DILATE_PX) | grown_box((14, 30), (8, 34), DILATE_PX)
    outside = ~painted_at_most
    assert outside.sum() > 300
    np.testing.assert_array_equal(background[outside], plate[outside])

    painted = inpaint_mask(req, DILATE_PX)
    assert not (painted & outside).any()
    core = np.zeros((HEIGHT, WIDTH), bool)
    core[: REPLACE_ROWS - DILATE_PX - 1] = True
    assert np.abs(background[core].astype(int) - plate[core]).mean() > 10


def test_pixels_the_robot_ever_covers_are_painted_even_outside_the_replaced_area(sd_source, sd_model):
    req = request(seed=3)
    background = sd_source.generate(sd_model, req)
    plate = clean_plate(req.frames, req.foreground)
    below = req.foreground.any(axis=0)
    below[: REPLACE_ROWS + DILATE_PX + 1] = False  # far enough from the replaced rows to be there only for the robot
    assert below.sum() > 50
    assert np.abs(background[below].astype(int) - plate[below]).mean() > 10


def test_a_kept_object_is_painted_over_and_never_copied_into_the_background(sd_source, sd_model):
    """A static red object below the replaced rows, away from the robot. As part of the scene
    it stays in the background exactly; kept (in the request's foreground, as the pipeline
    sends kept objects) the model paints the new scene behind it and no copy of it remains."""
    base = request(seed=6)
    frames = base.frames.copy()
    cube = np.zeros((HEIGHT, WIDTH), bool)
    cube[31:37, 40:50] = True  # the robot spans rows 14-30, columns 8-34; replaced rows end at 22
    red = np.array([250, 20, 20], np.uint8)
    frames[:, cube] = red
    scene = BackgroundRequest("episode_0", "image", 0, 6, frames, base.foreground, base.replace)
    kept = BackgroundRequest("episode_0", "image", 0, 6, frames, base.foreground | cube[None], base.replace)

    assert not inpaint_mask(scene, DILATE_PX)[cube].any() and inpaint_mask(kept, DILATE_PX)[cube].all()
    np.testing.assert_array_equal(sd_source.generate(sd_model, scene)[cube], frames[0][cube])
    painted = sd_source.generate(sd_model, kept)
    assert np.abs(painted[cube].astype(int) - red).sum(axis=-1).mean() > 100
    # The plate the model starts from has no red either: the object was hidden like the robot.
    plate = clean_plate(frames, kept.foreground)
    assert np.abs(plate[cube].astype(int) - red).sum(axis=-1).min() > 100


def test_same_seed_same_background_also_when_batched_with_others(sd_source, sd_model):
    alone = sd_source.generate(sd_model, request(seed=7))
    batched = sd_source.generate_batch(sd_model, [request(5), request(8, variant=1), request(7), request(9)])
    # Byte for byte: Beam decides the batches, and a rerun must write the same bytes.
    np.testing.assert_array_equal(batched[2], alone)
    again = sd_source.generate(sd_model, request(seed=7))
    np.testing.assert_array_equal(again, alone)


def test_variants_of_one_camera_differ_by_seed_over_the_same_plate(sd_source, sd_model):
    # As the pipeline sends them: the variants share the episode's arrays.
    base = request(seed=11)
    variant = BackgroundRequest(base.episode_key, base.camera, 1, 12, base.frames, base.foreground, base.replace)
    first, second = sd_source.generate_batch(sd_model, [base, variant])
    painted = inpaint_mask(base, DILATE_PX)
    assert np.abs(first[painted].astype(int) - second[painted]).mean() > 10
    plate = clean_plate(base.frames, base.foreground)
    np.testing.assert_array_equal(first[~painted], plate[~painted])
    np.testing.assert_array_equal(second[~painted], plate[~painted])


def test_a_batch_of_several_camera_sizes_keeps_order_and_shapes(sd_source, sd_model):
    sizes = [(HEIGHT, WIDTH), (32, 32), (HEIGHT, WIDTH)]
    requests = [request(20 + i, size=s) for i, s in enumerate(sizes)]
    backgrounds = sd_source.generate_batch(sd_model, requests)
    assert [b.shape[:2] for b in backgrounds] == sizes
    # Each background is the same bytes as the request painted alone (issue 9: outputs must
    # not depend on batching; a batched pipeline call was one level off on some CPUs).
    for batched, single in zip(backgrounds, requests):
        np.testing.assert_array_equal(batched, sd_source.generate(sd_model, single))


def test_nothing_to_replace_and_no_robot_gives_the_clean_plate(sd_source, sd_model):
    req = request(seed=5)
    req.foreground[:] = False
    req.replace[:] = False
    np.testing.assert_array_equal(sd_source.generate(sd_model, req), clean_plate(req.frames, req.foreground))


def test_every_frame_of_an_episode_gets_the_same_background(sd_source, sd_model):
    req = request(seed=4)
    background = sd_source.generate(sd_model, req)
    assert background.shape == req.frames.shape[1:]
    # A minimal per-frame composite: robot pixels from the frame, the rest from the background.
    composited = np.where(req.foreground[..., None], req.frames, background[None])
    uncovered_in_both = ~req.foreground[0] & ~req.foreground[-1]
    np.testing.assert_array_equal(composited[0][uncovered_in_both], composited[-1][uncovered_in_both])
    # The original frames flicker (sensor noise) there; the augmented ones do not.
    assert (req.frames[0][uncovered_in_both] != req.frames[-1][uncovered_in_both]).mean() > 0.5


def test_prompt_slots_are_filled_from_the_request_seed():
    slots = {"material": ["oak"], "lighting": ["dusk"]}
    assert fill_prompt("a {material} table at {lighting}, {material} legs", slots, np.random.default_rng(0)) == (
        "a oak table at dusk, oak legs"
    )
    slots = {"material": ["oak", "marble", "steel"]}
    prompts = [fill_prompt("a {material} table", slots, np.random.default_rng(seed)) for seed in range(20)]
    assert set(prompts) == {"a oak table", "a marble table", "a steel table"}
    assert prompts == [fill_prompt("a {material} table", slots, np.random.default_rng(seed)) for seed in range(20)]


def test_check_names_a_prompt_slot_without_values(sd_folder):
    source = DiffusionInpaintBackground(DiffusionOptions(model=str(sd_folder), prompt="a {colour} wall", slots={}))
    with pytest.raises(BackgroundConfigError, match=r"background\.slots\.colour"):
        source.check()


def test_check_names_a_missing_model_path(tmp_path):
    missing = tmp_path / "no" / "such-inpainting-model"
    with pytest.raises(BackgroundConfigError, match=str(missing)):
        DiffusionInpaintBackground(DiffusionOptions(model=str(missing))).check()


def test_check_names_a_hub_id_that_is_not_in_the_local_cache():
    with pytest.raises(BackgroundConfigError, match="oxe-augment-tests/no-such-model.*allow_download"):
        DiffusionInpaintBackground(DiffusionOptions(model="oxe-augment-tests/no-such-model")).check()


def test_check_rejects_an_empty_folder(tmp_path):
    with pytest.raises(BackgroundConfigError, match=f"{tmp_path}.*model_index.json"):
        DiffusionInpaintBackground(DiffusionOptions(model=str(tmp_path))).check()


@pytest.fixture(scope="module")
def text_to_image_folder(tmp_path_factory):
    return save_tiny_sd_text_to_image(tmp_path_factory.mktemp("tiny_sd_text_to_image"))


def test_check_rejects_a_text_to_image_pipeline(text_to_image_folder):
    with pytest.raises(BackgroundConfigError, match=f"{text_to_image_folder}.*StableDiffusionPipeline"):
        DiffusionInpaintBackground(DiffusionOptions(model=str(text_to_image_folder))).check()


def test_check_rejects_a_text_to_image_unet_under_an_explicit_pipeline(text_to_image_folder):
    # pipeline: sd overrides the class name, but a 4-channel UNet cannot see the plate.
    with pytest.raises(BackgroundConfigError, match=f"{text_to_image_folder}/unet/config.json.*in_channels=4.*9"):
        DiffusionInpaintBackground(DiffusionOptions(model=str(text_to_image_folder), pipeline="sd")).check()


def test_check_rejects_an_inpainting_class_name_over_a_text_to_image_unet(tmp_path, text_to_image_folder):
    folder = tmp_path / "mislabelled"
    folder.mkdir()
    index = json.loads((text_to_image_folder / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionInpaintPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet").mkdir()
    (folder / "unet" / "config.json").write_text((text_to_image_folder / "unet" / "config.json").read_text())
    with pytest.raises(BackgroundConfigError, match="in_channels=4"):
        DiffusionInpaintBackground(DiffusionOptions(model=str(folder))).check()


@pytest.mark.parametrize(
    "option, value, key",
    [
        ("steps", 0, "steps"),
        ("strength", 1.5, "strength"),
        ("pipeline", "kandinsky", "pipeline"),
        ("dtype", "int8", "dtype"),
        ("device", "gpu0", "device"),
    ],
)
def test_check_names_a_bad_option(sd_folder, option, value, key):
    with pytest.raises(BackgroundConfigError, match=rf"background\.{key}"):
        DiffusionInpaintBackground(DiffusionOptions(model=str(sd_folder), **{option: value})).check()


@pytest.mark.parametrize("save, kind", [(save_tiny_sdxl_inpaint, "sdxl"), (save_tiny_flux_fill, "flux")])
def test_sdxl_and_flux_fill_pipelines_paint_through_the_same_contract(tmp_path, save, kind):
    source = DiffusionInpaintBackground(
        DiffusionOptions(model=str(save(tmp_path / kind)), steps=2, dilate_px=DILATE_PX, resolution=64)
    )
    source.check()
    assert source.pipeline_kind().name == kind
    model = source.load_model()
    req = request(seed=30)
    alone = source.generate(model, req)
    batched = source.generate_batch(model, [request(31, variant=1), req])
    assert alone.shape == (HEIGHT, WIDTH, 3) and alone.dtype == np.uint8
    np.testing.assert_array_equal(batched[1], alone)
    assert np.abs(batched[0].astype(int) - alone).mean() > 10
    outside = ~inpaint_mask(req, DILATE_PX)
    np.testing.assert_array_equal(alone[outside], clean_plate(req.frames, req.foreground)[outside])


def test_the_shipped_recipe_validates_and_paints_with_a_model_filled_in(sd_folder):
    from pipelines.recipe import load_recipe

    recipe_path = Path(__file__).resolve().parents[1] / "configs" / "diffusion_inpaint.yaml"
    recipe = load_recipe(str(recipe_path), [f"background.model={sd_folder}", "background.steps=2"])
    source = recipe.background_source()
    assert isinstance(source, DiffusionInpaintBackground)
    source.check()
    background = source.generate(source.load_model(), request(seed=40))
    assert background.shape == (HEIGHT, WIDTH, 3)
    # As shipped, the placeholder path is named by check().
    with pytest.raises(BackgroundConfigError, match="/path/to/stable-diffusion-inpainting"):
        load_recipe(str(recipe_path)).background_source().check()
