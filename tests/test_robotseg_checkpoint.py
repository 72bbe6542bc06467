"""RobotSeg checkpoints: strict round trip, the key report, renaming rules, errors naming the file."""

from __future__ import annotations

import pytest
import torch

from segmentation.robotseg import CheckpointError, build_robotseg, load_checkpoint, save_checkpoint
from segmentation.robotseg.checkpoint import canonical_key, read_state_dict


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_robotseg("tiny")
    path = tmp_path / "robotseg_tiny.pt"
    save_checkpoint(model, path)
    return model, path


def test_strict_round_trip_restores_every_weight(saved):
    model, path = saved
    torch.manual_seed(1)
    other = build_robotseg("tiny")
    assert not torch.equal(other.prompt_generator.class_tokens, model.prompt_generator.class_tokens)
    report = load_checkpoint(other, path, strict=True)
    assert report.ok and report.missing == [] and report.unexpected == [] and report.renamed == {}
    assert len(report.matched) == len(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    rebuilt = build_robotseg("tiny", checkpoint=str(path), strict=True)
    assert torch.equal(rebuilt.memory_attention.layers[1].alpha, model.memory_attention.layers[1].alpha)


def test_report_on_renamed_and_missing_keys(saved, caplog):
    model, _ = saved
    state = dict(model.state_dict())
    missing_key = "memory_attention.layers.0.structure.head.bias"
    del state[missing_key]
    renamed_key = "sam_mask_decoder.iou_token.weight"
    state["sam_mask_decoder.iou_tokens.weight"] = state.pop(renamed_key)  # a name no rule knows
    aliased_key = "prompt_generator.class_tokens"
    state["rpg.class_token_bank"] = state.pop(aliased_key)  # a known alias of the official release
    wrapped = {"model": {"module." + k: v for k, v in state.items()}}

    torch.manual_seed(2)
    target = build_robotseg("tiny")
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(target, wrapped, strict=True)
    assert missing_key in str(raised.value) and "sam_mask_decoder.iou_tokens.weight" in str(raised.value)
    # strict failure loads nothing
    assert not torch.equal(target.prompt_generator.class_tokens, model.prompt_generator.class_tokens)

    with caplog.at_level("WARNING"):
        report = load_checkpoint(target, wrapped)
    assert sorted(report.missing) == sorted([missing_key, renamed_key])
    assert report.unexpected == ["sam_mask_decoder.iou_tokens.weight"]
    assert report.missing_sam2 == [renamed_key]
    assert report.renamed["module.rpg.class_token_bank"] == aliased_key
    assert len(report.renamed) == len(state)  # every key lost its "module." prefix
    assert len(report.matched) == len(model.state_dict()) - 2
    assert torch.equal(target.prompt_generator.class_tokens, model.prompt_generator.class_tokens)
    assert "2 missing" in caplog.text and "1 unexpected" in caplog.text


def test_shape_mismatch_is_reported_not_loaded(saved):
    model, _ = saved
    state = dict(model.state_dict())
    state["no_obj_ptr"] = torch.zeros(1, 7)
    report = load_checkpoint(build_robotseg("tiny"), state)
    assert report.shape_mismatched == ["no_obj_ptr: (1, 7) vs (1, 64)"]
    assert "no_obj_ptr" not in report.missing and "no_obj_ptr" not in report.matched


def test_renaming_rules():
    assert canonical_key("module.memory_attention.layers.2.sema.fuse.weight") == "memory_attention.layers.2.structure.fuse.weight"
    assert canonical_key("memory_attention.layers.0.fusion_alpha") == "memory_attention.layers.0.alpha"
    assert canonical_key("robot_prompt_generator.no_memory_embed.weight") == "prompt_generator.empty_memory_token.weight"
    assert canonical_key("image_encoder.trunk.pos_embed") == "image_encoder.trunk.pos_embed"


def test_unreadable_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        read_state_dict(garbage)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="no state dict"):
        read_state_dict(empty)
