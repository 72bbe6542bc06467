"""The Robot Prompt Generator (RPG): object tokens clustered from the memory bank, as the release computes them.

For every spatial memory frame (a ``grid x grid`` map of ``mem_dim``-channel memory
features) and its foreground (the frame's stored low-res mask, sigmoid, resized to the
grid, ``>= 0.5``), the foreground is split in two levels:

1. farthest-point sampling (FPS) on the foreground's grid coordinates seeds
   ``object_token_num`` macro regions, one pass of cosine k-means assigns every
   foreground token to a region;
2. inside each region, FPS seeds 4 micro clusters, one k-means pass, and the 4 micro
   prototypes (L2-normalised) are concatenated into one ``4 * mem_dim`` token.

A frame gives ``object_token_num`` tokens; a frame without foreground, and the first
frame (no memory at all), gives the learned ``no_memory_prompt_embeddings_fg`` instead.
FPS starts from a point drawn with ``torch.randint`` on the *global* RNG, exactly as the
release does, so results depend on ``torch.manual_seed`` (seed before prompting to
reproduce a run).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Micro clusters per macro region (hard-coded in the release).
MICRO_PER_REGION = 4


def farthest_points(coords: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``min(k, M)`` points of ``coords`` ``(M, 2)`` chosen greedily far apart; first one random."""
    m = coords.shape[0]
    if m == 0:
        return torch.empty(0, dtype=torch.long, device=coords.device)
    first = torch.randint(low=0, high=m, size=(1,), device=coords.device)
    chosen = [int(first.item())]
    nearest = torch.full((m,), float("inf"), device=coords.device)
    last = coords[first]
    for _ in range(1, min(k, m)):
        delta = coords - last
        nearest = torch.minimum(nearest, (delta * delta).sum(dim=-1))
        far = int(torch.argmax(nearest).item())
        chosen.append(far)
        last = coords[far : far + 1]
    return torch.tensor(chosen, dtype=torch.long, device=coords.device)


class RobotPromptGenerator(nn.Module):
    """Object tokens ``(B, frames * object_token_num, embed_dim)`` from a memory bank (the release's RPG).

    ``grid_size`` is the side of one memory frame's token grid (64 at 1024 px, the
    release's constant); smaller models set it to their own grid.
    """

    def __init__(
        self,
        embed_dim: int,
        object_token_num: int,
        dropout: float = 0.0,
        use_cosine: bool = True,
        mask_thresh: float = 0.5,
        grid_size: int = 64,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.object_token_num = object_token_num
        self.dropout = nn.Dropout(dropout)
        self.use_cosine = use_cosine
        self.mask_thresh = mask_thresh
        self.grid_size = grid_size
        self.no_memory_prompt_embeddings_fg = nn.Embedding(1, embed_dim)

    def _kmeans_once(
        self, feats: torch.Tensor, member: torch.Tensor, seeds: torch.Tensor, k: int
    ) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """One k-means pass over the tokens where ``member`` > 0, centres at ``seeds``: ``(prototypes, cluster masks)``."""
        members = torch.nonzero(member > 0, as_tuple=False).squeeze(-1)
        if members.numel() == 0:
            return None, None
        if seeds.numel() < k:  # fewer points than clusters: repeat the first seed
            pad = seeds[0].repeat(k - seeds.numel()) if seeds.numel() else torch.zeros(k - seeds.numel(), dtype=torch.long)
            seeds = torch.cat([seeds, pad.to(seeds.device)])
        centres = feats[seeds.clamp(0, feats.shape[0] - 1)]
        points = feats[members]
        if self.use_cosine:
            distance = 1.0 - F.normalize(points, dim=-1) @ F.normalize(centres, dim=-1).t()
        else:
            distance = torch.cdist(points, centres, p=2)
        assign = torch.argmin(distance, dim=-1)
        prototypes = torch.zeros(k, feats.shape[-1], device=feats.device)
        masks = []
        for ci in range(k):
            selected = assign == ci
            if selected.any():
                prototypes[ci] = points[selected].mean(dim=0)
                cluster = torch.zeros(feats.shape[0], dtype=torch.float32, device=feats.device)
                cluster[members[selected]] = 1.0
                masks.append(cluster)
            else:
                prototypes[ci] = centres[min(ci, centres.shape[0] - 1)]
                masks.append(torch.zeros_like(member))
        return prototypes, masks

    def frame_tokens(self, feats: torch.Tensor, foreground: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """``object_token_num`` tokens ``(K, 4 * C)`` of one memory frame: ``feats`` ``(HW, C)``, ``foreground`` ``(HW,)``."""
        k = self.object_token_num
        fg = (foreground >= self.mask_thresh).float()
        if fg.sum() < 1:
            return self.no_memory_prompt_embeddings_fg.weight.expand(k, MICRO_PER_REGION * feats.shape[-1])
        fg_index = torch.nonzero(fg.bool(), as_tuple=False).squeeze(-1)
        seeds = fg_index[farthest_points(coords[fg.bool()], k).clamp(0, fg_index.numel() - 1)]
        macro, regions = self._kmeans_once(feats, fg, seeds, k)
        tokens = []
        for i in range(k):
            region = regions[i] if regions[i].sum() >= 1 else fg
            micro = None
            if coords[region.bool()].numel() > 0:
                region_index = torch.nonzero(region.bool(), as_tuple=False).squeeze(-1)
                local = farthest_points(coords[region.bool()], MICRO_PER_REGION)
                micro, _ = self._kmeans_once(
                    feats, region, region_index[local.clamp(0, region_index.numel() - 1)], MICRO_PER_REGION
                )
            if micro is None:
                micro = macro[i].unsqueeze(0).repeat(MICRO_PER_REGION, 1)
            tokens.append(F.normalize(micro, dim=-1).reshape(1, -1))
        return torch.cat(tokens, dim=0)

    def forward(
        self,
        memory: torch.Tensor | None,
        memory_pos_embed: torch.Tensor | None,
        mask_fg: torch.Tensor | None,
        num_obj_ptr_tokens: int = 0,
        bs: int = 1,
    ) -> torch.Tensor:
        """Robot object tokens from ``memory`` ``(N, B, C)`` (spatial frames, then pointer tokens) and ``mask_fg`` ``(N, B[, 1])``.

        ``memory=None`` (a conditioning frame) gives the learned no-memory token ``(bs, K, D)``.
        ``memory_pos_embed`` is accepted for the release's signature and unused, as there.
        """
        k = self.object_token_num
        if memory is None:
            return self.no_memory_prompt_embeddings_fg.weight.expand(bs, k, -1)
        n, b, c = memory.shape
        if mask_fg.dim() == 3:
            mask_fg = mask_fg.squeeze(-1)
        if n <= num_obj_ptr_tokens:
            return self.no_memory_prompt_embeddings_fg.weight.expand(b, k, -1)
        per_frame = self.grid_size * self.grid_size
        spatial = n - num_obj_ptr_tokens
        if spatial % per_frame:
            raise ValueError(
                f"memory holds {spatial} spatial tokens, not a multiple of {per_frame} ({self.grid_size}^2) per frame"
            )
        frames = spatial // per_frame
        feats = memory[:spatial].view(frames, per_frame, b, c).permute(2, 0, 1, 3).contiguous()
        fg = mask_fg[:spatial].view(frames, per_frame, b).permute(2, 0, 1).contiguous()
        g = torch.arange(self.grid_size, device=memory.device, dtype=torch.float32)
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        coords = torch.stack([yy, xx], dim=-1).reshape(-1, 2)
        tokens = [torch.cat([self.frame_tokens(feats[i, t], fg[i, t], coords) for t in range(frames)]) for i in range(b)]
        return self.dropout(torch.stack(tokens, dim=0))
