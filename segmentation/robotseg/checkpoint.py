"""Loading and saving RobotSeg weights, with a report of what matched.

The official ``robotseg.pt`` cannot be downloaded on our machines, so its key names are
not known for certain. Loading therefore never fails silently: every load returns a
:class:`CheckpointReport` (matched, missing, unexpected, shape-mismatched and renamed
keys), logs its summary, and ``strict=True`` raises on any mismatch. Known and
plausible naming differences are rewritten by the rules in :data:`KEY_RENAMES`.

A SAM 2.1 checkpoint (``sam2.1_hiera_tiny.pt``) fills every SAM 2 weight; only the
RobotSeg-only keys (:data:`ROBOTSEG_ONLY_KEYS`) stay missing, which the report lists
separately (:attr:`CheckpointReport.missing_sam2`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Checkpoint-key rewrites, applied in order: ``(regex, replacement)``. The first three
#: undo wrappers (DistributedDataParallel, a ``model.`` prefix, ``torch.compile``); the
#: rest map plausible names of the official release's SEMA and RPG modules onto ours.
KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^module\.", ""),
    (r"^model\.", ""),
    (r"^_orig_mod\.", ""),
    (
        r"^memory_attention\.layers\.(\d+)\.(sema|structure_branch|struct_branch|structure_enhance)\.",
        r"memory_attention.layers.\1.structure.",
    ),
    (r"^memory_attention\.layers\.(\d+)\.(fusion_alpha|sema_alpha|structure_alpha)$", r"memory_attention.layers.\1.alpha"),
    (r"^(robot_prompt_generator|rpg|robot_prompt_gen|prompt_gen)\.", "prompt_generator."),
    (r"^prompt_generator\.(class_token_bank|class_embed|class_embeddings)$", "prompt_generator.class_tokens"),
    (r"^prompt_generator\.(no_memory_embed|no_mem_token|empty_token|empty_embed)\.", "prompt_generator.empty_memory_token."),
    (r"^prompt_generator\.(obj_proj|object_token_proj)\.", "prompt_generator.object_proj."),
)

#: Keys that exist in RobotSeg but not in SAM 2.1 (SEMA's structure branch and RPG).
ROBOTSEG_ONLY_KEYS = re.compile(r"^(memory_attention\.layers\.\d+\.(structure\.|alpha$)|prompt_generator\.)")

#: Where a wrapped checkpoint keeps its state dict (SAM 2 uses "model").
_STATE_DICT_ENTRIES = ("model", "state_dict", "model_state_dict", "module")


class CheckpointError(RuntimeError):
    """A checkpoint does not fit the model (strict mode) or cannot be read."""


@dataclasses.dataclass
class CheckpointReport:
    """What loading a checkpoint did, key by key (model-side names)."""

    source: str
    matched: list[str]
    missing: list[str]  # in the model, not in the checkpoint
    unexpected: list[str]  # in the checkpoint (after renaming), not in the model
    shape_mismatched: list[str]  # "key: checkpoint shape vs model shape"; not loaded
    renamed: dict[str, str]  # checkpoint key -> model key, for keys a rule rewrote

    @property
    def ok(self) -> bool:
        """Whether every key matched in both directions with the right shape."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    @property
    def missing_sam2(self) -> list[str]:
        """Missing keys that belong to the SAM 2 part (should be empty for a SAM 2.1 checkpoint)."""
        return [k for k in self.missing if not ROBOTSEG_ONLY_KEYS.match(k)]

    def summary(self) -> str:
        """A few lines for a log: counts, then the first keys of each problem."""
        lines = [
            f"checkpoint {self.source}: {len(self.matched)} keys matched, {len(self.missing)} missing "
            f"({len(self.missing_sam2)} of them SAM 2 keys), {len(self.unexpected)} unexpected, "
            f"{len(self.shape_mismatched)} with another shape, {len(self.renamed)} renamed"
        ]
        for title, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatch", self.shape_mismatched),
            ("renamed", [f"{a} -> {b}" for a, b in self.renamed.items()]),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        return "\n".join(lines)


def canonical_key(key: str) -> str:
    """``key`` after every rule of :data:`KEY_RENAMES`."""
    for pattern, replacement in KEY_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint file (unwrapping ``{"model": ...}`` and similar).

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable or
    holds no tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        # mmap needs the zip format; older torch.save files load without it.
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
            raise CheckpointError(f"checkpoint {path}: cannot be read by torch.load ({e})") from e
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path}: cannot be read by torch.load ({e})") from e
    return unwrap_state_dict(loaded, path)


def unwrap_state_dict(loaded: Any, source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """The tensor mapping inside ``loaded``: itself, or its ``model``/``state_dict``/... entry."""
    if isinstance(loaded, Mapping):
        for entry in _STATE_DICT_ENTRIES:
            if isinstance(loaded.get(entry), Mapping):
                return unwrap_state_dict(loaded[entry], source)
        tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(
        f"checkpoint {source}: no state dict found (expected tensors, or one under {', '.join(_STATE_DICT_ENTRIES)})"
    )


def load_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, Any],
    strict: bool = False,
) -> CheckpointReport:
    """Load ``checkpoint`` (a path or a state dict) into ``model`` and report what matched.

    Keys are renamed by :data:`KEY_RENAMES`; tensors whose shape differs are skipped.
    With ``strict`` any missing, unexpected or mis-shaped key raises
    :class:`CheckpointError` before anything is loaded.
    """
    if isinstance(checkpoint, Mapping):
        source, state = "<state dict>", unwrap_state_dict(checkpoint)
    else:
        source, state = os.fspath(checkpoint), read_state_dict(checkpoint)
    model_state = model.state_dict()
    to_load: dict[str, torch.Tensor] = {}
    renamed: dict[str, str] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for key, value in state.items():
        name = canonical_key(key)
        if name != key:
            renamed[key] = name
        if name not in model_state:
            unexpected.append(name)
        elif tuple(value.shape) != tuple(model_state[name].shape):
            mismatched.append(f"{name}: {tuple(value.shape)} vs {tuple(model_state[name].shape)}")
        else:
            to_load[name] = value
    missing = [k for k in model_state if k not in to_load and not any(m.startswith(k + ":") for m in mismatched)]
    report = CheckpointReport(source, sorted(to_load), missing, sorted(unexpected), mismatched, renamed)
    if strict and not report.ok:
        raise CheckpointError(f"strict load failed:\n{report.summary()}")
    model.load_state_dict(to_load, strict=False)
    (logger.info if report.ok else logger.warning)(report.summary())
    return report


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Save ``model``'s weights as ``{"model": state_dict, "config": {...}}`` (SAM 2's layout)."""
    payload: dict[str, Any] = {"model": model.state_dict()}
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        payload["config"] = dataclasses.asdict(config)
    torch.save(payload, os.fspath(path))
