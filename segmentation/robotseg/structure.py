"""RobotSeg's memory attention: SAM 2's layer plus the release's structure branch (SEMA).

Module names and shapes follow the release (``robotseg/modeling/memory_attention_with_structure.py``)
so that ``robotseg.pt`` loads strictly: per layer ``structure_strength`` (a 0-d parameter),
``cross_attn_structure`` (a RoPE attention like ``cross_attn_image``), ``ms_pyramid``
(``conv3/conv5/conv7`` each ``dw``/``pw``/``norm``, then ``fuse``) and ``structure_head``.
The temporal branch is ``sam2``'s :class:`~sam2.modeling.memory_attention.MemoryAttentionLayer`
unchanged; only the structure branch and the gate are written here.

What one layer computes (the release's order, quirks included):

1. SAM 2's self-attention and cross-attention to the memory -> ``tgt``; its MLP -> ``tgt_main``.
2. Edges of the frame the predictor passes as "raw image": the *ImageNet-normalised* tensor,
   divided by 255 when its maximum exceeds 1.5, turned grey and clamped to [0, 1], then
   kornia's Canny (low 0.1, high 0.2). Resized bilinearly to the token grid.
3. ``tgt`` (before the MLP) times ``1 + edges`` -> multi-scale pyramid -> cross-attention to
   the memory (keys with their positions; object-pointer tokens excluded from RoPE).
4. ``structure_head`` -> one map, upsampled x16, sigmoid, resized back to the grid: the gate
   ``tgt_main * (1 + structure_strength * gate)``.
"""

from __future__ import annotations

import math

import kornia.filters
import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from torch import nn

#: Canny thresholds hard-coded in the release.
CANNY_LOW = 0.1
CANNY_HIGH = 0.2
#: The structure map is upsampled by the backbone stride before gating (release constant).
STRUCTURE_UPSAMPLE = 16


class DepthwiseSeparableConv(nn.Module):
    """Depthwise conv, GELU, pointwise conv, GroupNorm, GELU (the release's order)."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False)
        self.pw = nn.Conv2d(channels, channels, kernel_size=1)
        self.act = nn.GELU()
        self.norm = nn.GroupNorm(num_groups=max(1, channels // 8) if channels >= 8 else 1, num_channels=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pw(self.act(self.dw(x)))))


class MultiScalePyramid(nn.Module):
    """3x3, 5x5 and 7x7 depthwise-separable branches, concatenated, fused by a 1x1 conv and GELU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv3 = DepthwiseSeparableConv(channels, 3)
        self.conv5 = DepthwiseSeparableConv(channels, 5)
        self.conv7 = DepthwiseSeparableConv(channels, 7)
        self.fuse = nn.Conv2d(3 * channels, channels, kernel_size=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fuse(torch.cat([self.conv3(x), self.conv5(x), self.conv7(x)], dim=1)))


def grid_shape(num_tokens: int) -> tuple[int, int]:
    """The token grid of a layer input: square when possible (as the release infers it)."""
    h = int(math.sqrt(num_tokens))
    if h * h == num_tokens:
        return h, h
    w = num_tokens // h
    return (h, w) if h * w == num_tokens else (1, num_tokens)


def gray_for_edges(raw_image: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` grey image in [0, 1] from the predictor's frame tensor, as the release converts it.

    A float tensor whose maximum exceeds 1.5 counts as 0..255 (the check is on the whole
    batch; the normalised frames the predictor passes usually trigger it).
    """
    if raw_image.dim() != 4:
        raise ValueError(f"raw_image must be (B, C, H, W), got {tuple(raw_image.shape)}")
    x = raw_image
    if not x.dtype.is_floating_point:
        x = x.float() / 255.0
    elif x.max() > 1.5:
        x = x / 255.0
    channels = x.shape[1]
    if channels >= 3:
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    elif channels == 1:
        gray = x
    else:
        gray = x.mean(dim=1, keepdim=True)
    return gray.clamp(0, 1)


@torch.no_grad()
def edge_map(raw_image: torch.Tensor) -> torch.Tensor:
    """Canny edges ``(B, 1, H, W)`` in {0, 1} (kornia, thresholds 0.1 / 0.2)."""
    _, edges = kornia.filters.canny(gray_for_edges(raw_image), low_threshold=CANNY_LOW, high_threshold=CANNY_HIGH)
    return edges.float().clamp(0, 1)


class StructureMemoryAttentionLayer(MemoryAttentionLayer):
    """SAM 2's memory-attention layer with the release's structure branch and gate."""

    def __init__(self, *, cross_attention_structure: nn.Module, structure_strength: float = 1.0, **sam2_layer_args):
        super().__init__(**sam2_layer_args)
        self.cross_attn_structure = cross_attention_structure
        d_model = sam2_layer_args["d_model"]
        self.ms_pyramid = MultiScalePyramid(d_model)
        self.structure_head = nn.Conv2d(d_model, 1, kernel_size=3, padding=1)
        self.structure_strength = nn.Parameter(torch.tensor(float(structure_strength)))

    def structure_map(
        self,
        edges: torch.Tensor,
        tokens: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor | None,
        memory_pos: torch.Tensor | None,
        num_k_exclude_rope: int,
    ) -> torch.Tensor:
        """The layer's structure logits ``(B, 1, 16 h, 16 w)`` from ``tokens`` ``(B, N, C)`` (batch first)."""
        b, n, c = tokens.shape
        h, w = grid_shape(n)
        small = F.interpolate(edges, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
        features = tokens.permute(0, 2, 1).contiguous().view(b, c, h, w) * (1.0 + small)
        queries = self.ms_pyramid(features).flatten(2).permute(0, 2, 1).contiguous()
        if query_pos is not None and self.pos_enc_at_cross_attn_queries:
            queries = queries + query_pos
        keys = memory + memory_pos if memory_pos is not None and self.pos_enc_at_cross_attn_keys else memory
        extra = {"num_k_exclude_rope": num_k_exclude_rope} if num_k_exclude_rope > 0 else {}
        attended = self.cross_attn_structure(q=queries, k=keys, v=memory, **extra)
        structure = self.structure_head(attended.permute(0, 2, 1).contiguous().view(b, c, h, w))
        return F.interpolate(structure, scale_factor=STRUCTURE_UPSAMPLE, mode="bilinear", align_corners=False)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
        num_k_exclude_rope: int = 0,
        edges: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, structure logits)``; batch-first ``(B, N, C)`` tokens. ``edges=None`` skips the branch."""
        tgt = self._forward_sa(tgt, query_pos)
        tgt = self._forward_ca(tgt, memory, query_pos, pos, num_k_exclude_rope)
        main = tgt + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(self.norm3(tgt))))))
        b, n, c = main.shape
        h, w = grid_shape(n)
        if edges is None:
            return main, main.new_zeros(b, 1, STRUCTURE_UPSAMPLE * h, STRUCTURE_UPSAMPLE * w)
        structure = self.structure_map(edges, tgt, memory, query_pos, pos, num_k_exclude_rope)
        gate = F.interpolate(torch.sigmoid(structure), size=(h, w), mode="bilinear", align_corners=False)
        gated = main.permute(0, 2, 1).contiguous().view(b, c, h, w) * (1.0 + self.structure_strength * gate)
        return gated.flatten(2).permute(0, 2, 1).contiguous(), structure


class StructureMemoryAttention(MemoryAttention):
    """SAM 2's memory-attention stack whose layers also see the frame's edges.

    :meth:`forward` takes the release's arguments (``raw_image`` first) and returns the
    conditioned tokens and the layers' structure maps ``(B, L, 16 h, 16 w)``.
    """

    def forward(
        self,
        raw_image: torch.Tensor | None,
        curr: torch.Tensor,
        memory: torch.Tensor,
        curr_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        num_obj_ptr_tokens: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(curr, list):
            (curr,), (curr_pos,) = curr, curr_pos
        if curr.shape[1] != memory.shape[1]:
            raise ValueError("the frame tokens and the memory must have the same batch size")
        output = curr + 0.1 * curr_pos if self.pos_enc_at_input and curr_pos is not None else curr
        if self.batch_first:  # (N, B, C) -> (B, N, C); contiguous as in the release
            output, memory = output.transpose(0, 1).contiguous(), memory.transpose(0, 1).contiguous()
            curr_pos = None if curr_pos is None else curr_pos.transpose(0, 1).contiguous()
            memory_pos = None if memory_pos is None else memory_pos.transpose(0, 1).contiguous()
        # One edge map per frame, shared by the layers (the release recomputes the same map in each).
        edges = None if raw_image is None else edge_map(raw_image)
        structures = []
        for layer in self.layers:
            output, structure = layer(
                tgt=output,
                memory=memory,
                pos=memory_pos,
                query_pos=curr_pos,
                num_k_exclude_rope=num_obj_ptr_tokens,
                edges=edges,
            )
            structures.append(structure)
        output = self.norm(output)
        if self.batch_first:
            output = output.transpose(0, 1).contiguous()
        return output, torch.cat(structures, dim=1)
