"""Training RobotSeg on clips with ground-truth masks: the video forward pass with gradients, losses, one step.

This is supervised video training (every frame has a mask), in automatic mode: frame 0
is the conditioning frame prompted by the Robot Prompt Generator alone, later frames are
tracked through the memory bank, so gradients reach the image encoder, SEMA (both
branches), RPG and the decoder. The paper's label-efficient training (cycle, semantic
and patch consistency from a first-frame mask) is not implemented; the loss weights
below follow SAM 2's training recipe where RobotSeg's are not public.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from segmentation.robotseg.memory import MemoryBank
from segmentation.robotseg.model import RobotSeg, StepOutput


@dataclasses.dataclass
class LossWeights:
    """Weights of the loss terms (SAM 2's mask/IoU/object weights; structure unconfirmed)."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0
    structure: float = 1.0
    boundary_width: int = 3  # pixels of the ground-truth boundary the structure maps learn


@dataclasses.dataclass
class StepLosses:
    """Loss terms of one step, averaged over frames (floats, for logging)."""

    total: float
    mask: float
    iou: float
    object_score: float
    structure: float


def boundary_map(masks: torch.Tensor, width: int = 3) -> torch.Tensor:
    """Morphological gradient of binary ``masks`` ``(B, 1, H, W)``: 1 within ``width`` pixels of an edge."""
    pad = width // 2
    dilated = F.max_pool2d(masks, width, stride=1, padding=pad)
    eroded = -F.max_pool2d(-masks, width, stride=1, padding=pad)
    return (dilated - eroded).clamp(0, 1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss ``(B, M)`` of logits ``(B, M, H, W)`` against ``targets`` ``(B, 1, H, W)``."""
    probs = torch.sigmoid(logits).flatten(2)
    targets = targets.flatten(2)
    return 1 - (2 * (probs * targets).sum(-1) + 1) / (probs.sum(-1) + targets.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU ``(B, M)`` of thresholded ``logits`` with binary ``targets``."""
    predicted = (logits > 0).flatten(2)
    truth = targets.flatten(2) > 0.5
    inter = (predicted & truth).sum(-1).float()
    union = (predicted | truth).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


def forward_clip(model: RobotSeg, images: torch.Tensor, target: str) -> list[StepOutput]:
    """Automatic-mode predictions for clips ``images`` ``(B, T, 3, S, S)`` in [0, 1], with gradients."""
    b, t = images.shape[:2]
    features = model.encode_images(images.flatten(0, 1))
    cfg = model.config
    bank = MemoryBank(cfg.num_maskmem, cfg.max_obj_ptrs_in_encoder, cfg.max_cond_frames_in_attn, t)
    outputs = []
    for i in range(t):
        frame = features.take(torch.arange(b, device=images.device) * t + i)
        output = model.step(frame, target, None if i == 0 else bank.select(i))
        bank.add(i, model.encode_memory(frame, output, from_points=False), is_cond=i == 0)
        outputs.append(output)
    return outputs


def clip_losses(outputs: list[StepOutput], masks: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, StepLosses]:
    """Loss of a clip's predictions against ``masks`` ``(B, T, S, S)`` bool; ``(total, terms)``.

    Multi-mask outputs are scored by their best candidate (as SAM 2 trains), the IoU head
    on every candidate, and each SEMA structure map against the mask boundary.
    """
    terms = {"mask": [], "iou": [], "object_score": [], "structure": []}
    for i, output in enumerate(outputs):
        truth = masks[:, i : i + 1].float()
        size = truth.shape[-2:]
        candidates = F.interpolate(output.multimask_logits, size=size, mode="bilinear", align_corners=False)
        focal = sigmoid_focal_loss(candidates, truth.expand_as(candidates), reduction="none").flatten(2).mean(-1)
        per_mask = weights.focal * focal + weights.dice * dice_loss(candidates, truth)
        terms["mask"].append(per_mask.min(dim=1).values.mean())
        terms["iou"].append(F.l1_loss(output.ious, mask_iou(candidates.detach(), truth)))
        present = truth.flatten(1).amax(1, keepdim=True)
        terms["object_score"].append(F.binary_cross_entropy_with_logits(output.object_score_logits, present))
        if output.structure_logits:
            edges = boundary_map(truth, weights.boundary_width)
            structure = [
                F.binary_cross_entropy_with_logits(F.interpolate(s, size=size, mode="bilinear", align_corners=False), edges)
                for s in output.structure_logits
            ]
            terms["structure"].append(torch.stack(structure).mean())
    means = {k: torch.stack(v).mean() if v else torch.zeros((), device=masks.device) for k, v in terms.items()}
    total = (
        means["mask"]
        + weights.iou * means["iou"]
        + weights.object_score * means["object_score"]
        + weights.structure * means["structure"]
    )
    return total, StepLosses(
        float(total.detach()), *(float(means[k].detach()) for k in ("mask", "iou", "object_score", "structure"))
    )


def train_step(
    model: RobotSeg,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    masks: torch.Tensor,
    target: str = "robot",
    weights: LossWeights | None = None,
) -> StepLosses:
    """One optimisation step on clips ``images`` ``(B, T, 3, S, S)`` with ``masks`` ``(B, T, S, S)`` of ``target``."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total, losses = clip_losses(forward_clip(model, images, target), masks, weights or LossWeights())
    total.backward()
    optimizer.step()
    return losses
