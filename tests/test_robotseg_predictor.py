"""The release's video API (build_robotseg_video_predictor) on our model: conventions, inputs, and one engine with the Beam source."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from segmentation.labels import label_map_from_targets
from segmentation.robotseg import build_robotseg, build_robotseg_video_predictor, save_checkpoint, segment_video
from segmentation.robotseg.predictor import RobotSegVideoPredictor, load_video_frames
from segmentation.robotseg.prompts import FramePrompt
from segmentation.robotseg.source import RobotSegMaskSource, RobotSegOptions
from segmentation.robotseg.synthetic import render_synthetic_clip
from segmentation.robotseg.video import InferenceOptions
from segmentation.sources import CameraClip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OBJ = {"arm": 0, "gripper": 1, "robot": 2}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = build_robotseg("tiny")
    with torch.no_grad():  # object always "present", so masks are not blanked to no-object
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    return model


@pytest.fixture(scope="module")
def clip():
    return render_synthetic_clip(6, (48, 64), seed=3)


def propagate_masks(predictor, state, **kwargs) -> dict[int, np.ndarray]:
    """frame -> (num_objects, H, W) bool, checking SAM 2's output shapes on the way."""
    out = {}
    for frame, obj_ids, logits in predictor.propagate_in_video(state, **kwargs):
        assert obj_ids == state.obj_ids
        assert logits.shape == (len(obj_ids), 1, state.video_height, state.video_width) and logits.dtype == torch.float32
        out[frame] = (logits[:, 0] > 0).numpy()
    return out


def test_automatic_masks_equal_the_beam_mask_source(model, clip, tmp_path):
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(model, checkpoint)
    source = RobotSegMaskSource(RobotSegOptions(config="tiny", checkpoint=str(checkpoint), device="cpu", chunk_size=4))
    beam_labels = source.segment(source.load_model(), CameraClip("train/000000", "image_0", clip.frames))

    predictor = build_robotseg_video_predictor("tiny", str(checkpoint), device="cpu", options=InferenceOptions(chunk_size=4))
    state = predictor.init_state(clip.frames)
    for target in ("arm", "gripper", "robot"):
        frame, obj_ids, logits = predictor.add_new_robot(state, frame_idx=0, obj_id=OBJ[target], robot=target)
        assert frame == 0 and obj_ids[-1] == OBJ[target] and logits.shape[:2] == (len(obj_ids), 1)
    masks = propagate_masks(predictor, state)
    assert sorted(masks) == list(range(6))
    stacked = np.stack([masks[f] for f in range(6)])  # (T, objects, H, W), objects in the order added
    labels = label_map_from_targets(robot=stacked[:, 2], arm=stacked[:, 0], gripper=stacked[:, 1])
    assert labels.any()
    np.testing.assert_array_equal(labels, beam_labels)


def test_prompted_masks_equal_the_beam_mask_source(model, clip, tmp_path):
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(model, checkpoint)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps({"train/000000": {"image_0": {"0": {"box": [10, 5, 50, 40], "points": [[30, 20]], "target": "robot"}}}})
    )
    source = RobotSegMaskSource(
        RobotSegOptions(
            config="tiny",
            checkpoint=str(checkpoint),
            device="cpu",
            mode="prompted",
            prompts=str(prompts),
            model_targets=["robot"],
        )
    )
    beam_labels = source.segment(source.load_model(), CameraClip("train/000000", "image_0", clip.frames))

    predictor = build_robotseg_video_predictor("tiny", str(checkpoint), device="cpu")
    state = predictor.init_state(clip.frames)
    predictor.add_new_points_or_box(state, 0, obj_id=7, points=[[30, 20]], labels=[1], box=[10, 5, 50, 40], robots="robot")
    masks = propagate_masks(predictor, state)
    np.testing.assert_array_equal(np.stack([masks[f][0] for f in range(6)]), beam_labels >= 1)


def test_forward_then_backward_calls_match_one_engine_pass(model, clip):
    # Prompt on frame 2: SAM 2 scripts call propagate forward, then reverse=True. With one
    # frame per encoder batch both paths run the same computations frame by frame.
    options = InferenceOptions(chunk_size=1)
    prompt = FramePrompt(2, "arm", ((32.0, 20.0),), (1,))
    engine = segment_video(model, clip.frames, targets=(), prompts=[prompt], options=options) == 2

    predictor = RobotSegVideoPredictor(model, options)
    state = predictor.init_state(clip.frames)
    frame, _, first = predictor.add_new_points_or_box(state, 2, obj_id=5, points=[[32, 20]], labels=[1], robots="arm")
    forward = propagate_masks(predictor, state)
    backward = propagate_masks(predictor, state, reverse=True)
    assert list(forward) == [2, 3, 4, 5] and list(backward) == [2, 1, 0]
    np.testing.assert_array_equal(forward[2], backward[2])
    ours = np.stack([(forward | backward)[f][0] for f in range(6)])
    np.testing.assert_array_equal(ours, engine)
    # The prompt frame's mask came back at once, as SAM 2's add_new_points_or_box does.
    assert ((first[0, 0] > 0).numpy() == forward[2][0]).mean() > 0.99


def test_objects_prompted_on_different_frames(model, clip):
    predictor = RobotSegVideoPredictor(model)
    state = predictor.init_state(clip.frames)
    predictor.add_new_robot(state, 3, obj_id="late", robot="gripper")
    _, obj_ids, logits = predictor.add_new_robot(state, 1, obj_id="early", robot="robot")
    assert obj_ids == ["late", "early"]
    assert (logits[0] == -1024.0).all()  # "late" has no prompt on frame 1: SAM 2's no-object score
    masks = propagate_masks(predictor, state)
    assert list(masks) == [1, 2, 3, 4, 5]
    assert not masks[1][0].any() and not masks[2][0].any()  # "late" is tracked from frame 3 on
    assert masks[3][0].any()


def test_inputs_folder_video_file_and_memory(model, clip, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip.frames):  # PNG: lossless, so the same pixels as in memory
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(load_video_frames(folder), clip.frames)
    predictor = RobotSegVideoPredictor(model)
    a, b = predictor.init_state(folder), predictor.init_state(clip.frames)
    assert (a["num_frames"], a["video_height"], a["video_width"]) == (6, 48, 64)
    for state in (a, b):
        predictor.add_new_robot(state, 0, 1, robot="robot")
    np.testing.assert_array_equal(
        np.stack(list(propagate_masks(predictor, a).values())), np.stack(list(propagate_masks(predictor, b).values()))
    )

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for frame in clip.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    decoded = load_video_frames(video)
    assert decoded.shape == clip.frames.shape
    # MJPEG is lossy (and these frames are noisy), but the pixels are these frames', in RGB order.
    error = np.abs(decoded.astype(int) - clip.frames).mean()
    assert error < 20 and error < np.abs(decoded[..., ::-1].astype(int) - clip.frames).mean() / 2


def test_errors_name_the_problem(model, clip, tmp_path):
    predictor = RobotSegVideoPredictor(model)
    state = predictor.init_state(clip.frames)
    with pytest.raises(RuntimeError, match="add_new_robot"):
        next(predictor.propagate_in_video(state))
    with pytest.raises(ValueError, match="unknown robot target 'hand'"):
        predictor.add_new_robot(state, 0, 1, robot="hand")
    with pytest.raises(ValueError, match="frame_idx 9"):
        predictor.add_new_robot(state, 9, 1)
    predictor.add_new_robot(state, 0, 1, robot="arm")
    with pytest.raises(ValueError, match="object 1 tracks 'arm'"):
        next(predictor.propagate_in_video(state, robot="gripper"))
    with pytest.raises(ValueError, match="no such video"):
        predictor.init_state(tmp_path / "missing.mp4")


def test_release_config_name_maps_to_the_published_architecture():
    from segmentation.robotseg.predictor import RELEASE_CONFIGS

    assert RELEASE_CONFIGS["robotseg-infer"] == "robotseg_hiera_t"
