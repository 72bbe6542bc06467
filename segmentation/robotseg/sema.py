"""Structure-Enhanced Memory Associator (SEMA): SAM 2's memory attention plus a structure branch.

Each SEMA layer is SAM 2's ``MemoryAttentionLayer`` (the temporal branch: self-attention,
RoPE cross-attention to the memory bank, MLP) with a second branch that looks at the
frame's edges:

1. the tokens after the temporal cross-attention are multiplied by ``1 + edge``, where
   ``edge`` is an edge map of the raw RGB frame resized to the token grid;
2. depthwise-separable 3x3/5x5/7x7 convolutions, fused by a 1x1 convolution and GELU;
3. a separate cross-attention from these tokens to the memory;
4. a 3x3 convolution head gives a one-channel structure map ``S``.

The two branches meet as ``out = temporal * (1 + alpha * sigmoid(S))``. The structure
maps of every layer are returned (upsampled to image resolution) for supervision.

Parameter names of the temporal branch are SAM 2's, so a SAM 2.1 checkpoint fills them.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttentionLayer
from sam2.modeling.sam.transformer import RoPEAttention
from torch import nn

# kornia's Sobel normalises its kernel by 1/8; the same here keeps "sobel" on the scale
# kornia users expect.
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def kornia_available() -> bool:
    """Whether the optional ``kornia`` package (the ``edges`` extra) is installed."""
    return importlib.util.find_spec("kornia") is not None


@torch.no_grad()
def edge_map(images: torch.Tensor, grid: int, method: str = "auto", low: float = 0.1, high: float = 0.2) -> torch.Tensor:
    """Edges of raw RGB ``images`` (``(B, 3, H, W)`` in [0, 1]) on a ``grid x grid`` token grid, in [0, 1].

    ``method``: ``canny`` (kornia, thresholds ``low``/``high``), ``sobel`` (gradient
    magnitude, normalised per image) or ``auto`` (Canny when kornia is installed).
    """
    if method == "auto":
        method = "canny" if kornia_available() else "sobel"
    with torch.autocast(device_type=images.device.type, enabled=False):  # thresholds are float32 quantities
        return _edge_map(images.float(), grid, method, low, high)


def _edge_map(images: torch.Tensor, grid: int, method: str, low: float, high: float) -> torch.Tensor:
    if method == "canny":
        import kornia

        _, edges = kornia.filters.canny(images, low_threshold=low, high_threshold=high)
    elif method == "sobel":
        gray = (images * images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        kernel_x = _SOBEL_X.to(images.device)
        kernels = torch.stack([kernel_x, kernel_x.t()]).unsqueeze(1)
        gradients = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
        magnitude = gradients.pow(2).sum(1, keepdim=True).add(1e-12).sqrt()
        edges = magnitude / magnitude.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    else:
        raise ValueError(f"unknown edge method {method!r}; expected auto, canny or sobel")
    # Antialiased bilinear resizing averages the thin edges that fall inside each token's
    # footprint instead of sampling a few pixels of them.
    return F.interpolate(edges, size=(grid, grid), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


class StructureBranch(nn.Module):
    """Edge-weighted tokens -> multi-scale convolutions -> cross-attention to memory -> structure map."""

    def __init__(
        self,
        d_model: int,
        mem_dim: int,
        kernel_sizes: tuple[int, ...],
        num_heads: int,
        grid: int,
        rope_theta: float,
        dropout: float,
    ):
        super().__init__()
        self.scales = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(d_model, d_model, k, padding=k // 2, groups=d_model),  # depthwise
                nn.Conv2d(d_model, d_model, 1),  # pointwise
            )
            for k in kernel_sizes
        )
        self.fuse = nn.Conv2d(d_model * len(kernel_sizes), d_model, 1)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(d_model)
        self.cross_attn_memory = RoPEAttention(
            d_model,
            num_heads,
            downsample_rate=1,
            dropout=dropout,
            kv_in_dim=mem_dim,
            rope_theta=rope_theta,
            rope_k_repeat=True,
            feat_sizes=(grid, grid),
        )
        self.head = nn.Conv2d(d_model, 1, 3, padding=1)

    def forward(
        self,
        tokens: torch.Tensor,
        edges: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_k_exclude_rope: int,
    ) -> torch.Tensor:
        """Structure-map logits ``(B, 1, H, W)`` from tokens ``(B, H*W, C)`` and edges ``(B, H*W, 1)``."""
        b, n, c = tokens.shape
        side = int(round(n**0.5))
        x = (tokens * (1 + edges.to(tokens.dtype))).transpose(1, 2).reshape(b, c, side, side)
        x = self.act(self.fuse(torch.cat([scale(x) for scale in self.scales], dim=1)))
        t = x.flatten(2).transpose(1, 2)
        t = t + self.cross_attn_memory(q=self.norm(t), k=memory + memory_pos, v=memory, num_k_exclude_rope=num_k_exclude_rope)
        return self.head(t.transpose(1, 2).reshape(b, c, side, side))


class SemaLayer(MemoryAttentionLayer):
    """SAM 2's memory-attention layer (temporal branch) fused with a :class:`StructureBranch`."""

    def __init__(self, *, structure: StructureBranch, alpha_init: float, **sam2_layer_args):
        super().__init__(**sam2_layer_args)
        self.structure = structure
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
        edges: torch.Tensor,
        num_k_exclude_rope: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the fused tokens ``(B, N, C)`` and this layer's structure logits ``(B, 1, H, W)``."""
        tgt = self._forward_sa(tgt, query_pos)
        tgt = self._forward_ca(tgt, memory, query_pos, pos, num_k_exclude_rope)
        structure = self.structure(tgt, edges, memory, pos, num_k_exclude_rope)
        tgt2 = self.norm3(tgt)
        tgt2 = self.linear2(self.dropout(self.activation(self.linear1(tgt2))))
        temporal = tgt + self.dropout3(tgt2)
        gate = torch.sigmoid(structure).flatten(2).transpose(1, 2).to(temporal.dtype)
        return temporal * (1 + self.alpha * gate), structure


class SemaMemoryAttention(nn.Module):
    """A stack of :class:`SemaLayer` and a final norm (keys as SAM 2's ``MemoryAttention``).

    Works batch-first: current tokens ``(B, H*W, C)``, memory ``(B, M, mem_dim)``.
    """

    def __init__(self, layers: list[SemaLayer], d_model: int, pos_enc_at_input: bool = True, structure_upsample: int = 16):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)
        self.pos_enc_at_input = pos_enc_at_input
        self.structure_upsample = structure_upsample

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        edges: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Memory-conditioned tokens ``(B, H*W, C)`` and per-layer structure logits ``(B, 1, 16H, 16W)``.

        ``edges`` is ``(B, 1, H, W)``; object-pointer tokens (the last ``num_obj_ptr_tokens``
        of the memory) get no rotary encoding, as in SAM 2.
        """
        output = curr + 0.1 * curr_pos if self.pos_enc_at_input else curr
        edge_tokens = edges.flatten(2).transpose(1, 2)
        structures = []
        for layer in self.layers:
            output, structure = layer(output, memory, memory_pos, curr_pos, edge_tokens, num_obj_ptr_tokens)
            structures.append(
                F.interpolate(structure.float(), scale_factor=self.structure_upsample, mode="bilinear", align_corners=False)
            )
        return self.norm(output), structures
