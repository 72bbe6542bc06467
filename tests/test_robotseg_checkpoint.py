"""RobotSeg checkpoints: strict for RobotSeg weights, reported for SAM 2.1 weights, refused for our old layout."""

from __future__ import annotations

import logging

import pytest
import torch
from sam2.build_sam import build_sam2

from segmentation.robotseg import CheckpointError, build_robotseg_video_predictor, load_checkpoint, save_checkpoint
from segmentation.robotseg.checkpoint import ROBOTSEG_ONLY_KEYS, read_state_dict


def tiny():
    return build_robotseg_video_predictor("tiny", device="cpu")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_robotseg.pt"
    save_checkpoint(model, path)
    return model, path


def test_the_release_format_round_trips_strictly(saved):
    model, path = saved
    payload = torch.load(path, weights_only=True)
    assert list(payload) == ["model"]
    loaded = build_robotseg_video_predictor("tiny", path, device="cpu")
    assert loaded.checkpoint_report.kind == "robotseg" and loaded.checkpoint_report.ok
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_a_robotseg_checkpoint_that_does_not_fit_is_an_error_naming_the_key(saved, tmp_path, change):
    state = read_state_dict(saved[1])
    key = "memory_attention.layers.1.structure_strength"
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        key = "memory_attention.layers.9.structure_strength"
        state[key] = torch.tensor(1.0)
    else:
        state[key] = torch.ones(2)
    torch.save({"model": state}, tmp_path / "bad.pt")
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_checkpoint(model, tmp_path / "bad.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_a_sam21_checkpoint_fills_the_sam2_part_and_reports_the_rest(tmp_path, caplog):
    sam2 = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu")
    torch.save({"model": sam2.state_dict()}, tmp_path / "sam2.1_hiera_tiny.pt")
    with caplog.at_level(logging.WARNING, logger="segmentation.robotseg.checkpoint"):
        model = build_robotseg_video_predictor("robotseg-infer", tmp_path / "sam2.1_hiera_tiny.pt", device="cpu")
    report = model.checkpoint_report
    assert report.kind == "sam2" and len(report.matched) == 471 and report.missing_sam2 == []
    assert len(report.missing) == 114 and all(ROBOTSEG_ONLY_KEYS.match(k) for k in report.missing)
    assert "114 missing" in caplog.text
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in sam2.state_dict().items())
    # The RobotSeg-only weights are a seeded initialisation: the same in every build.
    again = build_robotseg_video_predictor("robotseg-infer", None, device="cpu").state_dict()
    assert all(torch.equal(ours[k], again[k]) for k in report.missing)


def test_an_old_oxe_augment_checkpoint_is_refused_with_the_reason(tmp_path):
    state = {"prompt_generator.class_tokens": torch.zeros(3, 4, 64), "memory_attention.layers.0.alpha": torch.ones(())}
    torch.save({"model": state, "config": {"name": "tiny"}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="cannot be converted"):
        load_checkpoint(tiny(), tmp_path / "old.pt")


def test_unreadable_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "nowhere.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"model": {"a": "not a tensor"}}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no state dict"):
        read_state_dict(tmp_path / "empty.pt")
