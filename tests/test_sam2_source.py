"""The ``sam2`` mask source on a small randomly initialised SAM 2.1, checked against SAM 2's own video predictor."""

from __future__ import annotations

import json
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.labels import ARM, BACKGROUND, BODY
from segmentation.robotseg.prompts import FramePrompt
from segmentation.robotseg.synthetic import render_synthetic_clip
from segmentation.robotseg.video import InferenceOptions, point_prompt, preprocess
from segmentation.sam2_source import Sam2MaskSource, Sam2Options, Sam2Tracker
from segmentation.sources import CameraClip, SourceConfigError, mask_source_class

#: SAM 2.1 Hiera-T's config shrunk to a 4-block trunk, 128 px input and one memory layer.
SMALL_SAM2 = [
    "++model.image_size=128",
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_spec=[8,4,4,2]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=256",
    "++model.memory_attention.layer.self_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.json"
    prompts = {"ep0": {"cam": {"2": {"points": [[60, 50]], "labels": [1]}, "4": [{"box": [10, 20, 70, 80], "target": "arm"}]}}}
    path.write_text(json.dumps(prompts))
    return path


def small_source(prompt_file, **options) -> Sam2MaskSource:
    return Sam2MaskSource(
        Sam2Options(prompts=str(prompt_file), allow_random_init=True, sam2_overrides=SMALL_SAM2, device="cpu", **options)
    )


@pytest.fixture(scope="module")
def model(prompt_file):
    torch.manual_seed(0)
    loaded = small_source(prompt_file).load_model()
    with torch.no_grad():  # object always "present", so random masks are not blanked
        loaded.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    return loaded


@pytest.fixture(scope="module")
def clip():
    return render_synthetic_clip(7, (96, 120), seed=1)


def test_registry_and_checks(prompt_file, tmp_path):
    assert mask_source_class("sam2") is Sam2MaskSource
    small_source(prompt_file).check({}, ["cam"])
    with pytest.raises(SourceConfigError, match="segmentation.prompts"):
        Sam2MaskSource(Sam2Options(allow_random_init=True)).check({}, ["cam"])
    with pytest.raises(SourceConfigError, match="segmentation.sam2_config"):
        small_source(prompt_file, sam2_config="configs/sam2.1/absent.yaml").check({}, ["cam"])
    with pytest.raises(SourceConfigError, match="segmentation.checkpoint: required"):
        Sam2MaskSource(Sam2Options(prompts=str(prompt_file))).check({}, ["cam"])
    with pytest.raises(SourceConfigError, match="missing.pt"):
        Sam2MaskSource(Sam2Options(prompts=str(prompt_file), checkpoint=str(tmp_path / "missing.pt"))).check({}, ["cam"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ep0": {"cam": {"x": {"points": [[1, 2]]}}}}))
    with pytest.raises(SourceConfigError, match="camera cam, frame x"):
        small_source(bad).check({}, ["cam"])


def test_segment_gives_each_prompted_target_its_label(prompt_file, model, clip):
    assert weakref.ref(model)() is model
    labels = small_source(prompt_file, chunk_size=3).segment(model, CameraClip("ep0", "cam", clip.frames))
    assert labels.shape == clip.frames.shape[:3] and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {BACKGROUND, BODY, ARM}
    assert {BODY, ARM} <= set(np.unique(labels))
    # The arm is prompted on frame 4 only, yet tracked backwards to frame 0.
    assert (labels[0] == ARM).any()


def test_clips_without_prompts(prompt_file, model, clip):
    other = CameraClip("ep9", "cam", clip.frames)
    with pytest.raises(ValueError, match="episode ep9, camera cam: no prompts"):
        small_source(prompt_file).segment(model, other)
    empty = small_source(prompt_file, missing_prompts="empty").segment(model, other)
    assert empty.shape == clip.frames.shape[:3] and not empty.any()


@pytest.mark.filterwarnings("ignore:cannot import name '_C'")  # SAM 2's optional CUDA hole filling
def test_matches_sam2s_video_predictor(model, clip, tmp_path):
    """Same model, same frames: our in-memory engine and SAM2VideoPredictor give the same masks."""
    ours = model.segment_video(
        clip.frames, [FramePrompt(2, "robot", points=((60.0, 50.0),), labels=(1,))], InferenceOptions(chunk_size=3)
    )

    sam = model.sam
    for i, frame in enumerate(clip.frames):  # the predictor only reads JPEG folders...
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.jpg")
    state = sam.init_state(str(tmp_path))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    state["images"] = (
        preprocess(clip.frames, sam.image_size, torch.device("cpu")) - mean
    ) / std  # ...so give it the exact pixels
    state["cached_features"] = {}
    sam.add_new_points_or_box(
        state, frame_idx=2, obj_id=1, points=np.array([[60.0, 50.0]], np.float32), labels=np.array([1], np.int32)
    )
    reference = np.zeros(clip.frames.shape[:3], dtype=bool)
    for reverse in (False, True):
        for frame, _, masks in sam.propagate_in_video(state, reverse=reverse):
            reference[frame] = masks[0, 0].numpy() > 0
    assert reference.any() and (~reference).any()
    assert ((ours == BODY) == reference).mean() > 0.999


def test_tracker_state_stays_bounded(model):
    frames = render_synthetic_clip(40, 64, seed=0).frames
    tracker = Sam2Tracker(model.sam)
    state = tracker.start("robot", len(frames), first_cond_frame=0)
    prompt = FramePrompt(0, "robot", box=(5.0, 5.0, 40.0, 40.0))
    with torch.inference_mode():
        features = tracker.encode(preprocess(frames, model.sam.image_size, torch.device("cpu")))
        for t in range(len(frames)):
            kind = "cond" if t == 0 else "forward"
            points = point_prompt(prompt, frames.shape[1:3], model.sam.image_size, torch.device("cpu")) if t == 0 else None
            tracker.step(state, t, features[t], points, kind)
            recent = state.output_dict["non_cond_frame_outputs"]
            assert len(recent) <= 15
            assert sum("maskmem_features" in out for out in recent.values()) <= 6
