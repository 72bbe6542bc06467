"""The RobotSeg model: SAM 2.1's modules composed with SEMA and the Robot Prompt Generator.

:class:`RobotSeg` holds the ``sam2`` package's modules under SAM 2's own attribute
names (``image_encoder``, ``memory_attention``, ``memory_encoder``, ``sam_prompt_encoder``,
``sam_mask_decoder``, ``obj_ptr_proj``...), so a SAM 2.1 Hiera-T state dict fills every
SAM 2 weight. It does not subclass ``SAM2Base``: the per-frame glue (memory
conditioning, prompt assembly, memory encoding) is written here because RobotSeg
changes it (edge maps into the memory attention, robot tokens into the decoder).

One frame of one tracked object goes through:

1. :meth:`RobotSeg.encode_images` (batched over frames, shared by all targets),
2. :meth:`RobotSeg.step` with a :class:`MemorySelection` from the object's bank
   (``None`` on a conditioning frame, which SAM 2.1 segments without memory),
3. :meth:`RobotSeg.encode_memory`, whose :class:`MemoryEntry` goes into the bank.

``segmentation.robotseg.video`` drives this over whole clips; ``training`` does the
same with gradients.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from sam2.modeling.sam.transformer import RoPEAttention, TwoWayTransformer
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from sam2.modeling.sam2_utils import MLP, get_1d_sine_pe
from torch import nn
from torch.nn.init import trunc_normal_

from segmentation.robotseg.config import RobotSegConfig, robotseg_config
from segmentation.robotseg.memory import MemoryEntry, MemorySelection
from segmentation.robotseg.prompt_generator import RobotPromptGenerator
from segmentation.robotseg.sema import SemaLayer, SemaMemoryAttention, StructureBranch, edge_map


@dataclasses.dataclass
class FrameFeatures:
    """Image-encoder output for a batch of frames (or the same frame for several objects)."""

    vision: torch.Tensor  # (B, C, H, W): stride-16 features, the memory attention's input
    vision_pos: torch.Tensor  # (B, C, H, W): their sine positional encoding
    high_res: list[torch.Tensor]  # [(B, C/8, 4H, 4W), (B, C/4, 2H, 2W)], already projected for the decoder
    edges: torch.Tensor  # (B, 1, H, W): SEMA's edge map of the raw frame

    def frame(self, index: int) -> "FrameFeatures":
        """The features of one frame, as a batch of one."""
        return self.take(slice(index, index + 1))

    def take(self, index: slice | list[int] | torch.Tensor) -> "FrameFeatures":
        """The features of the frames at ``index`` (a slice keeps views, no copy)."""
        return FrameFeatures(self.vision[index], self.vision_pos[index], [h[index] for h in self.high_res], self.edges[index])

    def __len__(self) -> int:
        return self.vision.shape[0]


@dataclasses.dataclass
class PointPrompt:
    """Points (and a box as two corner points, labels 2 and 3) in model-input pixels."""

    coords: torch.Tensor  # (B, P, 2) float, x y in [0, image_size)
    labels: torch.Tensor  # (B, P) int: 1 positive, 0 negative, 2/3 box corners


@dataclasses.dataclass
class StepOutput:
    """One frame's prediction for one tracked object (batch ``B``)."""

    low_res_logits: torch.Tensor  # (B, 1, 4H, 4W), the chosen mask
    high_res_logits: torch.Tensor  # (B, 1, S, S) at model-input size
    multimask_logits: torch.Tensor  # (B, M, 4H, 4W): all candidates (M = 3 or 1)
    ious: torch.Tensor  # (B, M): predicted IoU of each candidate
    obj_ptr: torch.Tensor  # (B, C)
    object_score_logits: torch.Tensor  # (B, 1): > 0 when the object is visible
    structure_logits: list[torch.Tensor]  # per SEMA layer (B, 1, S, S); empty on memory-less frames


class RobotSeg(nn.Module):
    """SAM 2.1 + SEMA + RPG. Build it with :func:`build_robotseg`."""

    def __init__(
        self,
        config: RobotSegConfig,
        image_encoder: ImageEncoder,
        memory_attention: SemaMemoryAttention,
        memory_encoder: MemoryEncoder,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: MaskDecoder,
        prompt_generator: RobotPromptGenerator,
    ):
        super().__init__()
        self.config = config
        d, mem = config.d_model, config.mem_dim
        self.image_encoder = image_encoder
        self.memory_attention = memory_attention
        self.memory_encoder = memory_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.prompt_generator = prompt_generator
        # SAM 2.1's loose parameters, same names and shapes as in SAM2Base.
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))  # unused with directly_add_no_mem_embed; kept for checkpoints
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem))
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr, self.no_obj_embed_spatial):
            trunc_normal_(p, std=0.02)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)  # mask prompts (not used here); kept for checkpoints
        self.obj_ptr_proj = MLP(d, d, d, 3)
        self.obj_ptr_tpos_proj = nn.Linear(d, mem)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)
        self._compiled_image_encoder: Callable | None = None

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def enable_compile(self, backend: str = "inductor") -> None:
        """Compile the image encoder's forward (the bulk of the FLOPs) with ``torch.compile``.

        The compiled function is kept beside the module, so state-dict keys don't change.
        Batches must keep one shape to avoid recompiles (the video engine pads chunks).
        ``backend`` is ``torch.compile``'s (``"eager"`` traces without generating code: tests).
        """
        if self._compiled_image_encoder is None:
            # sam2's position encodings fill a cache on their first call at each size. Filled
            # inside the compiled graph, that cache fails a guard on the next call and the
            # encoder is compiled again; one eager pass at the model's size fills it first.
            # (sam2 warms it itself only on CUDA and only at its own default size, 1024.)
            parameter = next(self.image_encoder.parameters())
            size = self.config.image_size
            with torch.no_grad():
                self.image_encoder(torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype))
            self._compiled_image_encoder = torch.compile(self.image_encoder.forward, dynamic=False, backend=backend)

    # ------------------------------------------------------------------ per frame

    def encode_images(self, images: torch.Tensor) -> FrameFeatures:
        """Features of ``images`` ``(N, 3, S, S)``, RGB in [0, 1] at model-input size."""
        normalized = (images - self.pixel_mean) / self.pixel_std
        encoder = self._compiled_image_encoder or self.image_encoder
        out = encoder(normalized)
        fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        # As SAM2Base.forward_image: project the two high-resolution levels once per frame.
        high_res = [self.sam_mask_decoder.conv_s0(fpn[0]), self.sam_mask_decoder.conv_s1(fpn[1])]
        s = self.config
        edges = edge_map(images, s.token_grid, s.sema.edge_method, s.sema.canny_low, s.sema.canny_high)
        return FrameFeatures(fpn[-1], pos[-1], high_res, edges.to(fpn[-1].dtype))

    def memory_context(self, selection: MemorySelection) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Memory tokens ``(B, M, mem_dim)``, their positions and the number of pointer tokens.

        Same layout as ``SAM2Base._prepare_memory_conditioned_features``: spatial memories
        with temporal encodings, then object pointers split into ``C / mem_dim`` tokens.
        """
        c, mem = self.config.d_model, self.config.mem_dim
        memory, memory_pos = [], []
        for t_pos, entry in selection.spatial:
            memory.append(entry.features.flatten(2).transpose(1, 2))
            tpos = self.maskmem_tpos_enc[self.config.num_maskmem - t_pos - 1].view(1, 1, mem)
            memory_pos.append(entry.pos.flatten(2).transpose(1, 2) + tpos)
        num_ptr_tokens = 0
        if selection.pointers:
            distances, ptrs = zip(*selection.pointers)
            ptrs = torch.stack(ptrs, dim=1)  # (B, P, C)
            b, p = ptrs.shape[:2]
            positions = torch.tensor(distances, device=ptrs.device, dtype=torch.float32) / selection.max_pointer_distance
            ptr_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(positions, dim=c).to(ptrs.dtype))  # (P, mem)
            split = c // mem
            ptrs = ptrs.reshape(b, p * split, mem)  # each pointer becomes `split` tokens, in order
            ptr_pos = ptr_pos.repeat_interleave(split, dim=0).unsqueeze(0).expand(b, -1, -1)
            memory.append(ptrs)
            memory_pos.append(ptr_pos)
            num_ptr_tokens = p * split
        return torch.cat(memory, dim=1), torch.cat(memory_pos, dim=1), num_ptr_tokens

    def step(
        self,
        frame: FrameFeatures,
        target: str,
        selection: MemorySelection | None = None,
        prompt: PointPrompt | None = None,
    ) -> StepOutput:
        """Segment ``target`` in one frame. ``selection=None`` marks a conditioning frame (no memory)."""
        cfg = self.config
        b, c, h, w = frame.vision.shape
        structures: list[torch.Tensor] = []
        object_tokens = object_valid = None
        if selection is None:
            # SAM 2.1 (directly_add_no_mem_embed): a conditioning frame skips memory attention.
            pix = frame.vision + self.no_mem_embed.view(1, c, 1, 1)
        else:
            memory, memory_pos, num_ptr_tokens = self.memory_context(selection)
            tokens, structures = self.memory_attention(
                frame.vision.flatten(2).transpose(1, 2),
                frame.vision_pos.flatten(2).transpose(1, 2),
                memory,
                memory_pos,
                frame.edges,
                num_ptr_tokens,
            )
            pix = tokens.transpose(1, 2).reshape(b, c, h, w)
            object_tokens = torch.cat([e.object_tokens for _, e in selection.spatial], dim=1)
            object_valid = torch.cat([e.object_valid for _, e in selection.spatial], dim=1)

        if prompt is None:  # SAM 2 pads an absent prompt with one "not a point"
            coords = torch.zeros(b, 1, 2, device=pix.device)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=pix.device)
            num_points = 0
        else:
            coords, labels = prompt.coords, prompt.labels
            num_points = labels.shape[1]
        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        if prompt is None or cfg.prompt_generator.use_with_prompts:
            robot_tokens = self.prompt_generator(target, b, object_tokens, object_valid)
            sparse = torch.cat([sparse, robot_tokens.to(sparse.dtype)], dim=1)

        multimask = (
            cfg.multimask_output_in_sam
            and (selection is None or cfg.multimask_output_for_tracking)
            and cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num
        )
        low_multi, ious, out_tokens, object_scores = self.sam_mask_decoder(
            image_embeddings=pix,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=frame.high_res,
        )
        appearing = object_scores > 0
        if not self.training:
            # As SAM 2 (hard no-object masks); skipped in training so that masks keep their
            # gradient while the object-score head is still learning.
            low_multi = torch.where(appearing[:, :, None, None], low_multi, NO_OBJ_SCORE)
        low_multi = low_multi.float()
        if multimask:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=pix.device)
            low = low_multi[rows, best].unsqueeze(1)
            token = out_tokens[rows, best] if out_tokens.size(1) > 1 else out_tokens[:, 0]
        else:
            low, token = low_multi, out_tokens[:, 0]
        high = F.interpolate(low, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=False)
        # Object pointer with SAM 2.1's occlusion handling (fixed_no_obj_ptr, hard lambda).
        visible = appearing.to(token.dtype)
        obj_ptr = visible * self.obj_ptr_proj(token) + (1 - visible) * self.no_obj_ptr
        return StepOutput(low, high, low_multi, ious.float(), obj_ptr, object_scores.float(), structures)

    def encode_memory(self, frame: FrameFeatures, output: StepOutput, from_points: bool) -> MemoryEntry:
        """The memory a processed frame leaves: SAM 2's memory encoding plus RPG's object tokens."""
        cfg = self.config
        if from_points and cfg.binarize_mask_from_pts_for_mem_enc and not self.training:
            mask = (output.high_res_logits > 0).float()
        else:
            mask = torch.sigmoid(output.high_res_logits)
        mask_for_memory = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        encoded = self.memory_encoder(frame.vision, mask_for_memory.to(frame.vision.dtype), skip_mask_sigmoid=True)
        features, pos = encoded["vision_features"], encoded["vision_pos_enc"][-1]
        hidden = (output.object_score_logits <= 0).to(features.dtype)[:, :, None, None]
        features = features + hidden * self.no_obj_embed_spatial[..., None, None].to(features.dtype)
        grid_probs = F.adaptive_avg_pool2d(mask.float(), features.shape[-2:])
        tokens, valid = self.prompt_generator.object_tokens(features, grid_probs)
        return MemoryEntry(features, pos, output.obj_ptr, tokens, valid)

    # ------------------------------------------------------------------ whole videos

    def segment_video(self, frames: np.ndarray, targets=("robot",), prompts=None, options=None) -> np.ndarray:
        """Label maps ``(T, H, W)`` uint8 for ``frames`` ``(T, H, W, 3)`` uint8; see :func:`segmentation.robotseg.video.segment_video`.

        One method call per clip, so the model also works behind Beam's ``large_model`` proxy.
        """
        from segmentation.robotseg.video import segment_video

        return segment_video(self, frames, targets=targets, prompts=prompts, options=options)


# ---------------------------------------------------------------------- building


def _sine_position(channels: int) -> PositionEmbeddingSine:
    return PositionEmbeddingSine(num_pos_feats=channels, normalize=True, scale=None, temperature=10000)


def _rope_attention(cfg: RobotSegConfig, kv_in_dim: int | None, k_repeat: bool) -> RoPEAttention:
    return RoPEAttention(
        embedding_dim=cfg.d_model,
        num_heads=cfg.memory_heads,
        downsample_rate=1,
        dropout=cfg.memory_dropout,
        kv_in_dim=kv_in_dim,
        rope_theta=cfg.rope_theta,
        rope_k_repeat=k_repeat,
        feat_sizes=(cfg.token_grid, cfg.token_grid),
    )


def robotseg_from_config(cfg: RobotSegConfig) -> RobotSeg:
    """A randomly initialised :class:`RobotSeg` built from ``sam2`` modules per ``cfg``."""
    d, mem, grid = cfg.d_model, cfg.mem_dim, cfg.token_grid
    h = cfg.hiera
    image_encoder = ImageEncoder(
        trunk=Hiera(
            embed_dim=h.embed_dim,
            num_heads=h.num_heads,
            stages=h.stages,
            global_att_blocks=h.global_att_blocks,
            window_spec=h.window_spec,
            window_pos_embed_bkg_spatial_size=h.window_pos_embed_bkg_spatial_size,
        ),
        neck=FpnNeck(
            position_encoding=_sine_position(d),
            d_model=d,
            backbone_channel_list=h.channel_list,
            fpn_top_down_levels=list(cfg.fpn_top_down_levels),
            fpn_interp_model="nearest",
        ),
        scalp=1,
    )
    layers = [
        SemaLayer(
            structure=StructureBranch(
                d, mem, cfg.sema.kernel_sizes, cfg.sema.attention_heads, grid, cfg.rope_theta, cfg.memory_dropout
            ),
            alpha_init=cfg.sema.alpha_init,
            activation="relu",
            cross_attention=_rope_attention(cfg, kv_in_dim=mem, k_repeat=True),
            d_model=d,
            dim_feedforward=cfg.memory_feedforward,
            dropout=cfg.memory_dropout,
            pos_enc_at_attn=False,
            pos_enc_at_cross_attn_keys=True,
            pos_enc_at_cross_attn_queries=False,
            self_attention=_rope_attention(cfg, kv_in_dim=None, k_repeat=False),
        )
        for _ in range(cfg.memory_layers)
    ]
    memory_attention = SemaMemoryAttention(layers, d, pos_enc_at_input=True, structure_upsample=cfg.sema.structure_upsample)
    memory_encoder = MemoryEncoder(
        out_dim=mem,
        mask_downsampler=MaskDownSampler(
            embed_dim=d, kernel_size=3, stride=cfg.mask_downsampler_stride, padding=1, total_stride=cfg.backbone_stride
        ),
        fuser=Fuser(
            CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True), num_layers=cfg.fuser_layers
        ),
        position_encoding=_sine_position(mem),
        in_dim=d,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=d,
        image_embedding_size=(grid, grid),
        input_image_size=(cfg.image_size, cfg.image_size),
        mask_in_chans=cfg.mask_in_chans,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=cfg.decoder_depth, embedding_dim=d, mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_heads
        ),
        transformer_dim=d,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        use_high_res_features=True,
        iou_prediction_use_sigmoid=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
        dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
    )
    p = cfg.prompt_generator
    prompt_generator = RobotPromptGenerator(
        d_model=d,
        mem_dim=mem,
        class_bank_size=p.class_bank_size,
        num_macro=p.num_macro,
        num_micro=p.num_micro,
        foreground_threshold=p.foreground_threshold,
        project_object_tokens=p.project_object_tokens,
    )
    return RobotSeg(cfg, image_encoder, memory_attention, memory_encoder, prompt_encoder, mask_decoder, prompt_generator)


def build_robotseg(
    config: str | RobotSegConfig = "robotseg_hiera_t",
    checkpoint: str | None = None,
    device: str | torch.device = "cpu",
    strict: bool = False,
) -> RobotSeg:
    """Build RobotSeg in eval mode, optionally loading a RobotSeg or SAM 2.1 checkpoint.

    ``config`` is a name (``robotseg_hiera_t``, ``tiny``) or a :class:`RobotSegConfig`.
    Loading reports matched / missing / unexpected keys (see
    :func:`segmentation.robotseg.checkpoint.load_checkpoint`); ``strict`` raises on any mismatch.
    """
    from segmentation.robotseg.checkpoint import load_checkpoint

    cfg = robotseg_config(config) if isinstance(config, str) else config
    model = robotseg_from_config(cfg)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, strict=strict)
    return model.to(device).eval()
