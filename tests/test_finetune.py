"""Label-efficient fine-tuning: each LET loss on known cases, where gradients go, checkpoints, the finetune command."""

from __future__ import annotations

import argparse
import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from segmentation.labels import target_mask
from segmentation.robotseg import build_robotseg
from segmentation.robotseg.let import (
    FinetuneOptions,
    LetWeights,
    PatchPropagation,
    TrainClip,
    build_patch_backbone,
    cycle_consistency_loss,
    finetune,
    forward_backward,
    freeze_parameters,
    label_every,
    let_losses,
    patch_consistency_loss,
    propagate_patch_labels,
    semantic_consistency_loss,
)
from segmentation.robotseg.synthetic import render_synthetic_clip
from segmentation.robotseg.video import preprocess
from tests.conftest import IN_PROCESS, read_report, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def zero_logit_loss(n_pos: int, n: int) -> float:
    """Focal (alpha 0.25, gamma 2) x 20 + dice (smoothed by 1) of logits 0 (p = 0.5) against a mask of n_pos of n pixels."""
    focal = math.log(2) * 0.25 * (0.25 * n_pos + 0.75 * (n - n_pos)) / n
    dice = 1 - (2 * 0.5 * n_pos + 1) / (0.5 * n + n_pos + 1)
    return 20 * focal + dice


def test_cycle_consistency_known_values():
    g0 = torch.zeros(1, 1, 8, 8)
    g0[..., 2:6, 2:6] = 1  # 16 of 64 pixels
    assert float(cycle_consistency_loss(torch.zeros(1, 1, 8, 8), g0)) == pytest.approx(zero_logit_loss(16, 64), rel=1e-5)
    # A confident, exact backward prediction costs (almost) nothing; the inverse a lot.
    exact = (g0 * 2 - 1) * 30
    assert float(cycle_consistency_loss(exact, g0)) < 1e-3
    assert float(cycle_consistency_loss(-exact, g0)) > 5
    # Lower-resolution logits are resized to the mask first.
    assert float(cycle_consistency_loss(torch.zeros(1, 1, 4, 4), g0)) == pytest.approx(zero_logit_loss(16, 64), rel=1e-5)


def test_semantic_consistency_known_values():
    # Features: vector a inside G0's square, b (orthogonal) outside; 3 frames alike.
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1:3, 1:3] = True
    feats = torch.where(inside, a[:, None, None], b[:, None, None])  # (2, 4, 4)
    features = feats.expand(1, 3, 2, 4, 4)
    g0 = inside.float()[None, None]
    same = g0[:, None].expand(1, 3, 1, 4, 4)
    assert float(semantic_consistency_loss(features, same, g0)) == pytest.approx(0.0, abs=1e-6)
    outside = (1 - g0)[:, None].expand(1, 3, 1, 4, 4)
    assert float(semantic_consistency_loss(features, outside, g0)) == pytest.approx(1.0, abs=1e-6)
    # Everything selected: mean = (4a + 12b) / 16, cos with a = 4 / sqrt(4^2 + 12^2).
    everything = torch.ones(1, 3, 1, 4, 4)
    assert float(semantic_consistency_loss(features, everything, g0)) == pytest.approx(1 - 4 / math.sqrt(160), abs=1e-6)
    # Masks at image resolution are averaged down to the feature grid.
    big = torch.nn.functional.interpolate(same.flatten(0, 1), scale_factor=4, mode="nearest").view(1, 3, 1, 16, 16)
    assert float(semantic_consistency_loss(features, big, torch.nn.functional.interpolate(g0, scale_factor=4))) == pytest.approx(
        0.0, abs=1e-6
    )


def test_patch_labels_follow_a_shifted_pattern():
    # Each patch has its own orthonormal feature; frame 1 is frame 0 shifted right by one patch,
    # so with top-1 the label of each patch comes from the patch it was at in frame 0.
    h, w = 4, 5
    basis = torch.eye(h * w).view(h * w, h, w)
    frame0 = basis
    frame1 = torch.roll(basis, shifts=1, dims=2)
    g0 = torch.zeros(h, w)
    g0[1:3, 1:3] = 1
    # (radius 4 spans the grid: the wrapped-around column finds its source too)
    labels = propagate_patch_labels(torch.stack([frame0, frame1]), g0, PatchPropagation(context=2, radius=4, top_k=1))
    torch.testing.assert_close(labels[0], g0)
    torch.testing.assert_close(labels[1], torch.roll(g0, shifts=1, dims=1))
    # Outside the radius nothing can match: a shift of 3 patches with radius 1 loses the pattern.
    far = propagate_patch_labels(torch.stack([frame0, torch.roll(basis, 3, dims=2)]), g0, PatchPropagation(radius=1, top_k=1))
    assert not torch.equal(far[1], torch.roll(g0, 3, dims=1))
    # Top-k with k equally similar candidates averages them with equal weights.
    flat = torch.ones(2, 3, h, w)
    averaged = propagate_patch_labels(flat, g0, PatchPropagation(radius=10, top_k=h * w))
    torch.testing.assert_close(averaged[1], torch.full((h, w), float(g0.mean())))


def test_patch_consistency_known_values():
    pseudo = torch.zeros(2, 1, 1, 4, 4)
    pseudo[:, ..., :2, :] = 1  # half of every pseudo-mask
    logits = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)]
    assert float(patch_consistency_loss(logits, pseudo)) == pytest.approx(zero_logit_loss(32, 64), rel=1e-5)
    confident = [(p * 2 - 1) * 30 for p in pseudo]  # at the pseudo-masks' own resolution: nothing resized
    assert float(patch_consistency_loss(confident, pseudo)) < 1e-3
    assert float(patch_consistency_loss([-c for c in confident], pseudo)) > 5
    # Confidence: unsure pixels (P = 0.5) do not count, sure ones are binarised.
    unsure = pseudo.clone()
    unsure[..., 2:, :2] = 0.5
    wrong_where_unsure = [c.clone() for c in confident]
    for c in wrong_where_unsure:
        c[..., 2:, :2] = 30.0
    assert float(patch_consistency_loss(wrong_where_unsure, unsure, confidence=0.5)) < 1e-3
    assert float(patch_consistency_loss(wrong_where_unsure, unsure)) > 0.1
    sure = pseudo * 0.9 + 0.05  # 0.95 / 0.05: |2P - 1| = 0.9 >= 0.5, trained toward 1 / 0
    assert float(patch_consistency_loss(confident, sure, confidence=0.5)) < 1e-3


@pytest.fixture(scope="module")
def batch():
    clips = [render_synthetic_clip(3, 128, seed=s) for s in range(2)]
    images = torch.stack([preprocess(c.frames, 128, torch.device("cpu")) for c in clips])
    masks = torch.stack([torch.from_numpy(target_mask(c.labels, "robot")) for c in clips])
    return images, masks


def grads(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_first_frame_loss_alone_never_reaches_the_memory_attention(batch):
    # Frame 0 is segmented without memory, so with labels on it only (and no LET) the
    # memory path learns nothing: what the consistency losses are for.
    images, masks = batch
    torch.manual_seed(0)
    model = build_robotseg("tiny").train()
    labelled = torch.tensor([True, False, False])
    total, losses = let_losses(model, images, masks, labelled, "robot", None)
    total.backward()
    assert not any(n.startswith("memory_attention.") for n in grads(model))
    assert losses.cycle == losses.semantic == losses.patch == 0.0


@pytest.mark.parametrize("term", ["cycle", "semantic", "patch"])
def test_each_consistency_loss_trains_the_memory_path(batch, term):
    images, masks = batch
    torch.manual_seed(0)
    model = build_robotseg("tiny").train()
    backbone = build_patch_backbone("self", model)
    clip = forward_backward(model, images, "robot")
    g0 = masks[:, :1].float()
    if term == "cycle":
        loss = cycle_consistency_loss(clip.backward[0].low_res_logits, g0)
    elif term == "semantic":
        vision = clip.features.vision.detach().view(2, 3, *clip.features.vision.shape[1:])
        loss = semantic_consistency_loss(vision, torch.stack([torch.sigmoid(o.low_res_logits) for o in clip.forward], 1), g0)
    else:
        feats = backbone(images.flatten(0, 1)).view(2, 3, -1, 8, 8)
        pseudo = torch.stack(
            [propagate_patch_labels(feats[k], torch.nn.functional.adaptive_avg_pool2d(g0[k], 8)[0]) for k in range(2)], 1
        )
        loss = patch_consistency_loss([clip.forward[1].low_res_logits, clip.forward[2].low_res_logits], pseudo[1:, :, None])
    loss.backward()
    trained = grads(model)
    for name in (
        "memory_attention.layers.0.cross_attn_image.k_proj.weight",  # SEMA's temporal branch
        "memory_attention.layers.1.structure.cross_attn_memory.q_proj.weight",  # its structure branch
        "memory_attention.layers.1.alpha",
        "memory_encoder.fuser.layers.0.dwconv.weight",
        "sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
        "prompt_generator.object_proj.weight",
    ):
        assert name in trained, (term, name)
    assert not any(p.grad is not None for p in backbone.parameters())  # the patch backbone stays frozen


def test_frozen_parts_get_no_gradient_and_do_not_move(batch):
    images, masks = batch
    torch.manual_seed(0)
    model = build_robotseg("tiny").train()
    assert freeze_parameters(model, ["image_encoder", "sam_prompt_encoder"]) > 0
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("image_encoder.")}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    total, _ = let_losses(
        model, images, masks, torch.tensor([True, False, False]), "robot", LetWeights(), build_patch_backbone("self", model)
    )
    total.backward()
    optimizer.step()
    assert not any(n.startswith(("image_encoder.", "sam_prompt_encoder.")) for n in grads(model))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    assert "sam_mask_decoder.iou_token.weight" in grads(model)
    with pytest.raises(ValueError, match="'vision_encoder' names no parameter"):
        freeze_parameters(model, ["vision_encoder"])


def test_label_every_keeps_the_first_or_every_kth_frame():
    clip = TrainClip("c", np.zeros((7, 2, 2, 3), np.uint8), np.zeros((7, 2, 2), bool), np.ones(7, bool))
    assert np.flatnonzero(label_every(clip, 0).labelled).tolist() == [0]
    assert np.flatnonzero(label_every(clip, 3).labelled).tolist() == [0, 3, 6]
    assert label_every(clip, 1).labelled.all()


def synthetic_clips(n: int, frames: int = 4, size: int = 64, first: int = 0) -> list[TrainClip]:
    out = []
    for s in range(first, first + n):
        c = render_synthetic_clip(frames, size, seed=s)
        out.append(TrainClip(f"clip{s}", c.frames, target_mask(c.labels, "robot"), np.ones(frames, bool)))
    return out


def test_checkpoints_resume_and_load_into_build_robotseg(tmp_path):
    options = FinetuneOptions(out_dir=str(tmp_path), steps=2, batch_size=1, clip_length=3, save_every=1, log_every=1, lr=1e-3)
    clips = synthetic_clips(2)
    first = finetune(options, clips)
    assert [r["step"] for r in first["history"]] == [1, 2]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 2 and "optimizer" in state
    # Asked for 3 steps, the run continues from step 2 (one more step), not from scratch.
    resumed = finetune(dataclasses.replace(options, steps=3), clips)
    assert [r["step"] for r in resumed["history"]] == [1, 2, 3]
    loaded = build_robotseg("tiny", str(tmp_path / "robotseg.pt"), strict=True)
    trained = torch.load(tmp_path / "robotseg.pt", weights_only=True)["model"]
    assert all(torch.equal(v, trained[k]) for k, v in loaded.state_dict().items())


def test_cli_defaults_match_the_library():
    from pipelines import finetune as command

    options, patch = FinetuneOptions(out_dir=""), PatchPropagation()
    for name, value in vars(command._DEFAULTS).items():
        assert getattr(options, name) == value, name
    assert vars(command._PATCH_DEFAULTS) == dataclasses.asdict(patch)
    from segmentation.robotseg.let import PATCH_BACKBONES

    assert set(command.PATCH_BACKBONE_NAMES) == set(PATCH_BACKBONES)


def test_finetune_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        run_cli("finetune", "--help")
    text = capsys.readouterr().out
    for option in (
        "--data",
        "--label-every",
        "--init",
        "--freeze",
        "--lr",
        "--steps",
        "--clip-length",
        "--bf16",
        "--no-let",
        "--cycle-weight",
        "--semantic-weight",
        "--patch-weight",
        "--patch-backbone",
        "--no-resume",
    ):
        assert option in text, option
    from pipelines.cli import build_parser

    finetune_parser = build_parser()._subparsers._group_actions[0].choices["finetune"]
    for action in finetune_parser._actions:
        assert action.help, action.option_strings


def test_finetune_bad_inputs_exit_2_naming_them(tmp_path, capsys):
    assert run_cli("finetune", "--data", tmp_path / "nothing", "--out", tmp_path / "o") == 2
    assert "nothing" in capsys.readouterr().err
    assert run_cli("finetune", "--data", tmp_path, "--out", tmp_path / "o", "--config", "huge") == 2
    assert "--config" in capsys.readouterr().err


def test_finetune_on_vrs_folders(tmp_path):
    # A VRS train split: frames, and a robot mask on the first frame only.
    root = tmp_path / "VRS" / "train"
    for clip in synthetic_clips(2, frames=4, size=64):
        (root / "image" / clip.name).mkdir(parents=True)
        (root / "mask_gt" / clip.name / "002").mkdir(parents=True)
        for i, frame in enumerate(clip.frames):
            cv2.imwrite(str(root / "image" / clip.name / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "mask_gt" / clip.name / "002" / "00000.png"), clip.masks[0].astype(np.uint8) * 255)
    out = tmp_path / "run"
    assert (
        run_cli(
            "finetune", "--data", root, "--out", out, "--steps", "2", "--clip-length", "3", "--batch-size", "1", "--device", "cpu"
        )
        == 0
    )
    assert (out / "robotseg.pt").is_file() and (out / "last.pt").is_file()
    build_robotseg("tiny", str(out / "robotseg.pt"), strict=True)


def test_finetuned_checkpoint_runs_in_a_recipe(sample_dir, tmp_path):
    # Fine-tune on the RLDS sample's stored masks (first frame only), then segment with it through the CLI.
    out = tmp_path / "run"
    assert (
        run_cli(
            "finetune",
            "--data",
            sample_dir,
            "--out",
            out,
            "--steps",
            "2",
            "--clip-length",
            "3",
            "--batch-size",
            "1",
            "--max-episodes",
            "1",
            "--cameras",
            "image_0",
            "--device",
            "cpu",
        )
        == 0
    )
    checkpoint = out / "robotseg.pt"
    status = run_cli(
        "run",
        "configs/segment_robotseg.yaml",
        "--set",
        f"input.dir={sample_dir}",
        "--set",
        f"output.dir={tmp_path / 'seg'}",
        "--set",
        "segmentation.config=tiny",
        "--set",
        f"segmentation.checkpoint={checkpoint}",
        "--set",
        "segmentation.strict_checkpoint=true",
        "--set",
        "segmentation.device=cpu",
        "--set",
        "input.max_episodes=1",
        *IN_PROCESS,
    )
    assert status == 0
    report = read_report(tmp_path / "seg")
    assert (report["episodes_written"], report["episodes_failed"]) == (1, 0)


def test_finetune_options_parse_into_the_library_dataclass(tmp_path):
    from pipelines.cli import build_parser
    from pipelines.finetune import options_from_args

    args = build_parser().parse_args(
        [
            "finetune",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--freeze",
            "image_encoder",
            "--label-every",
            "3",
            "--no-let",
            "--patch-top-k",
            "2",
            "--device",
            "cpu",
            "--bf16",
        ]
    )
    options = options_from_args(args)
    assert isinstance(args, argparse.Namespace)
    assert (options.freeze, options.label_every, options.let, options.patch.top_k, options.bf16) == (
        ("image_encoder",),
        3,
        False,
        2,
        True,
    )
    assert options.let_weights is None
