"""Loading and saving RobotSeg weights: strict for RobotSeg checkpoints, reported for SAM 2.1 ones.

A checkpoint is read with ``torch.load(..., weights_only=True)`` (plain tensors only, no
code) and sorted into one of three kinds by its keys:

* **RobotSeg** (the release's ``robotseg.pt``, or one written by our ``finetune``): it has
  RobotSeg-only keys (:data:`ROBOTSEG_ONLY_KEYS`). It must fill every model key with the
  right shape and hold nothing else, exactly as the release's loader demands; anything
  else raises :class:`CheckpointError` naming the keys.
* **SAM 2.1** (``sam2.1_hiera_tiny.pt``): no RobotSeg-only key. Every SAM 2 key of the model
  must match; the 114 RobotSeg-only keys keep their (seeded) initialisation, and the
  :class:`CheckpointReport` lists them as missing.
* **an oxe-augment checkpoint from before the release's layout** (``prompt_generator.*``,
  ``memory_attention.layers.N.alpha``/``structure.*``): refused. Its structure branch and
  prompt generator computed something else, so no renaming turns it into RobotSeg weights.

Checkpoints are saved as the release's: ``{"model": state_dict}``.
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

#: Keys only RobotSeg has (the structure branch, the RPG, the decoder's robot tokens).
ROBOTSEG_ONLY_KEYS = re.compile(
    r"^(memory_attention\.layers\.\d+\.(structure_strength$|cross_attn_structure\.|ms_pyramid\.|structure_head\.)"
    r"|robot_prompt_generator\.|sam_mask_decoder\.robot_token_embedding\.)"
)
#: Keys of oxe-augment's RobotSeg before it followed the release (not convertible).
LEGACY_KEYS = re.compile(r"^(prompt_generator\.|memory_attention\.layers\.\d+\.(alpha$|structure\.))")
#: Wrappers that only prefix names: DistributedDataParallel, torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Where a wrapped checkpoint keeps its state dict (SAM 2 and the release use "model").
_STATE_DICT_ENTRIES = ("model", "state_dict", "model_state_dict", "module")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model."""


@dataclasses.dataclass
class CheckpointReport:
    """What loading a checkpoint did, key by key (model-side names)."""

    source: str
    kind: str  # robotseg | sam2
    matched: list[str]
    missing: list[str]  # in the model, not in the checkpoint (for sam2: the RobotSeg-only keys)
    unexpected: list[str]
    shape_mismatched: list[str]  # "key: checkpoint shape vs model shape"

    @property
    def ok(self) -> bool:
        """Whether every key matched in both directions with the right shape."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    @property
    def missing_sam2(self) -> list[str]:
        """Missing keys that belong to the SAM 2 part (empty after any successful load)."""
        return [k for k in self.missing if not ROBOTSEG_ONLY_KEYS.match(k)]

    def summary(self) -> str:
        """A few lines for a log or an error: counts, then the first keys of each problem."""
        lines = [
            f"checkpoint {self.source} ({self.kind}): {len(self.matched)} keys matched, {len(self.missing)} missing "
            f"({len(self.missing_sam2)} of them SAM 2 keys), {len(self.unexpected)} unexpected, "
            f"{len(self.shape_mismatched)} with another shape"
        ]
        for title, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatch", self.shape_mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        return "\n".join(lines)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint file (unwrapping ``{"model": ...}``), read with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable or holds no tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        try:  # mmap needs the zip format; older torch.save files load without it
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
            raise CheckpointError(f"checkpoint {path}: cannot be read by torch.load ({e})") from e
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path}: cannot be read by torch.load ({e})") from e
    return unwrap_state_dict(loaded, path)


def unwrap_state_dict(loaded: Any, source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """The tensor mapping inside ``loaded``: itself, or its ``model``/``state_dict``/... entry; wrapper prefixes dropped."""
    if isinstance(loaded, Mapping):
        for entry in _STATE_DICT_ENTRIES:
            if isinstance(loaded.get(entry), Mapping):
                return unwrap_state_dict(loaded[entry], source)
        tensors = {}
        for key, value in loaded.items():
            if isinstance(value, torch.Tensor):
                for prefix in _WRAPPER_PREFIXES:
                    key = key.removeprefix(prefix)
                tensors[key] = value
        if tensors:
            return tensors
    raise CheckpointError(
        f"checkpoint {source}: no state dict found (expected tensors, or one under {', '.join(_STATE_DICT_ENTRIES)})"
    )


def checkpoint_kind(state: Mapping[str, torch.Tensor]) -> str:
    """``robotseg``, ``legacy`` (our old layout) or ``sam2``, from the keys."""
    if any(LEGACY_KEYS.match(k) for k in state):
        return "legacy"
    if any(ROBOTSEG_ONLY_KEYS.match(k) for k in state):
        return "robotseg"
    return "sam2"


def load_checkpoint(model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Any]) -> CheckpointReport:
    """Load ``checkpoint`` (a path or a state dict) into ``model``; raise :class:`CheckpointError` unless it fits.

    See the module docstring for the three kinds. Nothing is loaded when it raises.
    """
    if isinstance(checkpoint, Mapping):
        source, state = "<state dict>", unwrap_state_dict(checkpoint)
    else:
        source, state = os.fspath(checkpoint), read_state_dict(checkpoint)
    kind = checkpoint_kind(state)
    if kind == "legacy":
        legacy = sorted(k for k in state if LEGACY_KEYS.match(k))
        raise CheckpointError(
            f"checkpoint {source}: written by oxe-augment before RobotSeg followed the release's layout "
            f"({len(legacy)} keys such as {legacy[0]}); its structure branch and prompt generator computed differently, "
            "so it cannot be converted. Use the release's robotseg.pt, or fine-tune again from it or from a SAM 2.1 checkpoint."
        )
    model_state = model.state_dict()
    matched, unexpected, mismatched = [], [], []
    for key, value in state.items():
        if key not in model_state:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(model_state[key].shape):
            mismatched.append(f"{key}: {tuple(value.shape)} vs {tuple(model_state[key].shape)}")
        else:
            matched.append(key)
    loaded = set(matched)
    missing = [k for k in model_state if k not in loaded and not any(m.startswith(k + ":") for m in mismatched)]
    report = CheckpointReport(source, kind, sorted(matched), missing, sorted(unexpected), mismatched)
    problem = report.unexpected or report.shape_mismatched or (report.missing if kind == "robotseg" else report.missing_sam2)
    if problem:
        what = "a RobotSeg checkpoint must fill every key" if kind == "robotseg" else "the SAM 2 part must match"
        raise CheckpointError(f"{what}:\n{report.summary()}")
    model.load_state_dict({k: state[k] for k in matched}, strict=kind == "robotseg")
    if kind == "sam2":
        logger.warning("%s\n  the RobotSeg-only keys keep their seeded initialisation", report.summary())
    else:
        logger.info(report.summary())
    return report


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Save ``model``'s weights in the release's format, ``{"model": state_dict}``."""
    torch.save({"model": model.state_dict()}, os.fspath(path))
