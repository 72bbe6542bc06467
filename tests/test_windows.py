"""Bounded memory by design: clips are held encoded and worked on a window of frames at a time,
and working window by window gives exactly what working on whole clips gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_augment_handlers import CAMERAS, bridge_episodes, handler_kwargs

from augment.composite import composite_clip, fit_clip_harmonization
from augment.plan import PlanSettings, plan_variants
from augment.settings import CompositeSettings
from augment.variants import plan_camera
from backgrounds.base import BackgroundRequest, build_background_source
from pipelines.handlers import BackgroundSourceHandler, MaskSourceHandler
from pipelines.stages import ComposePlan, ComposeVariants
from segmentation.frames import Frames, encode_image
from segmentation.sources import ClipMasks, MaskSource


def clip(steps=11, height=20, width=24, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (steps, height, width, 3), dtype=np.uint8)
    labels = np.zeros((steps, height, width), np.uint8)
    for t in range(steps):  # a robot that moves: every frame's mask differs
        labels[t, 2 + t % 7 : 12 + t % 7, 3 + t : 12 + t] = 2
        labels[t, 5 + t % 7 : 8 + t % 7, 5 + t : 8 + t] = 3
    return frames, labels


def test_frames_decode_only_what_is_asked_and_equal_the_decoded_clip():
    frames, labels = clip()
    jpeg = Frames([encode_image(f, "png") for f in frames], "test clip")
    assert jpeg.shape == frames.shape and len(jpeg) == len(frames)
    np.testing.assert_array_equal(np.asarray(jpeg), frames)  # PNG is lossless
    np.testing.assert_array_equal(jpeg[3], frames[3])
    np.testing.assert_array_equal(jpeg[2:9:3], frames[2:9:3])
    np.testing.assert_array_equal(jpeg[[0, 5, 10]], frames[[0, 5, 10]])
    np.testing.assert_array_equal(jpeg[:, 4:, :5], frames[:, 4:, :5])
    starts = [start for start, _ in jpeg.windows(4)]
    assert starts == [0, 4, 8]
    np.testing.assert_array_equal(np.concatenate([w for _, w in jpeg.windows(4)]), frames)
    masks = Frames.from_array(labels)
    assert masks.shape == labels.shape and all(isinstance(b, bytes) for b in masks.encoded)
    np.testing.assert_array_equal(np.asarray(masks), labels)


def test_an_undecodable_frame_is_named():
    frames = Frames([b"\xff\xd8 not a jpeg"], "episode train/000004, camera image_1")
    with pytest.raises(ValueError, match="episode train/000004, camera image_1, step 0: undecodable"):
        frames[0]


@pytest.mark.parametrize("background_kind", ["static", "per-frame"])
def test_compositing_window_by_window_equals_compositing_the_whole_clip(background_kind):
    frames, labels = clip()
    settings = CompositeSettings(
        feather_px=1.5,
        harmonize=0.6,
        jitter_px=2,
        background_transforms=[{"RandomBrightnessContrast": {"p": 1.0}}],
        robot_transforms=[{"HueSaturationValue": {"p": 1.0}}],
    )
    plan = plan_camera(settings, seed=7, frame_shape=frames.shape[1:3])
    background = np.random.default_rng(1).integers(
        0, 256, frames.shape if background_kind == "per-frame" else frames.shape[1:], np.uint8
    )
    foreground = labels > 0
    whole = composite_clip(frames, foreground, background, None, plan, settings)
    # Fitted once for the clip (here on every frame, the sample of a short clip), then per window.
    harmonization = fit_clip_harmonization(frames, foreground, background, plan)
    windows = []
    for start in range(0, len(frames), 4):
        part = slice(start, start + 4)
        windowed_background = background[part] if background.ndim == 4 else background
        windows.append(
            composite_clip(frames[part], foreground[part], windowed_background, None, plan, settings, None, harmonization)
        )
    np.testing.assert_array_equal(np.concatenate(windows), whole)


def test_plan_masks_are_computed_for_the_frames_asked_for_only():
    frames, labels = clip()
    objects = (labels == 0).astype(np.uint8)  # an "object" everywhere the robot is not
    objects[:, :10] = 0
    settings = PlanSettings(seed=0, variants=2, targets=("gripper",), keep_objects=True, composite=CompositeSettings())
    (plan, _) = plan_variants(settings, "e", "c", labels.shape, Frames.from_array(labels), Frames.from_array(objects))
    kept, foreground = plan.masks.window(3, 7)
    np.testing.assert_array_equal(kept, (labels[3:7] == 3) | (objects[3:7] > 0))
    np.testing.assert_array_equal(foreground, (labels[3:7] > 0) | (objects[3:7] > 0))
    kept, _ = plan.masks.at([0, 10])
    np.testing.assert_array_equal(kept, (labels[[0, 10]] == 3) | (objects[[0, 10]] > 0))
    np.testing.assert_array_equal(plan.kept, (labels == 3) | (objects > 0))


def test_a_clean_plate_of_a_long_episode_reads_a_bounded_sample_of_frames():
    frames, labels = clip(steps=200)

    class Counting(Frames):
        read: list[int] = []

        def _decode(self, t):
            self.read.append(t)
            return super()._decode(t)

    counted = Counting([encode_image(f, "png") for f in frames])
    source = build_background_source("clean_plate")
    request = BackgroundRequest("e", "c", 0, 0, counted, labels > 0, np.ones(frames.shape[1:3], bool))
    plate = source.generate(None, request)
    assert plate.shape == frames.shape[1:]
    assert len(set(Counting.read)) == source.options.sample_frames < len(frames)
    assert Counting.read[0] == 0 and max(Counting.read) == len(frames) - 1  # spread over the whole episode


class MovingBoxes(MaskSource):
    """A robot and an object whose masks change every frame (what windows must get right)."""

    name = "moving_boxes_for_tests"

    def segment(self, model, clip):
        return self.segment_clip(model, clip).robot

    def segment_clip(self, model, clip):
        steps, height, width = clip.frames.shape[:3]
        robot = np.zeros((steps, height, width), np.uint8)
        objects = np.zeros((steps, height, width), np.uint8)
        for t in range(steps):
            robot[t, t % (height // 2) : t % (height // 2) + height // 3, : width // 2] = 1 + t % 3
            objects[t, height // 2 :, (t * 3) % (width // 2) : (t * 3) % (width // 2) + width // 4] = 1
        return ClipMasks(robot, objects, ("object 1",))


@pytest.mark.parametrize("background", ["mix", "original"])
def test_the_compose_stage_writes_the_same_bytes_whatever_its_window(bridge_dir, tmp_path, background):
    mask_handler = MaskSourceHandler(MovingBoxes(), **handler_kwargs())
    episodes = [r.inference for r in mask_handler.run_inference(bridge_episodes(bridge_dir), mask_handler.load_model())]
    composite = CompositeSettings(harmonize=0.5, jitter_px=1, background_transforms=[{"RandomGamma": {"p": 1.0}}])
    settings = PlanSettings(seed=5, variants=2, targets=("robot",), keep_objects=True, composite=composite)
    options = None
    if background == "mix":
        from backgrounds.base import BackgroundSpec
        from backgrounds.mix import MixOptions

        options = MixOptions(sources=[BackgroundSpec("procedural"), BackgroundSpec("clean_plate")])
    source = build_background_source(background, options)
    handler = BackgroundSourceHandler(source, plan=settings, **handler_kwargs())
    episodes = [r.inference for r in handler.run_inference(episodes, handler.load_model())]
    assert len(episodes[0].steps) > 3

    def compose(window: int):
        plan = ComposePlan(
            cameras=CAMERAS,
            camera_formats={camera: "jpeg" for camera in CAMERAS},
            plan=settings,
            augments=True,
            keep_original=False,
            write_masks=True,
            previews=1,
            preview_frames=4,
            preview_dir=str(tmp_path / f"previews-{window}"),
            source_dataset="bridge_dataset/1.0.0",
            recipe_sha256="0" * 64,
            tool_version="test",
            object_cameras=tuple(CAMERAS),
            window_frames=window,
        )
        stage = ComposeVariants(plan, fail_fast=True)
        return [list(stage.process((episode.key, episode))) for episode in episodes]

    small, whole = compose(3), compose(10_000)
    assert len(small) == len(whole) == len(episodes)
    for a, b in zip(small, whole):
        outputs_a = [o for o in a if isinstance(o, tuple)]
        outputs_b = [o for o in b if isinstance(o, tuple)]
        assert len(outputs_a) == 2 and outputs_a == outputs_b  # keys and every byte of every step
        record_a, record_b = (dataclasses.replace(o.value, seconds={}) for o in (a[-1], b[-1]))
        assert record_a == record_b  # coverage too
    previews = sorted(p.name for p in (tmp_path / "previews-3").iterdir())
    assert previews and previews == sorted(p.name for p in (tmp_path / "previews-10000").iterdir())
    for name in previews:
        assert (tmp_path / "previews-3" / name).read_bytes() == (tmp_path / "previews-10000" / name).read_bytes()


@pytest.mark.parametrize("feather", [1.5, 2.0, 2.5, 3.0, 4.2, 6.0])
def test_the_window_wide_alpha_equals_the_per_frame_alpha(feather):
    # clip_alpha computes narrow feathers for the whole window at once (erosions and
    # dilations by disks) rather than with a distance transform per frame.
    from augment.composite import BAND_FEATHER_PX, clip_alpha, robot_alpha

    assert feather <= BAND_FEATHER_PX
    rng = np.random.default_rng(int(feather * 10))
    masks = np.zeros((5, 40, 48), bool)
    masks[0, 5:30, 8:40] = True  # a block
    masks[1] = rng.random((40, 48)) < 0.5  # noise: borders everywhere
    masks[2, :, :20] = True  # touching the frame's edges
    masks[3, 10:12, 10:30] = True  # thinner than the feather
    settings = CompositeSettings(feather_px=feather)
    np.testing.assert_allclose(clip_alpha(masks, settings), np.stack([robot_alpha(m, settings) for m in masks]), atol=1e-6)
