"""The ``sam3`` mask source on a tiny randomly initialised SAM 3 saved with ``save_pretrained``."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from segmentation.labels import ARM, BODY, GRIPPER
from segmentation.sam3_source import Sam3MaskSource, Sam3Options, object_label_map, robot_label_map
from segmentation.sources import CameraClip, ClipMasks, SourceConfigError, mask_source_class
from tests.conftest import IN_PROCESS, REPO, read_report, run_cli

RECIPE = REPO / "configs" / "sam3_scene.yaml"


def save_tiny_sam3(
    folder: str | os.PathLike,
    image_size: int = 64,
    patch_size: int = 16,
    hidden: int = 128,
    num_queries: int = 1,
    max_objects: int = 6,
) -> pathlib.Path:
    """Write a tiny random SAM 3 (model, processor, tokenizer) to ``folder``; nothing is downloaded.

    The tracker's memory attention reads 64-channel memories (fixed in transformers) and
    splits object pointers by ``hidden // 64``, so ``hidden`` must be a multiple of 64 above it.
    """
    import torch
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    grid = image_size // patch_size
    backbone = dict(
        model_type="sam3_vit_model",
        hidden_size=hidden,
        intermediate_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        window_size=2,
        global_attn_indexes=[1],
        pretrain_image_size=image_size,
    )
    small = dict(hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=hidden)
    detector = dict(
        vision_config=dict(
            backbone_config=backbone, fpn_hidden_size=hidden, backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2]
        ),
        text_config=dict(
            model_type="clip_text_model",
            vocab_size=516,
            hidden_size=hidden,
            intermediate_size=hidden,
            projection_dim=hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        geometry_encoder_config=small,
        detr_encoder_config=small,
        detr_decoder_config=dict(small, num_queries=num_queries),
        mask_decoder_config=dict(hidden_size=hidden, num_attention_heads=2),
    )
    tracker = dict(
        vision_config=dict(backbone_config=backbone, fpn_hidden_size=hidden),
        prompt_encoder_config=dict(hidden_size=hidden, patch_size=patch_size),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=hidden, num_attention_heads=2, iou_head_hidden_dim=hidden),
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=hidden,
        memory_encoder_hidden_size=hidden,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=hidden,
        image_size=image_size,
    )
    # A few tracks at most: random weights never re-find a track, so each frame would add new ones.
    config = Sam3VideoConfig(
        detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * grid, max_num_objects=max_objects
    )
    torch.manual_seed(0)
    model = Sam3VideoModel(config).eval()

    # CLIP's byte-level BPE with no merges: one token per byte, enough to tell prompts apart.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in bytes_to_unicode().values():
            vocab[char + suffix] = len(vocab)
    size = {"height": image_size, "width": image_size}
    processor = Sam3VideoProcessor(
        Sam3ImageProcessor(size=size, mask_size={"height": 4 * grid, "width": 4 * grid}),
        Sam2VideoVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        CLIPTokenizer(vocab=vocab, merges=[]),
    )
    folder = pathlib.Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def tiny_sam3(tmp_path_factory) -> pathlib.Path:
    return save_tiny_sam3(tmp_path_factory.mktemp("sam3") / "tiny-sam3")


def source(model_dir, **options) -> Sam3MaskSource:
    # Random weights score every detection about 0.25: threshold 0 makes each prompt find something.
    defaults = dict(model=str(model_dir), device="cpu", score_threshold=0.0, new_object_threshold=0.0)
    return Sam3MaskSource(Sam3Options(**{**defaults, **options}))


@pytest.fixture(scope="module")
def loaded(tiny_sam3):
    return source(tiny_sam3).load_model()


@pytest.fixture
def counted(loaded, monkeypatch):
    """The loaded model, counting image-encoder passes and sessions (with their frame counts)."""
    calls = {"encoder": 0, "sessions": []}
    detector, processor = loaded.model.detector_model, loaded.processor
    encode, start = detector.get_vision_features, processor.init_video_session

    def counting_encode(*args, **kwargs):
        calls["encoder"] += 1
        return encode(*args, **kwargs)

    def counting_start(*args, video=None, **kwargs):
        calls["sessions"].append(len(video))
        return start(*args, video=video, **kwargs)

    monkeypatch.setattr(detector, "get_vision_features", counting_encode)
    monkeypatch.setattr(processor, "init_video_session", counting_start)
    return loaded, calls


def frames(count: int, size=(48, 56)) -> np.ndarray:
    """A moving bright square on a textured table: frames that change a little each step."""
    rng = np.random.default_rng(0)
    table = rng.integers(60, 120, size=(*size, 3), dtype=np.uint8)
    clip = np.repeat(table[None], count, axis=0)
    for t in range(count):
        clip[t, 10:30, 5 + 2 * t : 25 + 2 * t] = (230, 40, 40)
    return clip


def test_registered_and_prompts_from_recipe_and_instruction():
    assert mask_source_class("sam3") is Sam3MaskSource
    s = Sam3MaskSource(Sam3Options(object_prompts=["towel", "pot"], max_objects=3))
    # The recipe's come first, duplicates and robot phrases are dropped, max_objects caps.
    assert s.object_prompts("put the eggplant in the pot") == ["towel", "pot", "eggplant"]
    assert s.object_prompts("move the robot gripper to the blue cup and the spoon") == ["towel", "pot", "blue cup"]
    assert Sam3MaskSource(Sam3Options(objects_from_instruction=False)).object_prompts("put carrot on plate") == []
    assert Sam3MaskSource(Sam3Options(robot_prompts={"gripper": "gripper"})).object_prompts("put the gripper on the plate") == [
        "plate"
    ]


def test_label_maps_from_prompt_masks():
    shape = (2, 4, 6)
    arm, gripper, cup, towel = (np.zeros(shape, bool) for _ in range(4))
    arm[:, :, :3] = True
    gripper[:, :2, 2:4] = True
    cup[:, 2:, 1:5] = True
    towel[:, 3:, 3:] = True
    found = {"robot arm": arm, "robot gripper": gripper, "cup": cup, "towel": towel}
    robot = robot_label_map(found, {"robot arm": "arm", "robot gripper": "gripper"}, shape)
    assert robot.dtype == np.uint8 and robot.shape == shape
    assert (robot[gripper] == GRIPPER).all()  # the finer part wins at the wrist
    assert (robot[arm & ~gripper] == ARM).all() and (robot[~arm & ~gripper] == 0).all()
    objects = object_label_map(found, ["cup", "towel"], robot)
    assert (objects[robot > 0] == 0).all()  # robot pixels belong to the robot
    assert (objects[cup & (robot == 0)] == 1).all()  # the earlier prompt wins the overlap
    assert (objects[towel & ~cup] == 2).all() and (objects[~cup & ~towel] == 0).all()
    body = robot_label_map({"robot": arm}, {"robot": "robot"}, shape)
    assert set(np.unique(body)) == {0, BODY}


def test_one_pass_per_clip_serves_every_prompt(tiny_sam3, counted):
    model, calls = counted
    clip = CameraClip("train/000000", "image_0", frames(5), instruction="put the red block on the towel")
    s = source(tiny_sam3, object_prompts=["table"])
    found = s.segment_clip(model, clip)
    assert isinstance(found, ClipMasks)
    assert found.object_names == ("table", "red block", "towel")
    # Four prompts (robot arm, robot gripper + 3 objects) but each frame encoded once, in one session.
    assert calls["encoder"] == 5 and calls["sessions"] == [5]
    assert found.robot.shape == found.objects.shape == (5, 48, 56)
    assert found.robot.dtype == found.objects.dtype == np.uint8
    assert set(np.unique(found.robot)) <= {0, ARM, GRIPPER} and found.robot.any()
    assert set(np.unique(found.objects)) <= {0, 1, 2, 3} and found.objects.any()
    assert not (found.objects.astype(bool) & found.robot.astype(bool)).any()
    assert np.array_equal(s.segment(model, clip), found.robot)


def test_long_clip_runs_in_bounded_sessions(tiny_sam3, counted):
    model, calls = counted
    clip = CameraClip("train/000001", "image_0", frames(7), instruction="put carrot on plate")
    found = source(tiny_sam3, max_frames=3, robot_prompts={"robot": "robot"}, objects_from_instruction=False).segment_clip(
        model, clip
    )
    assert calls["sessions"] == [3, 3, 1]  # no session holds more than max_frames frames
    assert calls["encoder"] == 7
    assert found.robot.shape == (7, 48, 56) and found.objects is None and found.object_names == ()
    # Every chunk found the robot again (detections restart at a chunk boundary).
    assert all(found.robot[t].any() for t in (0, 3, 6))


def test_clip_without_object_prompts_gives_empty_object_map(tiny_sam3, counted):
    model, _ = counted
    found = source(tiny_sam3, score_threshold=1.0, new_object_threshold=1.0).segment_clip(
        model, CameraClip("val/000000", "c", frames(2))
    )
    assert found.object_names == () and found.objects.shape == (2, 48, 56) and not found.objects.any()
    assert not found.robot.any()  # nothing scores above 1.0


def test_missing_model_is_a_config_error_naming_the_path(tiny_sam3, tmp_path):
    s = source(tiny_sam3)
    s.check({}, ["image_0"])
    with pytest.raises(SourceConfigError, match=r"segmentation.model: .*/absent/sam3 is not a folder.*hf download facebook/sam3"):
        source(tmp_path / "absent" / "sam3").check({}, ["image_0"])
    with pytest.raises(SourceConfigError, match=rf"segmentation.model: {tmp_path} has no config.json"):
        source(tmp_path).check({}, ["image_0"])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam2_video"}))
    with pytest.raises(SourceConfigError, match="describes a 'sam2_video' model"):
        source(tmp_path).check({}, ["image_0"])
    with pytest.raises(SourceConfigError, match="nobody/no-such-sam3 is not in the Hugging Face cache .*allow_download is false"):
        source("nobody/no-such-sam3").check({}, ["image_0"])
    source("nobody/no-such-sam3", allow_download=True).check({}, ["image_0"])  # fetched at load time
    with pytest.raises(SourceConfigError, match=r"segmentation.robot_prompts.robot arm: unknown part 'elbow'"):
        source(tiny_sam3, robot_prompts={"robot arm": "elbow"}).check({}, ["image_0"])
    with pytest.raises(SourceConfigError, match="segmentation.max_frames"):
        source(tiny_sam3, max_frames=0).check({}, ["image_0"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("segmentation.model=/nowhere/sam3", "segmentation.model: /nowhere/sam3 is not a folder"),
        ("segmentation.max_frames=many", "segmentation.max_frames: expected int"),
        ("segmentation.robot_prompts={robot arm: elbow}", "segmentation.robot_prompts.robot arm: unknown part 'elbow'"),
        ("segmentation.prompts=[cup]", "segmentation.prompts: unknown key for segmentation.source=sam3"),
        ("segmentation.score_threshold=2", "segmentation.score_threshold: must be within 0..1"),
    ],
)
def test_recipe_check_exits_2_naming_the_key(override, message, tiny_sam3, bridge_dir, tmp_path, capsys):
    status = run_cli(
        "run",
        RECIPE,
        "--check",
        "--set",
        f"input.dir={bridge_dir}",
        "--set",
        f"output.dir={tmp_path}",
        "--set",
        f"segmentation.model={tiny_sam3}",
        "--set",
        override,
    )
    assert status == 2
    assert message in capsys.readouterr().err


def test_shipped_recipe_loads_and_asks_for_the_weights(bridge_dir, tmp_path, capsys):
    from pipelines.recipe import load_recipe

    recipe = load_recipe(str(RECIPE))
    assert recipe.segmentation.source == "sam3" and recipe.segmentation.keep_objects
    assert recipe.segmentation.options.objects_from_instruction and recipe.output.write_masks
    status = run_cli("run", RECIPE, "--check", "--set", f"input.dir={bridge_dir}", "--set", f"output.dir={tmp_path}")
    assert status == 2
    assert "segmentation.model: /path/to/sam3 is not a folder" in capsys.readouterr().err


def test_sam3_recipe_end_to_end_on_bridge(tiny_sam3, bridge_dir, tmp_path):
    """Beam (in-process DirectRunner) on the real Bridge sample: robot and object masks written and loadable."""
    import tensorflow_datasets as tfds

    out = tmp_path / "out"
    # One robot phrase and one object phrase (the instruction's first noun) keep the tracked
    # objects, and so the run time, small: random weights find something everywhere at threshold 0.
    status = run_cli(
        "run",
        RECIPE,
        "--set",
        f"input.dir={bridge_dir}",
        "--set",
        "input.max_episodes=2",
        "--set",
        "input.splits=[train]",
        "--set",
        "input.cameras=[image_0]",
        "--set",
        f"output.dir={out}",
        "--set",
        "output.write_masks=true",
        "--set",
        f"segmentation.model={tiny_sam3}",
        "--set",
        "segmentation.device=cpu",
        "--set",
        "segmentation.robot_prompts={robot gripper: gripper}",
        "--set",
        "segmentation.max_objects=1",
        "--set",
        "segmentation.score_threshold=0.0",
        "--set",
        "segmentation.new_object_threshold=0.0",
        "--set",
        "output.variants_per_episode=1",
        "--set",
        "output.previews=1",
        *IN_PROCESS,
    )
    assert status == 0, read_report(out)
    assert read_report(out)["episodes_written"] == 2
    builder = tfds.builder_from_directory(str(out / "bridge_dataset" / "1.0.0"))
    observation = builder.info.features["steps"]["observation"]
    assert "image_0_robot_mask" in observation and "image_0_object_mask" in observation
    episodes = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert len(episodes) == 2
    for episode in episodes:
        steps = list(episode["steps"])
        robot = np.stack([s["observation"]["image_0_robot_mask"] for s in steps])
        objects = np.stack([s["observation"]["image_0_object_mask"] for s in steps])
        assert robot.shape == objects.shape == (10, 64, 64, 1)
        assert set(np.unique(robot)) <= {0, GRIPPER} and robot.any()
        assert set(np.unique(objects)) <= {0, 1} and objects.any()
