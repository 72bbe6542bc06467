"""Label-efficient training (LET) of RobotSeg: first-frame labels plus three consistency losses.

RobotSeg's paper trains on videos whose first frame alone has a mask ``G0``
(``../shared/ROBOTSEG.md``). Per clip, one automatic-mode forward pass (frame 0 prompted
by the Robot Prompt Generator, later frames tracked) and one backward pass (from the
last frame's memory back to frame 0) give predictions ``M_t`` and ``Mb_t``; the loss is

* the supervised loss (``training.clip_losses``) on labelled frames (the first, or every k-th);
* **cycle consistency**: ``Mb_0`` (frame 0 reached again backward) against ``G0``;
* **semantic consistency**: the masked mean of each frame's features under ``M_t``
  pulled toward the masked mean of frame 0's features under ``G0`` (cosine);
* **patch consistency**: pseudo-masks ``P_t``, propagated from ``G0`` by patch
  similarity in a frozen self-supervised backbone, supervise ``M_t`` and ``Mb_t``.

The weights are ours (the paper's are not public). The frozen backbone is pluggable
(:data:`PATCH_BACKBONES`): ``self`` is a frozen copy of the model's own image encoder as
training starts (``self_stride8``: its stride-8 level, what the tiny model uses: its
token grid is 8 x 8), ``transformers`` loads any
local Hugging Face vision model with patch tokens (DINOv2/DINOv3, as the authors used).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import pathlib
import pickle
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from segmentation.robotseg.build import build_robotseg_video_predictor
from segmentation.robotseg.model import RobotSegBase as RobotSeg
from segmentation.robotseg.predictor import IMAGE_MEAN, IMAGE_STD
from segmentation.robotseg.training import (
    ClipFeatures,
    LossWeights,
    StepOutput,
    clip_losses,
    dice_loss,
    encode_clips,
    step_output,
    track_frames,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- losses


@dataclasses.dataclass
class LetWeights:
    """Weights of the LET terms beside the supervised loss (ours; the paper's are not public)."""

    cycle: float = 1.0
    semantic: float = 1.0
    patch: float = 1.0


@dataclasses.dataclass
class PatchPropagation:
    """Label propagation by patch similarity (the authors': context 7, radius 12, top-k 5, temperature 0.2)."""

    context: int = 7  # frames each propagation step looks back at (frame 0 always among them)
    radius: int = 12  # in patches: only neighbours this close (Chebyshev) can pass their label
    top_k: int = 5
    temperature: float = 0.2
    confidence: float = 0.5  # pseudo-mask pixels with |2P - 1| below this are ignored by the loss (ours)


def soft_mask_loss(logits: torch.Tensor, targets: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """Focal + dice loss of logits ``(B, 1, H, W)`` against soft or binary ``targets`` of the same shape (SAM 2's weights)."""
    focal = sigmoid_focal_loss(logits, targets, reduction="none").flatten(1).mean(-1)
    return (weights.focal * focal + weights.dice * dice_loss(logits, targets)[:, 0]).mean()


def cycle_consistency_loss(backward_logits0: torch.Tensor, g0: torch.Tensor, weights: LossWeights | None = None) -> torch.Tensor:
    """Cycle consistency: frame 0 predicted at the end of the backward pass (logits ``(B, 1, H, W)``) against ``G0``."""
    g0 = g0.float()
    if backward_logits0.shape[-2:] != g0.shape[-2:]:
        backward_logits0 = F.interpolate(backward_logits0, size=g0.shape[-2:], mode="bilinear", align_corners=False)
    return soft_mask_loss(backward_logits0, g0, weights or LossWeights())


def masked_mean(features: torch.Tensor, weights: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean of ``features`` ``(N, C, h, w)`` weighted by ``weights`` ``(N, 1, h, w)`` -> ``(N, C)``."""
    return (features * weights).sum((-2, -1)) / (weights.sum((-2, -1)) + eps)


def semantic_consistency_loss(features: torch.Tensor, probabilities: torch.Tensor, g0: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between each frame's masked feature mean and frame 0's under ``G0``, averaged over frames 1..T-1.

    ``features`` ``(B, T, C, h, w)`` (detached by the caller: the loss moves the
    predictions, not the features, so it cannot be met by collapsing the features),
    ``probabilities`` ``(B, T, 1, H, W)`` of the predictions, ``g0`` ``(B, 1, H, W)``.
    Masks are averaged down to the feature grid.
    """
    b, t, c, h, w = features.shape
    if t < 2:
        return features.new_zeros(())
    grid = (h, w)
    reference = masked_mean(features[:, 0], F.adaptive_avg_pool2d(g0.float(), grid)).detach()
    probs = F.adaptive_avg_pool2d(probabilities[:, 1:].flatten(0, 1).float(), grid)
    current = masked_mean(features[:, 1:].flatten(0, 1), probs)
    cosine = F.cosine_similarity(current, reference.repeat_interleave(t - 1, dim=0), dim=1, eps=1e-6)
    return (1 - cosine).mean()


@torch.no_grad()
def propagate_patch_labels(features: torch.Tensor, g0: torch.Tensor, settings: PatchPropagation | None = None) -> torch.Tensor:
    """Pseudo-masks ``(T, h, w)`` in [0, 1] propagated from ``g0`` ``(h, w)`` through patch features ``(T, C, h, w)``.

    For frame ``t`` each patch takes the ``top_k`` most similar (cosine) patches within
    ``radius`` in its context frames (frame 0 and the ``context - 1`` frames before
    ``t``), and the softmax (``temperature``) average of their labels: frame 0's
    ground truth and the later frames' own pseudo-labels.
    """
    s = settings or PatchPropagation()
    t, c, h, w = features.shape
    feats = F.normalize(features.float().flatten(2).transpose(1, 2), dim=-1)  # (T, hw, C)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()], 1).to(features.device)
    near = (coords[:, None, :] - coords[None, :, :]).abs().amax(-1) <= s.radius  # (hw, hw)
    labels = [g0.float().flatten().to(features.device)]
    for i in range(1, t):
        context = sorted({0, *range(max(1, i - s.context + 1), i)})
        keys = torch.cat([feats[j] for j in context])  # (n*hw, C)
        values = torch.cat([labels[j] for j in context])
        similarity = feats[i] @ keys.T  # (hw, n*hw)
        similarity = similarity.masked_fill(~near.repeat(1, len(context)), float("-inf"))
        top, index = similarity.topk(min(s.top_k, similarity.shape[1]), dim=1)
        weights = torch.softmax(top / s.temperature, dim=1)
        labels.append((weights * values[index]).sum(1))
    return torch.stack(labels).view(t, h, w)


def patch_consistency_loss(
    logits: Sequence[torch.Tensor], pseudo: torch.Tensor, weights: LossWeights | None = None, confidence: float = 0.0
) -> torch.Tensor:
    """Soft-mask loss of per-frame logits ``[(B, 1, H, W)]`` against pseudo-masks ``(len, B, 1, h, w)`` (resized up), averaged.

    With ``confidence > 0`` the pseudo-masks are binarised and pixels where ``|2P - 1| <
    confidence`` (the propagation was unsure) do not count.
    """
    if not logits:
        return pseudo.new_zeros(())
    weights = weights or LossWeights()
    losses = []
    for frame_logits, target in zip(logits, pseudo):
        target = F.interpolate(target.float(), size=frame_logits.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
        if confidence <= 0:
            losses.append(soft_mask_loss(frame_logits, target, weights))
            continue
        keep = ((2 * target - 1).abs() >= confidence).float()
        binary = (target > 0.5).float()
        focal = (sigmoid_focal_loss(frame_logits, binary, reduction="none") * keep).flatten(1).sum(-1) / keep.flatten(1).sum(
            -1
        ).clamp_min(1)
        probs = torch.sigmoid(frame_logits) * keep
        dice = 1 - (2 * (probs * binary).flatten(1).sum(-1) + 1) / (
            probs.flatten(1).sum(-1) + (binary * keep).flatten(1).sum(-1) + 1
        )
        losses.append((weights.focal * focal + weights.dice * dice).mean())
    return torch.stack(losses).mean()


# ---------------------------------------------------------------------- frozen patch backbones


PatchBackbone = Callable[[torch.Tensor], torch.Tensor]  # images (N, 3, S, S) in [0, 1] -> (N, C, h, w)


class FrozenImageEncoder(nn.Module):
    """A frozen copy of RobotSeg's image encoder: one FPN level's features as patch features.

    ``level`` -1 is stride 16 (the token grid), -2 stride 8: finer pseudo-masks, for small
    models (8 x 8 tokens at 128 px); memory grows with the grid's fourth power.
    """

    def __init__(self, model: RobotSeg, level: int = -1):
        super().__init__()
        self.level = level
        self.encoder = copy.deepcopy(model.image_encoder).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder((images - self.mean) / self.std)["backbone_fpn"][self.level].float()


class TransformersPatchBackbone(nn.Module):
    """A local Hugging Face vision transformer (DINOv2/DINOv3 folder): its last hidden patch tokens on a grid."""

    def __init__(self, path: str, image_size: int | None = None):
        super().__init__()
        from transformers import AutoModel

        self.model = AutoModel.from_pretrained(path).eval().requires_grad_(False)
        config = self.model.config
        self.patch = int(getattr(config, "patch_size", 16))
        self.size = image_size or int(getattr(config, "image_size", 224))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        side = self.size // self.patch
        images = F.interpolate(images, size=(side * self.patch, side * self.patch), mode="bilinear", align_corners=False)
        hidden = self.model(pixel_values=(images - self.mean) / self.std).last_hidden_state
        tokens = hidden[:, -side * side :]  # patch tokens come after the class (and register) tokens
        return tokens.transpose(1, 2).reshape(len(images), -1, side, side).float()


#: Frozen backbones for patch consistency: name -> factory(model, spec) -> PatchBackbone.
PATCH_BACKBONES: dict[str, Callable[[RobotSeg, str | None], PatchBackbone]] = {
    "self": lambda model, _spec: FrozenImageEncoder(model),
    "self_stride8": lambda model, _spec: FrozenImageEncoder(model, level=-2),
    "transformers": lambda _model, spec: TransformersPatchBackbone(spec),
}


def build_patch_backbone(name: str, model: RobotSeg, spec: str | None = None) -> PatchBackbone:
    """The frozen backbone ``name`` (``self``, or ``transformers`` with ``spec`` a local model folder)."""
    if name not in PATCH_BACKBONES:
        raise KeyError(f"unknown patch backbone {name!r}; known: {', '.join(sorted(PATCH_BACKBONES))}")
    if name == "transformers" and not spec:
        raise ValueError("patch backbone 'transformers' needs a local model folder (patch_backbone_path)")
    backbone = PATCH_BACKBONES[name](model, spec)
    return backbone.to(model.device) if isinstance(backbone, nn.Module) else backbone


# ---------------------------------------------------------------------- one training step


@dataclasses.dataclass
class ClipPass:
    """Forward and backward predictions of a batch of clips."""

    features: ClipFeatures  # all frames, (B * T) in clip-major order
    forward: list[StepOutput]  # frame t
    backward: list[StepOutput | None]  # frame t reached backward from T-1 (None at T-1)


def forward_backward(model: RobotSeg, images: torch.Tensor, target: str, backward: bool = True) -> ClipPass:
    """Automatic-mode forward pass over clips ``(B, T, 3, S, S)``, then backward from the last frame to frame 0."""
    clip = encode_clips(model, images)
    t = clip.length
    outputs = track_frames(model, clip, target, list(range(t)))
    back: list[StepOutput | None] = [None] * t
    if backward and t > 1:
        # The last forward frame becomes the conditioning memory of a backward pass to frame 0.
        seed = {"cond_frame_outputs": {t - 1: outputs[t - 1]}, "non_cond_frame_outputs": {}}
        reverse = track_frames(model, clip, target, list(range(t - 2, -1, -1)), output_dict=seed, reverse=True)
        back = [step_output(reverse[i], False) if i in reverse else None for i in range(t)]
    return ClipPass(clip, [step_output(outputs[i], i == 0) for i in range(t)], back)


@dataclasses.dataclass
class LetLosses:
    """Loss terms of one step (floats, for logs and learning curves)."""

    total: float
    supervised: float
    cycle: float
    semantic: float
    patch: float


def let_losses(
    model: RobotSeg,
    images: torch.Tensor,
    masks: torch.Tensor,
    labelled: torch.Tensor,
    target: str,
    weights: LetWeights | None,
    patch_backbone: PatchBackbone | None = None,
    patch_settings: PatchPropagation | None = None,
    loss_weights: LossWeights | None = None,
) -> tuple[torch.Tensor, LetLosses]:
    """The LET loss of clips ``images`` ``(B, T, 3, S, S)``; ``masks`` ``(B, T, S, S)`` count only where ``labelled`` ``(T,)``.

    ``labelled[0]`` must be True (G0). ``weights=None`` trains on labelled frames only (no consistency losses).
    """
    if not bool(labelled[0]):
        raise ValueError("LET needs the first frame of each clip labelled")
    loss_weights = loss_weights or LossWeights()
    b, t = images.shape[:2]
    use_let = weights is not None and t > 1
    clip = forward_backward(model, images, target, backward=use_let and (weights.cycle > 0 or weights.patch > 0))
    index = [i for i in range(t) if bool(labelled[i])]
    supervised, _ = clip_losses([clip.forward[i] for i in index], masks[:, index], loss_weights)
    zero = supervised.new_zeros(())
    cycle = semantic = patch = zero
    g0 = masks[:, :1].float()
    if use_let and weights.cycle > 0:
        cycle = cycle_consistency_loss(clip.backward[0].low_res_logits, g0, loss_weights)
    if use_let and weights.semantic > 0:
        vision = clip.features.vision.detach().view(b, t, *clip.features.vision.shape[1:])
        probs = torch.stack([torch.sigmoid(o.low_res_logits) for o in clip.forward], dim=1)
        semantic = semantic_consistency_loss(vision, probs, g0)
    if use_let and weights.patch > 0:
        if patch_backbone is None:
            raise ValueError("patch consistency needs a frozen patch backbone")
        with torch.no_grad():
            patch_features = patch_backbone(images.flatten(0, 1))
        patch_features = patch_features.view(b, t, *patch_features.shape[1:])
        grid = patch_features.shape[-2:]
        pseudo = torch.stack(
            [propagate_patch_labels(patch_features[k], F.adaptive_avg_pool2d(g0[k], grid)[0], patch_settings) for k in range(b)],
            dim=1,
        )[:, :, None]  # (T, B, 1, h, w)
        # Unlabelled frames only: forward 1..T-1, backward T-2..1 (backward frame 0 has G0, the cycle loss).
        logits = [clip.forward[i].low_res_logits for i in range(1, t) if not bool(labelled[i])]
        targets = [pseudo[i] for i in range(1, t) if not bool(labelled[i])]
        logits += [clip.backward[i].low_res_logits for i in range(1, t - 1) if not bool(labelled[i])]
        targets += [pseudo[i] for i in range(1, t - 1) if not bool(labelled[i])]
        if logits:
            patch = patch_consistency_loss(
                logits, torch.stack(targets), loss_weights, (patch_settings or PatchPropagation()).confidence
            )
    total = supervised
    if use_let:
        total = total + weights.cycle * cycle + weights.semantic * semantic + weights.patch * patch
    return total, LetLosses(*(float(v.detach()) for v in (total, supervised, cycle, semantic, patch)))


# ---------------------------------------------------------------------- data


@dataclasses.dataclass
class TrainClip:
    """One training video: frames, the target's masks, and which frames carry ground truth."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, H, W) bool; rows without ground truth are ignored
    labelled: np.ndarray  # (T,) bool


def label_every(clip: TrainClip, k: int) -> TrainClip:
    """Keep ground truth on frames 0, k, 2k, ... only (``k=0``: first labelled frame only; ``k=1``: as given)."""
    keep = np.zeros_like(clip.labelled)
    first = int(np.flatnonzero(clip.labelled)[0]) if clip.labelled.any() else 0
    if k <= 0:
        keep[first] = True
    else:
        keep[first::k] = True
    return dataclasses.replace(clip, labelled=clip.labelled & keep)


def sample_windows(
    clips: Sequence[TrainClip], batch: int, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of ``length``-frame windows starting on a labelled frame: ``(frames, masks, labelled)``, labelled common to the batch.

    Windows of one batch share their labelled positions (the positions labelled in all of them).
    """
    picks = rng.choice(len(clips), size=batch, replace=len(clips) < batch)
    frames, masks, labelled = [], [], []
    for index in picks:
        clip = clips[index]
        starts = [s for s in np.flatnonzero(clip.labelled) if s + length <= len(clip.frames)]
        if not starts:
            raise ValueError(
                f"clip {clip.name}: no labelled frame with {length} frames after it (clip length {len(clip.frames)})"
            )
        start = int(rng.choice(starts))
        frames.append(clip.frames[start : start + length])
        masks.append(clip.masks[start : start + length])
        labelled.append(clip.labelled[start : start + length])
    return np.stack(frames), np.stack(masks), np.logical_and.reduce(labelled)


def load_vrs_clips(split_dir: str | os.PathLike, target: str) -> list[TrainClip]:
    """Training clips of a VRS split (``image/<video>/*.jpg``, ``mask_gt/<video>/<000|001|002>/*.png``) for ``target``.

    Frames with a mask file are labelled (VRS train: the first frame only).
    """
    import cv2

    from segmentation.robotseg.video import load_frame_folder

    folder = {"arm": "000", "gripper": "001", "robot": "002"}[target]
    root = pathlib.Path(split_dir)
    clips = []
    for video in sorted(p for p in (root / "image").iterdir() if p.is_dir()) if (root / "image").is_dir() else []:
        frames = load_frame_folder(video)
        ids = sorted(int(p.stem) for p in video.iterdir() if p.stem.isdigit())
        position = {f: i for i, f in enumerate(ids)}
        masks = np.zeros(frames.shape[:3], bool)
        labelled = np.zeros(len(frames), bool)
        for path in sorted((root / "mask_gt" / video.name / folder).glob("*.png")):
            if int(path.stem) not in position:
                raise ValueError(f"{path}: no frame {path.stem} in {video}")
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None or mask.shape != frames.shape[1:3]:
                raise ValueError(f"{path}: unreadable, or not the frames' size {frames.shape[1:3]}")
            masks[position[int(path.stem)]] = mask > 0
            labelled[position[int(path.stem)]] = True
        if labelled.any():
            clips.append(TrainClip(video.name, frames, masks, labelled))
    if not clips:
        raise ValueError(f"{root}: no VRS video with {target} masks (image/<video>/, mask_gt/<video>/{folder}/)")
    return clips


# ---------------------------------------------------------------------- the training loop


@dataclasses.dataclass
class FinetuneOptions:
    """Everything ``oxe-augment finetune`` sets (see its ``--help``)."""

    out_dir: str
    config: str = "tiny"
    init_checkpoint: str | None = None  # RobotSeg or SAM 2.1 weights; None: random init
    target: str = "robot"
    steps: int = 1000
    batch_size: int = 2
    clip_length: int = 4
    label_every: int = 0  # 0: first frame only; k: every k-th frame of each clip
    lr: float = 1e-4
    weight_decay: float = 0.01
    let: bool = True
    cycle_weight: float = 1.0
    semantic_weight: float = 1.0
    patch_weight: float = 1.0
    patch_backbone: str = "self"
    patch_backbone_path: str | None = None
    patch: PatchPropagation = dataclasses.field(default_factory=PatchPropagation)
    freeze: tuple[str, ...] = ()  # parameter-name prefixes, e.g. image_encoder
    bf16: bool = False
    device: str = "cpu"
    seed: int = 0
    save_every: int = 200
    log_every: int = 20
    resume: bool = True

    @property
    def let_weights(self) -> LetWeights | None:
        return LetWeights(self.cycle_weight, self.semantic_weight, self.patch_weight) if self.let else None


CHECKPOINT_LAST = "last.pt"
#: Not "robotseg.pt": a fine-tuned model must not pass for the authors' checkpoint.
CHECKPOINT_FINAL = "robotseg_finetuned.pt"


def freeze_parameters(model: RobotSeg, prefixes: Sequence[str]) -> int:
    """Stop gradients of every parameter whose name starts with one of ``prefixes``; returns how many tensors."""
    names = [n for n, _ in model.named_parameters()]
    count = 0
    for prefix in prefixes:
        matched = [n for n in names if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not matched:
            raise ValueError(
                f"freeze: {prefix!r} names no parameter (top-level modules: {sorted({n.split('.')[0] for n in names})})"
            )
        count += len(matched)
    for name, parameter in model.named_parameters():
        if any(name == p or name.startswith(p.rstrip(".") + ".") for p in prefixes):
            parameter.requires_grad_(False)
    return count


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _batch_tensors(frames: np.ndarray, masks: np.ndarray, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    from segmentation.robotseg.video import preprocess

    b, t = frames.shape[:2]
    images = preprocess(frames.reshape(b * t, *frames.shape[2:]), size, device).view(b, t, 3, size, size)
    m = torch.from_numpy(masks.reshape(b * t, *masks.shape[2:])).to(device).float()[:, None]
    m = F.interpolate(m, size=(size, size), mode="nearest").view(b, t, size, size) > 0.5
    return images, m


def finetune(
    options: FinetuneOptions,
    clips: Sequence[TrainClip],
    evaluate: Callable[[RobotSeg, int], dict] | None = None,
    eval_every: int = 0,
) -> dict:
    """Train RobotSeg on ``clips`` per ``options``; saves ``last.pt`` every ``save_every`` steps and ``robotseg_finetuned.pt`` at the end.

    Resumes from ``out_dir/last.pt`` when it exists (``resume``). ``evaluate(model, step)``
    (every ``eval_every`` steps) adds its dict to the returned history. Returns
    ``{"history": [...], "seconds_per_step": s, "checkpoint": path}``.
    """
    o = options
    out = pathlib.Path(o.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(o.device)
    torch.manual_seed(o.seed)
    # The video predictor class: it trains as RobotSegBase does (track_step), and `evaluate` can run
    # the release's API on it; evaluation-only post-processing is inactive in training mode.
    model = build_robotseg_video_predictor(o.config, o.init_checkpoint, device="cpu", mode="train")
    model.to(device)
    clips = [label_every(c, o.label_every) for c in clips]
    # The frozen backbone is copied before any step, so patch targets never drift with training.
    backbone = build_patch_backbone(o.patch_backbone, model, o.patch_backbone_path) if o.let and o.patch_weight > 0 else None
    freeze_parameters(model, o.freeze)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=o.lr, weight_decay=o.weight_decay)
    step, history = 0, []
    last = out / CHECKPOINT_LAST
    if o.resume and last.exists():
        # weights_only: the output folder may hold a planted pickle; the state is plain tensors and containers.
        try:
            payload = torch.load(last, map_location=device, weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"{last}: not a resume state this tool wrote (it holds more than tensors and plain values; "
                f"not loaded): {str(e).splitlines()[0]}; delete it to start over"
            ) from None
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        step, history = int(payload["step"]), json.loads(payload.get("history_json", "[]"))
        logger.info("resumed from %s at step %d", last, step)
    elapsed, timed = 0.0, 0
    while step < o.steps:
        rng = np.random.default_rng([o.seed, step])  # per step: a resumed run draws what an uninterrupted one would
        frames, masks, labelled = sample_windows(clips, o.batch_size, o.clip_length, rng)
        images, truth = _batch_tensors(frames, masks, model.image_size, device)
        model.train()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, o.bf16):
            total, losses = let_losses(
                model, images, truth, torch.from_numpy(labelled), o.target, o.let_weights, backbone, o.patch
            )
        total.backward()
        optimizer.step()
        elapsed += time.perf_counter() - start
        timed += 1
        step += 1
        record = {"step": step, **dataclasses.asdict(losses)}
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == o.steps):
            record.update(evaluate(model, step))
        if step % max(o.log_every, 1) == 0 or "iou" in record:
            history.append(record)
            logger.info(
                "step %d: %s", step, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
            )
        if step % max(o.save_every, 1) == 0 or step == o.steps:
            save_training_state(model, optimizer, step, history, o, last)
    final = out / CHECKPOINT_FINAL
    save_model(model, final, o)
    return {"history": history, "seconds_per_step": elapsed / max(timed, 1), "checkpoint": str(final)}


def save_training_state(
    model: RobotSeg, optimizer: torch.optim.Optimizer, step: int, history: list, options: FinetuneOptions, path: pathlib.Path
) -> None:
    """``last.pt``: the model (loadable by ``build_robotseg``), the optimizer, the step and the options; written atomically.

    Only tensors, numbers, strings and plain containers, so it loads with ``weights_only=True``:
    the history (which may hold NumPy numbers from an evaluation) and the options go as JSON text.
    """
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "history_json": json.dumps(history, default=_json_number),
        "finetune_json": json.dumps(dataclasses.asdict(options), default=_json_number),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _json_number(value: Any) -> Any:
    """NumPy numbers and arrays (from an evaluation's dict) as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def save_model(model: RobotSeg, path: pathlib.Path, options: FinetuneOptions) -> None:
    """The final checkpoint in the release's format and key names, ``{"model": state_dict}`` (loads strictly).

    The options that made it go to ``finetune.json`` beside it, so the file holds nothing the
    release's loader would not expect.
    """
    torch.save({"model": model.state_dict()}, path)
    (path.parent / "finetune.json").write_text(json.dumps(dataclasses.asdict(options), indent=2) + "\n")
