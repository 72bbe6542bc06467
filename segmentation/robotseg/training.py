"""Training RobotSeg on clips with ground-truth masks: the video forward pass with gradients, losses, one step.

This is supervised video training (every frame has a mask), in automatic mode: frame 0
is the conditioning frame prompted by the robot class token alone (``add_new_robot``),
later frames are tracked through the memory bank with :meth:`RobotSegBase.track_step`
(the model code the predictor runs), so gradients reach the image encoder, the memory
attention (both branches), the decoder and its robot tokens. The paper's label-efficient training (cycle, semantic
and patch consistency from a first-frame mask) is not implemented; the loss weights
below follow SAM 2's training recipe where RobotSeg's are not public.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from segmentation.robotseg.model import RobotSegBase
from segmentation.robotseg.predictor import IMAGE_MEAN, IMAGE_STD


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


@dataclasses.dataclass
class StepOutput:
    """One frame's prediction for a batch of clips, with what the losses need."""

    low_res_logits: torch.Tensor  # (B, 1, h, w): the chosen mask
    multimask_logits: torch.Tensor  # (B, M, h, w): every candidate
    ious: torch.Tensor  # (B, M)
    object_score_logits: torch.Tensor  # (B, 1)
    structure_logits: list[torch.Tensor]  # per memory-attention layer (B, 1, S, S); empty without memory


@dataclasses.dataclass
class ClipFeatures:
    """Image-encoder output of ``B`` clips of ``T`` frames (rows clip-major), as ``track_step`` takes it."""

    raw: torch.Tensor  # (B*T, 3, S, S) normalised frames (the structure branch's input)
    vision: torch.Tensor  # (B*T, C, h, w) stride-16 features before memory
    feats: list[torch.Tensor]  # per level (HW, B*T, C)
    pos: list[torch.Tensor]
    sizes: list[tuple[int, int]]
    batch: int
    length: int

    def frame(self, t: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Frame ``t`` of every clip: raw image, features, positions."""
        rows = torch.arange(self.batch, device=self.raw.device) * self.length + t
        return self.raw[rows], [f[:, rows] for f in self.feats], [p[:, rows] for p in self.pos]


def encode_clips(model: RobotSegBase, images: torch.Tensor) -> ClipFeatures:
    """Features of clips ``images`` ``(B, T, 3, S, S)`` in [0, 1] (normalised as the predictor's frames)."""
    b, t = images.shape[:2]
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    raw = (images.flatten(0, 1) - mean) / std
    backbone = model.forward_image(raw)
    vision = backbone["backbone_fpn"][-1]
    _, feats, pos, sizes = model._prepare_backbone_features(backbone)
    return ClipFeatures(raw, vision, feats, pos, sizes, b, t)


def track_frames(
    model: RobotSegBase, clip: ClipFeatures, target: str, order: list[int], output_dict: dict | None = None, reverse: bool = False
) -> dict[int, dict]:
    """Run ``track_step`` over ``order`` (its first frame the conditioning one unless ``output_dict`` has one); outputs by frame."""
    output_dict = output_dict or {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    outputs = {}
    for t in order:
        is_cond = not output_dict["cond_frame_outputs"]
        raw, feats, pos = clip.frame(t)
        out = model.track_step(
            frame_idx=t,
            is_init_cond_frame=is_cond,
            current_raw_image=raw,
            current_vision_feats=feats,
            current_vision_pos_embeds=pos,
            feat_sizes=clip.sizes,
            robot_inputs=target,
            point_inputs=None,
            mask_inputs=None,
            output_dict=output_dict,
            num_frames=clip.length,
            track_in_reverse=reverse,
        )
        output_dict["cond_frame_outputs" if is_cond else "non_cond_frame_outputs"][t] = out
        outputs[t] = out
    return outputs


def step_output(out: dict, is_cond: bool) -> StepOutput:
    """A :class:`StepOutput` from a ``track_step`` output (training mode)."""
    structures = [] if is_cond else list(out["structure_masks"].split(1, dim=1))
    object_scores = out.get("multistep_object_score_logits", out.get("object_score_logits"))
    multimask = out.get("multistep_pred_multimasks", out["pred_masks"])
    ious = out.get("multistep_pred_ious", torch.ones(multimask.shape[:2], device=multimask.device))
    return StepOutput(out["pred_masks"], multimask.float(), ious.float(), object_scores.float(), structures)


def forward_clip(model: RobotSegBase, images: torch.Tensor, target: str) -> list[StepOutput]:
    """Automatic-mode predictions for clips ``images`` ``(B, T, 3, S, S)`` in [0, 1], with gradients."""
    clip = encode_clips(model, images)
    outputs = track_frames(model, clip, target, list(range(clip.length)))
    return [step_output(outputs[t], t == 0) for t in range(clip.length)]


def clip_losses(outputs: list[StepOutput], masks: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, StepLosses]:
    """Loss of a clip's predictions against ``masks`` ``(B, T, S, S)`` bool; ``(total, terms)``.

    Multi-mask outputs are scored by their best candidate (as SAM 2 trains), the IoU head
    on every candidate, and each memory-attention layer's structure map against the mask boundary.
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
    model: RobotSegBase,
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
