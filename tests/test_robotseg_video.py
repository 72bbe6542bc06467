"""RobotSeg on in-memory clips (``segment_video``): label maps, targets, prompts, bounded memory, refinement."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from segmentation.labels import ARM, BACKGROUND, BODY, GRIPPER
from segmentation.robotseg import build_robotseg_video_predictor
from segmentation.robotseg.postprocess import fill_holes_in_mask_scores, guided_refine_mask, refine_mask
from segmentation.robotseg.prompts import FramePrompt
from segmentation.robotseg.synthetic import render_synthetic_clip
from segmentation.robotseg.video import InferenceOptions, schedule, segment_video, tracks_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return build_robotseg_video_predictor("tiny", device="cpu")


@pytest.fixture(scope="module")
def present_model():
    """Tiny RobotSeg whose object-score head always says "present", so masks are never blanked."""
    m = build_robotseg_video_predictor("tiny", device="cpu")
    with torch.no_grad():
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    return m


@pytest.fixture(scope="module")
def clip():
    return render_synthetic_clip(6, (96, 120), seed=3)


def test_schedule_is_sam2s_order():
    assert [(v.frame, v.kind) for v in schedule([2], 5)] == [
        (2, "cond"),
        (3, "forward"),
        (4, "forward"),
        (1, "reverse"),
        (0, "reverse"),
    ]


def test_automatic_mode_label_maps_have_the_frames_size_and_convention(model, clip):
    torch.manual_seed(0)
    labels = segment_video(model, clip.frames, targets=("robot", "arm", "gripper"))
    assert labels.shape == clip.frames.shape[:3] and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {BACKGROUND, BODY, ARM, GRIPPER}
    torch.manual_seed(0)
    assert np.array_equal(labels, segment_video(model, clip.frames, targets=("robot", "arm", "gripper")))


def test_each_target_gets_its_label(present_model, clip):
    for target, label in (("robot", BODY), ("arm", ARM), ("gripper", GRIPPER)):
        labels = segment_video(present_model, clip.frames, targets=(target,))
        values = set(np.unique(labels))
        assert label in values and values <= {BACKGROUND, label}, (target, values)


def test_prompted_mode_points_and_box_on_later_frames(present_model, clip):
    prompts = [
        FramePrompt(2, "robot", points=((60.0, 50.0), (10.0, 10.0)), labels=(1, 0)),
        FramePrompt(4, "robot", points=((70.0, 40.0),), labels=(1,)),
        FramePrompt(3, "gripper", box=(20.0, 10.0, 80.0, 60.0)),
    ]
    labels = segment_video(present_model, clip.frames, targets=("robot",), prompts=prompts)
    assert labels.shape == clip.frames.shape[:3] and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {BACKGROUND, BODY, GRIPPER}
    assert GRIPPER in np.unique(labels)


def test_prompts_move_the_mask(present_model, clip):
    automatic = segment_video(present_model, clip.frames, targets=("robot",))
    prompted = segment_video(present_model, clip.frames, prompts=[FramePrompt(0, "robot", box=(5.0, 5.0, 40.0, 40.0))])
    assert not np.array_equal(automatic, prompted)


def _live_tensor_bytes(exclude: set[int]) -> int:
    seen, total = set(), 0
    for obj in gc.get_objects():
        if type(obj) is torch.Tensor:
            storage = obj.untyped_storage()
            if storage.data_ptr() in seen or storage.data_ptr() in exclude:
                continue
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _peak_bytes_while_tracking(model, num_frames: int) -> int:
    from segmentation.robotseg import video

    frames = render_synthetic_clip(num_frames, 128, seed=0).frames
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    peak = 0
    with torch.inference_mode():
        state = model.init_state(frames)
        for i, _ in enumerate(video._robotseg_passes(model, state, tracks_for(["robot"])[0])):
            if i % 4 == 3:
                peak = max(peak, _live_tensor_bytes(weights))
    return peak


def test_memory_does_not_grow_with_clip_length(model):
    short = _peak_bytes_while_tracking(model, 24)
    long = _peak_bytes_while_tracking(model, 64)
    # Keeping every tracked frame's memory would grow by ~40 x 4 kB of memory features and pointers.
    assert short > 0
    assert long < 1.1 * short, (short, long)


def test_guided_filter_snaps_a_blurred_mask_to_the_image_edge():
    frame = np.zeros((40, 40, 3), np.uint8)
    frame[:, 20:] = 255  # true edge between columns 19 and 20
    columns = np.arange(40, dtype=np.float32)
    probability = np.tile(1 / (1 + np.exp(-(columns - 21) / 2)), (40, 1))  # blurred and off by a pixel
    assert not (probability[:, 20:22] > 0.5).any()  # thresholding alone misses columns 20 and 21
    refined = refine_mask(frame, probability, radius=4, eps=1e-3)
    assert refined[:, 20:].all() and not refined[:, :20].any()


def test_release_refinement_moves_only_the_boundary_band_and_falls_back_on_big_changes():
    image = np.zeros((64, 100, 3), np.uint8)
    image[:, 30:] = 255  # the object starts at column 30
    mask = np.zeros((64, 100), np.uint8)
    mask[:, 31:] = 255  # one column short: +1.4 % of the area once corrected
    refined = guided_refine_mask(mask, image)
    assert refined.dtype == np.uint8 and set(np.unique(refined)) <= {0, 255}
    assert (refined[:, 30:] == 255).all() and (refined[:, :30] == 0).all()
    narrow = np.zeros((64, 100), np.uint8)
    narrow[:, 31:40] = 1  # the same correction is +11 % of this mask: the release keeps the input
    assert np.array_equal(guided_refine_mask(narrow, image), narrow * 255)


def test_hole_filling_fills_background_components_up_to_the_area_only():
    logits = torch.ones(1, 1, 32, 32)
    logits[0, 0, 4:6, 4:8] = -1.0  # a hole of 8 pixels
    logits[0, 0, 20:23, 20:23] = -1.0  # a hole of 9 pixels
    filled = fill_holes_in_mask_scores(logits, 8)
    assert (filled[0, 0, 4:6, 4:8] == 0.1).all()
    assert (filled[0, 0, 20:23, 20:23] == -1.0).all()
    assert torch.equal(fill_holes_in_mask_scores(logits, 0), logits)


def test_refine_option_keeps_shapes(model, clip):
    labels = segment_video(model, clip.frames, options=InferenceOptions(refine=True))
    assert labels.shape == clip.frames.shape[:3] and labels.dtype == np.uint8


def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match="unknown target"):
        tracks_for(["wheel"])
    with pytest.raises(ValueError, match="needs points or a box"):
        FramePrompt(0, "robot")
    with pytest.raises(ValueError, match="outside a clip"):
        schedule([5], 3)
    with pytest.raises(ValueError, match="uint8"):
        segment_video(model, np.zeros((2, 8, 8, 3), np.float32))
