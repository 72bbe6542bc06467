"""The release's video API on our model: its scripts' call sequences, its state, its prompts, and one engine with the source."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.labels import label_map_from_targets
from segmentation.robotseg import build_robotseg_video_predictor, save_checkpoint
from segmentation.robotseg.build import config_path
from segmentation.robotseg.source import RobotSegMaskSource, RobotSegOptions
from segmentation.robotseg.synthetic import render_synthetic_clip
from segmentation.sources import CameraClip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The release's inference_state keys (robotseg_video_predictor.py: init_state).
RELEASE_STATE_KEYS = [
    "images",
    "num_frames",
    "offload_video_to_cpu",
    "offload_state_to_cpu",
    "video_height",
    "video_width",
    "device",
    "storage_device",
    "robot_inputs_per_obj",
    "point_inputs_per_obj",
    "mask_inputs_per_obj",
    "cached_features",
    "constants",
    "obj_id_to_idx",
    "obj_idx_to_id",
    "obj_ids",
    "output_dict_per_obj",
    "temp_output_dict_per_obj",
    "frames_tracked_per_obj",
]


@pytest.fixture(scope="module")
def predictor():
    model = build_robotseg_video_predictor("tiny", device="cpu")
    with torch.no_grad():  # object always "present", so masks are not blanked to no-object
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    return model


@pytest.fixture(scope="module")
def clip():
    return render_synthetic_clip(5, (48, 64), seed=3)


@pytest.fixture
def jpeg_dir(clip, tmp_path):
    """The clip as the release's loader wants it: <int>.jpg files (written losslessly, PIL reads by content)."""
    folder = tmp_path / "demo_video"
    folder.mkdir()
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(folder / f"{i}.jpg", format="PNG")
    return folder


def test_the_release_demo_runs_unchanged(predictor, jpeg_dir, clip):
    # test/demo.py's calls, keyword for keyword (minus CUDA and its bf16 autocast).
    category = "robot"
    results = {}
    with torch.inference_mode():
        state = predictor.init_state(
            video_path=str(jpeg_dir), async_loading_frames=False, offload_video_to_cpu=False, offload_state_to_cpu=False
        )
        predictor.add_new_robot(inference_state=state, frame_idx=0, obj_id=0, robot=category)
        for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagate_in_video(inference_state=state, robot=category):
            results[out_frame_idx] = {
                out_obj_id: (out_mask_logits[i] > 0.0).detach().cpu().numpy() for i, out_obj_id in enumerate(out_obj_ids)
            }
    assert list(state) == RELEASE_STATE_KEYS
    assert sorted(results) == list(range(len(clip.frames)))
    assert all(r[0].shape == (1, 48, 64) and r[0].dtype == bool for r in results.values())
    assert any(r[0].any() for r in results.values())


def test_the_release_vrs_script_sequence_from_a_later_frame(predictor, jpeg_dir):
    # test/inference_auto_semi_vrs.py, auto mode: prompt the first frame with ground truth, propagate forward only.
    with torch.inference_mode():
        state = predictor.init_state(video_path=str(jpeg_dir))
        predictor.add_new_robot(inference_state=state, frame_idx=2, obj_id=2, robot="arm")
        frames = [f for f, ids, _ in predictor.propagate_in_video(inference_state=state, robot="arm")]
    assert frames == [2, 3, 4]
    assert state["obj_ids"] == [2] and set(state["frames_tracked_per_obj"][0]) == {2, 3, 4}


def test_in_memory_frames_give_what_the_jpeg_folder_gives(predictor, jpeg_dir, clip):
    runs = []
    for video in (str(jpeg_dir), clip.frames):
        with torch.inference_mode():
            state = predictor.init_state(video_path=video)
            torch.manual_seed(0)
            predictor.add_new_robot(state, 0, 0, "robot")
            runs.append(torch.stack([logits for _, _, logits in predictor.propagate_in_video(state, "robot")]))
    assert torch.equal(runs[0], runs[1])


def test_points_box_mask_and_the_state_operations(predictor, clip):
    with torch.inference_mode():
        state = predictor.init_state(clip.frames)
        _, ids, logits = predictor.add_new_points_or_box(
            state, 1, obj_id=5, robots="gripper", points=[[30, 20]], labels=[1], box=[10, 5, 50, 40]
        )
        assert ids == [5] and logits.shape == (1, 1, 48, 64)
        points = state["point_inputs_per_obj"][0][1]
        assert points["point_labels"].tolist() == [[2, 3, 1]]  # the box first, as two corner points
        assert torch.allclose(points["point_coords"][0, 0], torch.tensor([10 / 64 * 128, 5 / 48 * 128]))
        mask = np.zeros((48, 64), bool)
        mask[10:30, 20:40] = True
        _, ids, given = predictor.add_new_mask(state, 3, obj_id=7, mask=mask)
        assert ids == [5, 7] and given.shape == (2, 1, 48, 64)
        given = given[1, 0] > 0
        assert (given & torch.from_numpy(mask)).sum() / (given | torch.from_numpy(mask)).sum() > 0.9
        out = {f: m for f, _, m in predictor.propagate_in_video(state, "gripper")}
        assert sorted(out) == [1, 2, 3, 4]
        # The mask object's prompted frame comes back as given (it is "frozen" in propagation).
        assert torch.equal(out[3][1, 0] > 0, given)
        back = [f for f, _, _ in predictor.propagate_in_video(state, "gripper", start_frame_idx=3, reverse=True)]
        assert back == [3, 2, 1, 0]
        _, ids, _ = predictor.clear_all_prompts_in_frame(state, 1, 5)
        assert 1 not in state["point_inputs_per_obj"][0]
        remaining, _ = predictor.remove_object(state, 5)
        assert remaining == [7] and state["obj_id_to_idx"] == {7: 0} and list(state["robot_inputs_per_obj"]) == [0]
        predictor.reset_state(state)
        assert state["obj_ids"] == [] and state["robot_inputs_per_obj"] == {}


def test_argument_errors_are_the_releases(predictor, clip):
    with torch.inference_mode():
        state = predictor.init_state(clip.frames)
        with pytest.raises(ValueError, match="points and labels must be provided together"):
            predictor.add_new_points_or_box(state, 0, 0, robots="robot", points=[[1, 2]])
        with pytest.raises(ValueError, match="not in"):
            predictor.add_new_robot(state, 0, 0, robot="wheel")
        with pytest.raises(RuntimeError, match="No input points or masks"):
            next(predictor.propagate_in_video(build_state := predictor.init_state(clip.frames), "robot"))
        del build_state
    with pytest.raises(ValueError, match="uint8"):
        predictor.init_state(clip.frames.astype(np.float32))


def test_release_config_paths_resolve_to_the_shipped_configs():
    assert config_path("../robotseg/configs/robotseg-infer").name == "robotseg-infer.yaml"
    assert config_path("configs/robotseg-infer.yaml").name == "robotseg-infer.yaml"
    with pytest.raises(ValueError, match="unknown RobotSeg config"):
        config_path("my_own.yaml")


def test_the_beam_source_runs_the_same_predictor(predictor, clip, tmp_path):
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(predictor, checkpoint)
    source = RobotSegMaskSource(RobotSegOptions(config="tiny", checkpoint=str(checkpoint), device="cpu", model_targets=["robot"]))
    labels = source.segment(source.load_model(), CameraClip("ep0", "image_0", clip.frames))
    with torch.inference_mode():
        state = predictor.init_state(clip.frames)
        torch.manual_seed(0)
        predictor.add_new_robot(state, 0, 0, "robot")
        robot = np.stack([(logits[0, 0] > 0).numpy() for _, _, logits in predictor.propagate_in_video(state, "robot")])
    empty = np.zeros_like(robot)
    assert np.array_equal(labels, label_map_from_targets(robot, empty, empty))
