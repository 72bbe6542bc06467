"""RobotSeg learns: the tiny model, trained for a few CPU minutes on rendered clips, segments them in video mode.

The clips are pybullet renders of the project's sample robots (``segmentation.synthetic.render``:
Panda, KUKA, xArm on a table, exact label maps); without pybullet, OpenCV-drawn robots
(``segmentation.robotseg.synthetic``). Slow (2-4 minutes on two cores): ``pytest -m slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segmentation.labels import target_mask
from segmentation.robotseg import build_robotseg_video_predictor, segment_video
from segmentation.robotseg.synthetic import SyntheticClip, render_synthetic_clip
from segmentation.robotseg.training import train_step
from segmentation.robotseg.video import preprocess

CLIPS, FRAMES, BATCH, SIZE = 8, 4, 2, 128
MAX_STEPS, EVAL_EVERY, TARGET_IOU = 600, 100, 0.8


def training_clips() -> list[SyntheticClip]:
    """Frames and label maps of ``CLIPS`` short clips, one camera each."""
    try:
        from segmentation.synthetic.render import RenderConfig, render_episode
    except ImportError:
        return [render_synthetic_clip(FRAMES, SIZE, seed=s) for s in range(CLIPS)]
    robots = ("panda", "kuka", "xarm")
    clips = []
    for seed in range(CLIPS):
        episode = render_episode(robots[seed % 3], FRAMES, RenderConfig(size=SIZE, cameras=1), np.random.default_rng(seed))
        clips.append(SyntheticClip(episode.frames["image_0"], episode.label_maps["image_0"]))
    return clips


def video_iou(model, clips) -> float:
    """Mean over clips of the robot IoU (all frames pooled) in automatic video mode."""
    ious = []
    for clip in clips:
        predicted = segment_video(model, clip.frames, targets=("robot",)) >= 1
        truth = target_mask(clip.labels, "robot")
        ious.append((predicted & truth).sum() / max((predicted | truth).sum(), 1))
    return float(np.mean(ious))


def nonzero_grads(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.slow
def test_tiny_robotseg_learns_to_segment_rendered_robots():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and no oversubscription on shared runners
    try:
        torch.manual_seed(0)
        clips = training_clips()
        images = torch.stack([preprocess(c.frames, SIZE, torch.device("cpu")) for c in clips])
        masks = torch.stack([torch.from_numpy(target_mask(c.labels, "robot")) for c in clips])
        model = build_robotseg_video_predictor("tiny", device="cpu", mode="train")
        before = video_iou(model, clips)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        rng = np.random.default_rng(0)
        trained: set[str] = set()
        iou = before
        for step in range(1, MAX_STEPS + 1):
            batch = rng.choice(CLIPS, BATCH, replace=False)
            losses = train_step(model, optimizer, images[batch], masks[batch], target="robot")
            assert np.isfinite(losses.total)
            trained |= nonzero_grads(model)
            if step % EVAL_EVERY == 0:
                iou = video_iou(model, clips)
                if iou >= TARGET_IOU + 0.05:
                    break
    finally:
        torch.set_num_threads(threads)

    print(f"video IoU {iou:.3f} after {step} steps (untrained {before:.3f})")
    # Training went through the memory attention (both branches and the gate), the robot tokens and the decoder.
    layers = range(len(model.memory_attention.layers))
    for name in (
        *(f"memory_attention.layers.{i}.structure_head.weight" for i in layers),
        *(f"memory_attention.layers.{i}.cross_attn_structure.q_proj.weight" for i in layers),
        *(f"memory_attention.layers.{i}.ms_pyramid.conv3.dw.weight" for i in layers),
        *(f"memory_attention.layers.{i}.structure_strength" for i in layers),
        *(f"memory_attention.layers.{i}.cross_attn_image.k_proj.weight" for i in layers),
        "sam_mask_decoder.robot_token_embedding.weight",
        "robot_prompt_generator.no_memory_prompt_embeddings_fg.weight",
        "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
        "image_encoder.trunk.patch_embed.proj.weight",
    ):
        assert name in trained, name
    assert any(n.startswith("sam_mask_decoder.output_hypernetworks_mlps.") for n in trained)
    assert iou >= TARGET_IOU, f"IoU {iou:.3f} after {step} steps (untrained: {before:.3f})"
