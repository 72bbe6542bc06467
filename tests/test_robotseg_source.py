"""The ``robotseg`` mask source: options, check(), load_model(), segment(), and its recipe."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import typing
import weakref

import numpy as np
import pytest
import torch
import yaml

from segmentation.labels import BACKGROUND, BODY
from segmentation.robotseg import build_robotseg_video_predictor, save_checkpoint
from segmentation.robotseg.source import RobotSegMaskSource, RobotSegOptions
from segmentation.robotseg.synthetic import render_synthetic_clip
from segmentation.sources import CameraClip, SourceConfigError, mask_source_class

REPO = pathlib.Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def checkpoint(tmp_path):
    model = build_robotseg_video_predictor("tiny", device="cpu")
    with torch.no_grad():  # object always "present", so masks are not blanked
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(20.0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(model, path)
    return path


def tiny_source(**options) -> RobotSegMaskSource:
    return RobotSegMaskSource(RobotSegOptions(config="tiny", device="cpu", **options))


def test_registry_resolves_the_source():
    assert mask_source_class("robotseg") is RobotSegMaskSource


def test_options_use_only_recipe_friendly_types():
    simple = {str, int, float, bool, type(None)}
    for name, hint in typing.get_type_hints(RobotSegOptions).items():
        args = typing.get_args(hint)
        if typing.get_origin(hint) is list:
            assert set(args) <= simple, name
        else:
            assert hint in simple or set(args) <= simple, name


def test_check_names_bad_checkpoints(tmp_path, checkpoint):
    with pytest.raises(SourceConfigError, match="segmentation.checkpoint: required"):
        tiny_source().check({}, ["image_0"])
    tiny_source(allow_random_init=True).check({}, ["image_0"])
    absent = tmp_path / "absent.pt"
    with pytest.raises(SourceConfigError, match=str(absent)):
        tiny_source(checkpoint=str(absent)).check({}, ["image_0"])
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("nope")
    with pytest.raises(SourceConfigError, match="garbage.pt"):
        tiny_source(checkpoint=str(garbage)).check({}, ["image_0"])
    tiny_source(checkpoint=str(checkpoint)).check({}, ["image_0"])
    state = torch.load(checkpoint, weights_only=True)["model"]
    del state["robot_prompt_generator.no_memory_prompt_embeddings_fg.weight"]
    torch.save({"model": state}, tmp_path / "partial.pt")
    with pytest.raises(SourceConfigError, match="robot_prompt_generator.no_memory_prompt_embeddings_fg.weight"):
        tiny_source(checkpoint=str(tmp_path / "partial.pt")).check({}, ["image_0"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"config": "huge"}, "segmentation.config"),
        ({"device": "tpu"}, "segmentation.device"),
        ({"model_targets": ["wheel"]}, "segmentation.model_targets"),
        ({"mode": "magic"}, "segmentation.mode"),
        ({"mode": "prompted"}, "segmentation.prompts"),
        ({"chunk_size": 0}, "segmentation.chunk_size"),
    ],
)
def test_check_names_bad_options(options, message):
    options = {"allow_random_init": True, **options}
    with pytest.raises(SourceConfigError, match=message):
        RobotSegMaskSource(RobotSegOptions(**options)).check({}, ["image_0"])


def test_load_model_and_segment_a_clip(checkpoint):
    source = tiny_source(checkpoint=str(checkpoint), model_targets=["robot"], chunk_size=3)
    model = source.load_model()
    assert weakref.ref(model)() is model and model.checkpoint_report.ok
    assert not model.training and model.device.type == "cpu"
    clip = render_synthetic_clip(5, (72, 90), seed=2)
    labels = source.segment(model, CameraClip("ep0", "image_0", clip.frames))
    assert labels.shape == (5, 72, 90) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {BACKGROUND, BODY} or set(np.unique(labels)) == {BODY}


def test_prompted_mode_reads_the_prompt_file(tmp_path, checkpoint):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"ep0": {"image_0": {"1": {"box": [10, 10, 60, 60], "target": "arm"}}}}))
    clip = render_synthetic_clip(4, 64, seed=0)
    source = tiny_source(checkpoint=str(checkpoint), mode="prompted", prompts=str(prompts), model_targets=["robot"])
    source.check({}, ["image_0"])
    model = source.load_model()
    labels = source.segment(model, CameraClip("ep0", "image_0", clip.frames))
    assert labels.shape == clip.frames.shape[:3]
    assert 2 in np.unique(labels)  # the prompted arm is tracked beside the automatic robot
    other_camera = CameraClip("ep0", "image_1", clip.frames)
    assert set(np.unique(source.segment(model, other_camera))) <= {0, 1}  # no prompts: automatic
    strict = tiny_source(checkpoint=str(checkpoint), mode="prompted", prompts=str(prompts), missing_prompts="error")
    with pytest.raises(ValueError, match="episode ep0, camera image_1"):
        strict.segment(model, other_camera)
    empty = tiny_source(checkpoint=str(checkpoint), mode="prompted", prompts=str(prompts), missing_prompts="empty")
    assert not empty.segment(model, other_camera).any()


def test_bad_prompt_file_is_named(tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"ep0": {"image_0": {"2": {"points": [[1, 2]], "labels": [1, 1]}}}}))
    source = tiny_source(allow_random_init=True, mode="prompted", prompts=str(prompts))
    with pytest.raises(SourceConfigError, match="episode ep0, camera image_0, frame 2"):
        source.check({}, ["image_0"])


def test_recipe_keys_are_the_sources_options():
    raw = yaml.safe_load((REPO / "configs" / "segment_robotseg.yaml").read_text())
    section = dict(raw["segmentation"])
    assert section.pop("source") == "robotseg"
    pipeline_keys = {"targets", "batch_size", "large_model", "model_copies"}
    options = {k: v for k, v in section.items() if k not in pipeline_keys}
    fields = {f.name for f in dataclasses.fields(RobotSegOptions)}
    assert set(options) <= fields
    RobotSegOptions(**options)
    assert raw["background"]["source"] == "none" and raw["output"]["write_masks"] is True


def test_recipe_validates_with_the_pipeline():
    from pipelines.recipe import load_recipe

    recipe = load_recipe(str(REPO / "configs" / "segment_robotseg.yaml"))
    assert isinstance(recipe.segmentation.options, RobotSegOptions)
    assert recipe.segmentation.options.model_targets == ["robot", "arm", "gripper"]


def test_prompt_file_format(tmp_path):
    from segmentation.robotseg.prompts import FramePrompt, PromptFileError, load_prompt_file

    path = tmp_path / "prompts.json"
    path.write_text(
        json.dumps(
            {
                "ep0": {
                    "image_0": {
                        "3": [{"points": [[1, 2], [3, 4]], "labels": [1, 0], "target": "arm"}, {"box": [0, 0, 9, 9]}],
                        "0": {"points": [[5, 6]]},
                    }
                }
            }
        )
    )
    parsed = load_prompt_file(path)
    assert parsed.clip_prompts("ep0", "image_0") == [
        FramePrompt(0, "robot", points=((5.0, 6.0),), labels=(1,)),
        FramePrompt(3, "arm", points=((1.0, 2.0), (3.0, 4.0)), labels=(1, 0)),
        FramePrompt(3, "robot", box=(0.0, 0.0, 9.0, 9.0)),
    ]
    assert parsed.clip_prompts("ep0", "image_1") == [] and parsed.clip_prompts("ep1", "image_0") == []
    path.write_text(json.dumps({"ep0": {"image_0": {"1": [{"box": [0, 0, 1, 1]}, {"points": [[1, 1]]}]}}}))
    with pytest.raises(PromptFileError, match="frame 1: more than one prompt for the same target"):
        load_prompt_file(path)
    path.write_text("{not json")
    with pytest.raises(PromptFileError, match="not valid JSON"):
        load_prompt_file(path)
