"""The plan of one (episode, camera, variant): one function decides seeds, kept pixels and regions."""

import numpy as np
import pytest

from augment.plan import PlanSettings, plan_variants
from augment.settings import CompositeSettings
from augment.variants import plan_camera, variant_seed
from segmentation.labels import ARM, BODY, GRIPPER

T, H, W = 3, 16, 20


def masks():
    robot = np.zeros((T, H, W), np.uint8)
    robot[:, 0:4, :] = BODY
    robot[:, 4:8, 0:10] = ARM
    robot[:, 8:10, 0:5] = GRIPPER
    objects = np.zeros((T, H, W), np.uint8)
    objects[:, 12:15, 2:6] = 1
    objects[:, 12:15, 10:14] = 2
    return robot, objects


def settings(**changes):
    values = dict(
        seed=5,
        variants=3,
        targets=("arm", "gripper"),
        keep_objects=True,
        composite=CompositeSettings(
            protect={"*": [{"box": [0.0, 0.9, 1.0, 1.0]}]},
            background_transforms=[{"RandomBrightnessContrast": {"p": 1.0}}],
            jitter_px=2,
        ),
    )
    values.update(changes)
    return PlanSettings(**values)


def test_each_variant_has_its_seed_and_the_parameters_drawn_from_it():
    robot, objects = masks()
    plans = plan_variants(settings(), "train/000003", "image_1", (T, H, W), robot, objects)
    assert [p.variant for p in plans] == [0, 1, 2]
    for plan in plans:
        assert plan.seed == variant_seed(5, "train/000003", plan.variant, "image_1")
        drawn = plan_camera(settings().composite, plan.seed, (H, W))
        assert plan.camera_plan.jitter_offset == drawn.jitter_offset
        assert plan.camera_plan.background_replay == drawn.background_replay
    assert len({p.seed for p in plans}) == 3


def test_kept_is_the_robot_targets_and_the_objects_foreground_the_whole_robot_and_the_objects():
    robot, objects = masks()
    (plan,) = plan_variants(settings(variants=1), "e", "c", (T, H, W), robot, objects)
    np.testing.assert_array_equal(plan.kept, ((robot == ARM) | (robot == GRIPPER)) | (objects > 0))
    # The body is not kept (targets arm, gripper) but still must not show in the background.
    np.testing.assert_array_equal(plan.foreground, (robot > 0) | (objects > 0))
    assert plan.protected[-1].all() and not plan.protected[:-2].any()
    np.testing.assert_array_equal(plan.replace, ~plan.protected)


def test_objects_not_kept_are_background():
    robot, objects = masks()
    (plan,) = plan_variants(settings(variants=1, keep_objects=False), "e", "c", (T, H, W), robot, objects)
    assert not (plan.kept & (objects > 0)).any()
    np.testing.assert_array_equal(plan.foreground, robot > 0)


def test_no_masks_keeps_nothing_and_variants_share_read_only_masks():
    plans = plan_variants(settings(), "e", "c", (T, H, W), None)
    assert not plans[0].kept.any() and not plans[0].foreground.any()
    assert all(p.masks is plans[0].masks and p.protected is plans[0].protected for p in plans)
    with pytest.raises(ValueError):
        plans[0].protected[0, 0] = True


def test_masks_of_the_wrong_shape_name_the_episode_and_camera():
    robot, objects = masks()
    with pytest.raises(ValueError, match="episode train/000001, camera image_0: object label maps"):
        plan_variants(settings(), "train/000001", "image_0", (T, H, W), robot, objects[:, :-1])


def test_a_plan_without_masks_has_empty_masks_of_the_clips_length():
    (plan,) = plan_variants(settings(variants=1), "e", "c", (T, H, W), None)
    kept, foreground = plan.masks.window(1, 3)
    assert kept.shape == foreground.shape == (2, H, W) and not kept.any() and not foreground.any()
    assert plan.kept.shape == (T, H, W)
