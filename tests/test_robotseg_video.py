"""Video inference: automatic and prompted modes, shared encoding, bounded memory, refinement."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from segmentation.labels import ARM, BACKGROUND, BODY, GRIPPER
from segmentation.robotseg import FramePrompt, InferenceOptions, build_robotseg, segment_video
from segmentation.robotseg.refine import refine_mask
from segmentation.robotseg.synthetic import render_synthetic_clip
from segmentation.robotseg.video import RobotSegTracker, iter_masks, schedule, tracks_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_robotseg("tiny")


@pytest.fixture(scope="module")
def present_model():
    """Tiny RobotSeg whose object-score head always says "present", so masks are never blanked."""
    torch.manual_seed(0)
    m = build_robotseg("tiny")
    with torch.no_grad():
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    return m


@pytest.fixture(scope="module")
def clip():
    return render_synthetic_clip(6, (96, 120), seed=3)


def count_encoded_frames(model):
    """Forward hook on the image encoder: records each batch size."""
    batches = []
    handle = model.image_encoder.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    return batches, handle


def test_schedule_is_sam2s_order():
    visits = schedule([4, 2], 7)
    assert [(v.frame, v.kind) for v in visits] == [
        (2, "cond"),
        (4, "cond"),
        (3, "forward"),
        (5, "forward"),
        (6, "forward"),
        (1, "reverse"),
        (0, "reverse"),
    ]
    assert [v.frame for v in schedule([0], 3)] == [0, 1, 2]


def test_automatic_mode_label_maps_have_the_frames_size_and_convention(model, clip):
    labels = segment_video(model, clip.frames, targets=("robot", "arm", "gripper"))
    assert labels.shape == clip.frames.shape[:3] and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {BACKGROUND, BODY, ARM, GRIPPER}
    again = segment_video(model, clip.frames, targets=("robot", "arm", "gripper"))
    assert np.array_equal(labels, again)


def test_each_target_gets_its_label(present_model, clip):
    for target, label in (("robot", BODY), ("arm", ARM), ("gripper", GRIPPER)):
        labels = segment_video(present_model, clip.frames, targets=(target,))
        values = set(np.unique(labels))
        assert label in values and values <= {BACKGROUND, label}, (target, values)


def test_three_targets_share_one_encoder_pass_in_chunks(model):
    frames = render_synthetic_clip(10, 64, seed=1).frames
    batches, handle = count_encoded_frames(model)
    try:
        segment_video(model, frames, targets=("robot", "arm", "gripper"), options=InferenceOptions(chunk_size=4))
    finally:
        handle.remove()
    assert batches == [4, 4, 2]


def test_prompted_mode_points_and_box_on_later_frames(present_model, clip):
    prompts = [
        FramePrompt(2, "robot", points=((60.0, 50.0), (10.0, 10.0)), labels=(1, 0)),
        FramePrompt(4, "robot", points=((70.0, 40.0),), labels=(1,)),
        FramePrompt(3, "gripper", box=(20.0, 10.0, 80.0, 60.0)),
    ]
    batches, handle = count_encoded_frames(present_model)
    try:
        labels = segment_video(
            present_model, clip.frames, targets=("robot",), prompts=prompts, options=InferenceOptions(chunk_size=8)
        )
    finally:
        handle.remove()
    assert labels.shape == clip.frames.shape[:3] and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {BACKGROUND, BODY, GRIPPER}
    assert GRIPPER in np.unique(labels)
    # Two targets with different first prompted frames: one full pass each.
    assert sum(batches) == 2 * len(clip.frames)


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
    frames = render_synthetic_clip(num_frames, 128, seed=0).frames
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    peak = 0
    masks = iter_masks(RobotSegTracker(model), frames, tracks_for(["robot"]), InferenceOptions(chunk_size=4), torch.device("cpu"))
    for i, _ in enumerate(masks):
        if i % 4 == 3:  # once per chunk, while its features are alive
            peak = max(peak, _live_tensor_bytes(weights))
    return peak


def test_memory_does_not_grow_with_clip_length(model):
    short = _peak_bytes_while_tracking(model, 8)
    long = _peak_bytes_while_tracking(model, 32)
    # Keeping every frame's features would add ~80 kB per frame (~2 MB here).
    assert short > 0
    assert long < 1.2 * short, (short, long)


def test_guided_filter_snaps_a_blurred_mask_to_the_image_edge():
    frame = np.zeros((40, 40, 3), np.uint8)
    frame[:, 20:] = 255  # true edge between columns 19 and 20
    columns = np.arange(40, dtype=np.float32)
    probability = np.tile(1 / (1 + np.exp(-(columns - 21) / 2)), (40, 1))  # blurred and off by a pixel
    assert not (probability[:, 20:22] > 0.5).any()  # thresholding alone misses columns 20 and 21
    refined = refine_mask(frame, probability, radius=4, eps=1e-3)
    assert refined[:, 20:].all() and not refined[:, :20].any()


def test_refine_option_keeps_shapes(model, clip):
    labels = segment_video(model, clip.frames, options=InferenceOptions(refine=True))
    assert labels.shape == clip.frames.shape[:3] and labels.dtype == np.uint8


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown target"):
        tracks_for(["wheel"])
    with pytest.raises(ValueError, match="needs points or a box"):
        FramePrompt(0, "robot")
    with pytest.raises(ValueError, match="outside a clip"):
        schedule([5], 3)
