"""The memory bank of one tracked object: SAM 2's frame selection, with a fixed size.

SAM 2 keeps every frame's output and, for the current frame, picks the conditioning
(prompted) frames, the last ``num_maskmem - 1`` frames and up to
``max_obj_ptrs_in_encoder - 1`` earlier object pointers. The bank below holds exactly
what those picks can reach and drops the rest as it goes, so memory does not grow with
the length of an episode.

When prompts start after frame 0, SAM 2's backward pass (from the first prompted frame
down to frame 0) reads the forward pass's first frames after the prompt; the bank keeps
exactly those (``keep_for_reverse``) until the backward pass is done with them.
"""

from __future__ import annotations

import dataclasses

import torch
from sam2.modeling.sam2_utils import select_closest_cond_frames


@dataclasses.dataclass
class MemoryEntry:
    """What a processed frame leaves in the bank."""

    features: torch.Tensor  # (B, mem_dim, H, W), the memory encoder's output
    pos: torch.Tensor  # (B, mem_dim, H, W), its positional encoding
    obj_ptr: torch.Tensor  # (B, C), the decoder's object pointer
    object_tokens: torch.Tensor  # (B, K, num_micro * mem_dim), RPG's clustered tokens
    object_valid: torch.Tensor  # (B, K) bool: False where the frame had no foreground


@dataclasses.dataclass
class MemorySelection:
    """The entries the current frame attends to, with SAM 2's temporal positions."""

    spatial: list[tuple[int, MemoryEntry]]  # (t_pos, entry); t_pos 0 = conditioning frame
    pointers: list[tuple[int, torch.Tensor]]  # (signed frame distance, obj_ptr)
    max_pointer_distance: int  # normaliser of the pointer distances


class MemoryBank:
    """Conditioning frames plus the recent memories and object pointers selection can still reach."""

    def __init__(self, num_maskmem: int, max_obj_ptrs: int, max_cond_frames: int, num_frames: int, first_cond_frame: int = 0):
        self.num_maskmem = num_maskmem
        self.max_obj_ptrs = min(num_frames, max_obj_ptrs)
        self.max_cond_frames = max_cond_frames
        self.cond: dict[int, MemoryEntry] = {}
        self.recent: dict[int, MemoryEntry] = {}
        self.pointers: dict[int, torch.Tensor] = {}
        self.reverse = False
        reach = max(num_maskmem - 1, self.max_obj_ptrs - 1)
        # The backward pass from the first prompted frame c reads frames c+1 ... c+reach.
        self.keep_for_reverse = set(range(first_cond_frame + 1, first_cond_frame + 1 + reach)) if first_cond_frame > 0 else set()

    def add(self, frame_idx: int, entry: MemoryEntry, is_cond: bool) -> None:
        """Store a frame's memory, then drop what no later frame can select."""
        if is_cond:
            self.cond[frame_idx] = entry
            return
        self.recent[frame_idx] = entry
        self.pointers[frame_idx] = entry.obj_ptr
        # The next frame selects memories up to num_maskmem - 1 frames back and pointers
        # up to max_obj_ptrs - 1 back; anything farther from this frame is dead.
        for t in list(self.recent):
            if abs(frame_idx - t) > self.num_maskmem - 2 and self._droppable(t):
                del self.recent[t]
        for t in list(self.pointers):
            if abs(frame_idx - t) > self.max_obj_ptrs - 2 and self._droppable(t):
                del self.pointers[t]

    def _droppable(self, t: int) -> bool:
        return self.reverse or t not in self.keep_for_reverse

    def start_reverse(self) -> None:
        """Turn to tracking backwards in time (frames before the first prompted frame)."""
        self.reverse = True

    def select(self, frame_idx: int) -> MemorySelection:
        """SAM 2's choice of memories for ``frame_idx`` (see ``SAM2Base._prepare_memory_conditioned_features``)."""
        step = -1 if self.reverse else 1
        selected, _ = select_closest_cond_frames(frame_idx, self.cond, self.max_cond_frames)
        spatial = [(0, entry) for entry in selected.values()]
        for t_pos in range(1, self.num_maskmem):
            previous = frame_idx - (self.num_maskmem - t_pos) * step
            if previous in self.recent:
                spatial.append((t_pos, self.recent[previous]))
        # Only pointers from conditioning frames in the past (SAM 2.1: only_obj_ptrs_in_the_past_for_eval).
        pointers = [((frame_idx - t) * step, entry.obj_ptr) for t, entry in selected.items() if (t - frame_idx) * step <= 0]
        for distance in range(1, self.max_obj_ptrs):
            t = frame_idx - distance * step
            if t in self.pointers:
                pointers.append((distance, self.pointers[t]))
        return MemorySelection(spatial, pointers, max(self.max_obj_ptrs - 1, 1))
