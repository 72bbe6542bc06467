"""The memory bank of one tracked object: SAM 2's frame selection, with a fixed size.

SAM 2 keeps every frame's output and, for the current frame, picks the conditioning
(prompted) frames, the last ``num_maskmem - 1`` frames and up to
``max_obj_ptrs_in_encoder - 1`` earlier object pointers. The bank below holds exactly
what those picks can reach and drops the rest as it goes, so memory does not grow with
the length of an episode.

One difference from SAM 2: when tracking turns to the frames before the first prompted
frame (the reverse pass), the forward pass's recent frames are forgotten, not reused.
"""

from __future__ import annotations

import collections
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
    """Conditioning frames plus bounded queues of recent memories and object pointers."""

    def __init__(self, num_maskmem: int, max_obj_ptrs: int, max_cond_frames: int, num_frames: int):
        self.num_maskmem = num_maskmem
        self.max_obj_ptrs = min(num_frames, max_obj_ptrs)
        self.max_cond_frames = max_cond_frames
        self.cond: dict[int, MemoryEntry] = {}
        self.recent: collections.OrderedDict[int, MemoryEntry] = collections.OrderedDict()
        self.pointers: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self.reverse = False

    @property
    def empty(self) -> bool:
        return not self.cond

    def add(self, frame_idx: int, entry: MemoryEntry, is_cond: bool) -> None:
        """Store a frame's memory; drops the oldest recent frames beyond what selection can reach."""
        if is_cond:
            self.cond[frame_idx] = entry
            return
        self.recent[frame_idx] = entry
        self.pointers[frame_idx] = entry.obj_ptr
        while len(self.recent) > max(self.num_maskmem - 1, 0):
            self.recent.popitem(last=False)
        while len(self.pointers) > max(self.max_obj_ptrs - 1, 0):
            self.pointers.popitem(last=False)

    def start_reverse(self) -> None:
        """Turn to tracking backwards in time (frames before the first prompted frame)."""
        self.reverse = True
        self.recent.clear()
        self.pointers.clear()

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
