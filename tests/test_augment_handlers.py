"""The segment and background handlers on real Bridge episodes: clips carry the instruction,
sources' object masks reach the episode, and both stages read one plan."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from augment.plan import PlanSettings
from augment.settings import CompositeSettings
from pipelines.handlers import BackgroundSourceHandler, MaskSourceHandler, StageFailure, episode_instruction, episode_plans
from pipelines.rlds_io import RawEpisode, decode_episode, image_decoders, open_dataset
from segmentation.sources import CameraClip, ClipMasks, MaskSource

CAMERAS = ["image_0", "image_1"]


def bridge_episodes(bridge_dir, count=2):
    source = open_dataset(str(bridge_dir))
    records = tf.data.TFRecordDataset(source.shards["train"][0].path).take(count).as_numpy_iterator()
    decoders = image_decoders(source.features)
    return [
        decode_episode(source.features, RawEpisode(f"train/{i:06d}", "train", i, data), decoders)
        for i, data in enumerate(records)
    ]


class BoxesSource(MaskSource):
    """A real (if simple) source: the robot is the top-left quarter, the object named by the
    instruction's last word the bottom-right quarter. It keeps the clips it was given."""

    name = "boxes_for_tests"

    def __init__(self):
        super().__init__()
        self.clips: list[CameraClip] = []

    def segment(self, model, clip):
        return self.segment_clip(model, clip).robot

    def segment_clip(self, model, clip):
        self.clips.append(clip)
        steps, height, width = clip.frames.shape[:3]
        robot = np.zeros((steps, height, width), np.uint8)
        robot[:, : height // 2, : width // 2] = 2
        objects = np.zeros((steps, height, width), np.uint8)
        objects[:, height // 2 :, width // 2 :] = 1
        return ClipMasks(robot, objects, (clip.instruction.split()[-1] if clip.instruction else "object 1",))


def handler_kwargs():
    return dict(cameras=CAMERAS, batch_size=2, large_model=False, model_copies=None, fail_fast=False)


def test_the_instruction_of_a_bridge_episode_is_its_first_steps_language_instruction(bridge_dir):
    episode = bridge_episodes(bridge_dir, 1)[0]
    text = episode_instruction(episode)
    assert isinstance(text, str) and text
    assert text == episode.steps[0]["language_instruction"].decode("utf-8")


def test_mask_handler_gives_clips_the_instruction_and_stores_object_masks(bridge_dir):
    source = BoxesSource()
    handler = MaskSourceHandler(source, **handler_kwargs())
    episodes = bridge_episodes(bridge_dir)
    results = list(handler.run_inference(episodes, handler.load_model()))
    assert len(source.clips) == len(episodes) * len(CAMERAS)
    assert {clip.instruction for clip in source.clips} == {episode_instruction(e) for e in episodes}
    for result in results:
        segmented = result.inference
        assert not isinstance(segmented, StageFailure), segmented
        assert set(segmented.masks) == set(segmented.objects) == set(CAMERAS)
        for camera in CAMERAS:
            height, width = segmented.frames(camera).shape[1:3]
            objects = np.asarray(segmented.objects[camera])
            assert objects.dtype == np.uint8
            assert objects[:, height // 2 :, width // 2 :].all()
            assert not objects[:, : height // 2].any()


def test_a_source_whose_object_masks_do_not_fit_fails_that_episode(bridge_dir):
    class Misfit(BoxesSource):
        def segment_clip(self, model, clip):
            found = super().segment_clip(model, clip)
            return ClipMasks(found.robot, found.objects[:, :-1], found.object_names)

    handler = MaskSourceHandler(Misfit(), **handler_kwargs())
    (result,) = handler.run_inference(bridge_episodes(bridge_dir, 1), handler.load_model())
    assert isinstance(result.inference, StageFailure)
    assert "image_0: object masks of shape" in result.inference.reason


class RecordingBackgrounds:
    """A loaded background source that keeps the requests it was asked for."""

    def __init__(self):
        self.requests = []

    def generate_batch(self, requests):
        self.requests += requests
        return [np.zeros(r.frames.shape[1:], np.uint8) for r in requests], []  # backgrounds, notes


def test_background_requests_follow_the_plans_the_compose_stage_reads(bridge_dir):
    mask_handler = MaskSourceHandler(BoxesSource(), **handler_kwargs())
    episodes = [r.inference for r in mask_handler.run_inference(bridge_episodes(bridge_dir), mask_handler.load_model())]
    settings = PlanSettings(seed=3, variants=2, targets=("gripper",), keep_objects=True, composite=CompositeSettings())
    handler = BackgroundSourceHandler(None, plan=settings, **handler_kwargs())
    model = RecordingBackgrounds()
    results = list(handler.run_inference(episodes, model))
    assert all(not isinstance(r.inference, StageFailure) for r in results)
    requests = iter(model.requests)
    for episode in episodes:
        for camera in CAMERAS:
            for plan in episode_plans(episode, settings, camera):  # what ComposeVariants reads
                request = next(requests)
                assert (request.episode_key, request.camera, request.variant) == (episode.key, camera, plan.variant)
                assert request.seed == plan.seed
                # The background must not show the robot (all of it) nor the kept object.
                robot, objects = np.asarray(episode.masks[camera]), np.asarray(episode.objects[camera])
                np.testing.assert_array_equal(request.foreground, (robot > 0) | (objects > 0))
                np.testing.assert_array_equal(request.replace, plan.replace)
                # Only the gripper target is composited back, with the object; the arm is not.
                assert not (plan.kept & (robot == 2)).any()
                assert plan.kept[objects > 0].all()
