"""Robot Prompt Generator (RPG): the "robot tokens" the mask decoder gets as sparse prompts.

Two kinds of tokens:

* **class tokens**: the requested target (``arm``, ``gripper``, ``robot``) picks its
  small bank of learned tokens;
* **object tokens**: for each frame in the memory bank, its foreground memory features
  are clustered in two levels (farthest-point seeds, one cosine k-means pass; then 4
  micro clusters per macro region the same way). The L2-normalised micro centroids of
  a macro region, concatenated, form one token (4 x 64 = 256 channels at the default
  size). With an empty memory bank a learned embedding stands in.

Object tokens depend only on one memory frame, so they are computed once, when that
frame's memory is encoded (:meth:`RobotPromptGenerator.object_tokens`), and reused by
every later frame that attends to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import trunc_normal_

from segmentation.labels import TARGETS


def farthest_point_seeds(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` farthest-point seeds among unit vectors ``x`` ``(N, C)``, cosine distance.

    The first seed is the point least similar to the mean direction, so the result is
    deterministic. With fewer than ``k`` distinct points, indices repeat.
    """
    first = torch.argmin(x @ x.mean(0))
    seeds = [first]
    distance = 1 - x @ x[first]
    for _ in range(k - 1):
        nxt = torch.argmax(distance)
        seeds.append(nxt)
        distance = torch.minimum(distance, 1 - x @ x[nxt])
    return torch.stack(seeds)


def cosine_kmeans_pass(x: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One k-means pass from seed indices: ``(centroids (k, C) unit length, assignment (N,))``.

    Points join the most similar seed; a centroid is the normalised mean of its points
    (a seed whose cluster is empty keeps its own direction).
    """
    centers = x[seeds]
    assignment = torch.argmax(x @ centers.t(), dim=1)
    sums = torch.zeros_like(centers).index_add(0, assignment, x)
    counts = torch.bincount(assignment, minlength=len(seeds)).unsqueeze(1)
    means = torch.where(counts > 0, sums / counts.clamp_min(1), centers)
    return F.normalize(means, dim=1), assignment


def two_level_tokens(x: torch.Tensor, num_macro: int, num_micro: int) -> torch.Tensor:
    """Object tokens ``(num_macro, num_micro * C)`` of the foreground features ``x`` ``(N, C)``."""
    x = F.normalize(x.float(), dim=1)
    _, macro = cosine_kmeans_pass(x, farthest_point_seeds(x, num_macro))
    tokens = []
    for region in range(num_macro):
        members = x[macro == region]
        if len(members) == 0:  # the seed itself belongs to its cluster, but stay safe
            members = x
        micro, _ = cosine_kmeans_pass(members, farthest_point_seeds(members, num_micro))
        tokens.append(micro.flatten())
    return torch.stack(tokens)


class RobotPromptGenerator(nn.Module):
    """Class tokens + clustered object tokens, as ``(B, N, d_model)`` sparse prompt embeddings."""

    def __init__(
        self,
        d_model: int,
        mem_dim: int,
        class_bank_size: int,
        num_macro: int,
        num_micro: int,
        foreground_threshold: float,
        project_object_tokens: bool,
        targets: tuple[str, ...] = TARGETS,
    ):
        super().__init__()
        if not project_object_tokens and num_micro * mem_dim != d_model:
            raise ValueError(f"object tokens have {num_micro} x {mem_dim} channels, not d_model={d_model}: enable the projection")
        self.targets = tuple(targets)
        self.num_macro = num_macro
        self.num_micro = num_micro
        self.foreground_threshold = foreground_threshold
        self.class_tokens = nn.Parameter(torch.zeros(len(self.targets), class_bank_size, d_model))
        trunc_normal_(self.class_tokens, std=0.02)
        self.empty_memory_token = nn.Embedding(1, d_model)
        self.object_proj = nn.Linear(num_micro * mem_dim, d_model) if project_object_tokens else nn.Identity()

    def object_tokens(self, memory_features: torch.Tensor, mask_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Object tokens of one memory frame: ``(B, K, num_micro * mem_dim)`` and validity ``(B, K)``.

        ``memory_features`` ``(B, mem_dim, H, W)``; ``mask_probs`` ``(B, 1, H, W)`` is the
        frame's mask probability on the same grid. A frame without foreground gives
        invalid tokens, which :meth:`forward` replaces by the empty-memory embedding.
        """
        b, c = memory_features.shape[:2]
        tokens = memory_features.new_zeros(b, self.num_macro, self.num_micro * c, dtype=torch.float32)
        valid = torch.zeros(b, self.num_macro, dtype=torch.bool, device=memory_features.device)
        foreground = mask_probs[:, 0] > self.foreground_threshold
        for i in range(b):
            points = memory_features[i].flatten(1).t()[foreground[i].flatten()]
            if len(points) == 0:
                continue
            tokens[i] = two_level_tokens(points, self.num_macro, self.num_micro)
            valid[i] = True
        return tokens, valid

    def forward(
        self, target: str, batch: int, object_tokens: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Robot tokens ``(B, bank + N, d_model)`` for ``target``.

        ``object_tokens`` ``(B, N, num_micro * mem_dim)`` with ``valid`` ``(B, N)`` come from
        the memory frames the current frame attends to; ``None`` (empty memory bank)
        gives the learned empty-memory embedding.
        """
        if target not in self.targets:
            raise ValueError(f"unknown target {target!r}; expected one of {self.targets}")
        class_tokens = self.class_tokens[self.targets.index(target)].unsqueeze(0).expand(batch, -1, -1)
        empty = self.empty_memory_token.weight.unsqueeze(0)
        if object_tokens is None or object_tokens.shape[1] == 0:
            objects = empty.expand(batch, -1, -1)
        else:
            projected = self.object_proj(object_tokens.to(class_tokens.dtype))
            objects = torch.where(valid.unsqueeze(-1), projected, empty.to(projected.dtype))
        return torch.cat([class_tokens, objects.to(class_tokens.dtype)], dim=1)
