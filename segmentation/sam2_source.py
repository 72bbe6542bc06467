"""The ``sam2`` mask source: plain SAM 2 / SAM 2.1 video tracking from stored clicks and boxes.

Any ``sam2`` package config (``sam2_config``, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``)
and checkpoint (``sam2.1_hiera_tiny.pt``...) works; the model is built by
``sam2.build_sam.build_sam2_video_predictor`` (with its post-processing settings) and
driven frame by frame through ``SAM2Base.track_step`` by RobotSeg's video engine
(``segmentation.robotseg.video``): in-memory frames, each frame encoded once in chunks,
a memory bank of fixed size, outputs at each frame's own size.

Prompts come from a sidecar JSON file (``prompts``), per episode, camera and frame, in
pixel coordinates of the stored frame::

    {"<episode_key>": {"<camera>": {"<frame_index>": {
        "points": [[x, y], ...], "labels": [1, ...], "box": [x0, y0, x1, y1], "target": "robot"}}}}

A frame may hold a list of such objects, one per target (``robot``, ``arm``, ``gripper``);
``labels`` default to 1; each prompt needs points or a box. Every prompted target is
tracked through the whole clip (forward from its first prompted frame, then backward);
its mask gets that target's label (robot 1, arm 2, gripper 3; the finer part wins
where they overlap). The format is defined in ``segmentation.robotseg.prompts``.

Clips without prompts: ``missing_prompts: error`` (default) fails the episode with a
message naming it; ``empty`` gives all-background label maps.

``sam2_overrides`` change numbers of the sam2 config (``++model.image_size=512``); tests
use them to build a small randomly initialised SAM 2 (with ``allow_random_init``). The
config is built by Hydra, which instantiates whatever class a ``_target_`` names, so a
recipe (which may come from a stranger) gets no free-form Hydra: :func:`check_sam2_overrides`
accepts only ``[++]model.<existing.path>=<number, bool or list of numbers>``, and
``sam2_config`` must name a config file shipped inside the ``sam2`` package.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import re
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from segmentation.robotseg.model import PointPrompt
from segmentation.robotseg.prompts import FramePrompt, PromptFile, PromptFileError, load_prompt_file
from segmentation.robotseg.source import check_checkpoint, check_device, inference_options, resolve_device
from segmentation.robotseg.video import InferenceOptions, label_maps_from_masks, track_video, tracks_for
from segmentation.sources import CameraClip, MaskSource, SourceConfigError

MISSING_PROMPTS = ("error", "empty")


@dataclasses.dataclass
class Sam2Options:
    """``segmentation:`` keys of ``source: sam2``."""

    prompts: str | None = None  # prompt file (JSON, see the module docstring); required
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"  # a config name inside the sam2 package
    checkpoint: str | None = None  # e.g. sam2.1_hiera_tiny.pt; required unless allow_random_init
    allow_random_init: bool = False  # tests only: run without a checkpoint
    # Number settings of the config: "[++]model.a.b=<int, float, bool or [numbers]>" (see check_sam2_overrides).
    sam2_overrides: list[str] = dataclasses.field(default_factory=list)
    missing_prompts: str = "error"  # clip without prompts: error | empty
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    chunk_size: int = 8
    bf16: bool = True
    compile: bool = False
    refine: bool = False
    refine_radius: int = 4
    refine_eps: float = 0.001


_OVERRIDE = re.compile(r"(?P<plus>\+\+)?(?P<path>model(?:\.[A-Za-z][A-Za-z0-9_]*)+)=(?P<value>.*)", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_CONFIG_NAME = re.compile(r"configs/[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*\.yaml")


def check_sam2_overrides(overrides: list[str]) -> list[str]:
    """The overrides if each only sets a number of the model config; else ``SourceConfigError``.

    Each is ``model.<path>=<value>`` (``++`` in front allowed, as Hydra spells "set"):
    path parts are plain names (no ``_target_`` or other ``_``-keys, so no class can be
    named), and the value is an integer, a float, ``true``/``false`` or a flat list of
    numbers (no strings, so no ``${...}`` interpolation or resolver). That the path exists
    in the chosen config is checked by :func:`check_sam2_config` (it needs the config).
    Hydra's ``+key`` (add a node) and ``~key`` (delete) are refused.
    The message names ``segmentation.sam2_overrides[i]``.
    """
    for index, override in enumerate(overrides):
        where = f"segmentation.sam2_overrides[{index}]"
        if not isinstance(override, str):
            raise SourceConfigError(f"{where}: expected a string model.<path>=<number>, got {type(override).__name__}")
        match = _OVERRIDE.fullmatch(override.strip())
        if match is None:
            raise SourceConfigError(
                f"{where}: {_cut(override)} is not allowed; only model.<path>=<number, true/false or [numbers]> "
                "(optionally with ++ in front) sets the sam2 config: no +additions, ~deletions, _target_ or other "
                "_-keys, no strings or ${...}"
            )
        if not _plain_value(match["value"].strip()):
            raise SourceConfigError(
                f"{where}: the value of {match['path']} must be a number, true/false or a list of numbers, "
                f"got {_cut(match['value'])}"
            )
    return list(overrides)


def _plain_value(text: str) -> bool:
    if text in ("true", "false", "True", "False") or _NUMBER.fullmatch(text):
        return True
    if text.startswith("[") and text.endswith("]"):
        items = [item.strip() for item in text[1:-1].split(",")]
        return items == [""] or all(_NUMBER.fullmatch(item) for item in items)
    return False


def _cut(text: str, limit: int = 200) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def check_sam2_config(config: str, overrides: list[str]) -> None:
    """``config`` is a file shipped in the ``sam2`` package and every override sets a number in it.

    Composing the config with Hydra (without instantiating anything) finds each
    override's path: its parent must be a section of the config (a number can be added
    there, as a keyword of that section's own sam2 class), and a path that holds a
    section or a string cannot be replaced by a number.
    """
    spec = importlib.util.find_spec("sam2")
    package = pathlib.Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    if package is None:
        raise SourceConfigError("segmentation.source: sam2 needs the sam2 package (pip install sam2)")
    if not _CONFIG_NAME.fullmatch(config) or ".." in config.split("/") or not (package / config).is_file():
        raise SourceConfigError(
            f"segmentation.sam2_config: {_cut(config)} is not a config file of the sam2 package "
            f"(e.g. configs/sam2.1/sam2.1_hiera_t.yaml, under {package})"
        )
    check_sam2_overrides(overrides)
    import sam2  # noqa: F401 - initialises Hydra's config search path for compose()
    from hydra import compose
    from omegaconf import OmegaConf

    try:
        base = compose(config_name=config)
    except Exception as e:  # noqa: BLE001 - any config problem is reported the same way
        raise SourceConfigError(f"segmentation.sam2_config: cannot load {config!r}: {e}") from None
    for index, override in enumerate(overrides):
        path = _OVERRIDE.fullmatch(override.strip())["path"]
        where = f"segmentation.sam2_overrides[{index}]: {path}"
        parent_path, _ = path.rsplit(".", 1)
        parent = OmegaConf.select(base, parent_path, default=_ABSENT, throw_on_missing=False)
        if parent is _ABSENT or not OmegaConf.is_dict(parent):
            raise SourceConfigError(f"{where}: {parent_path} is not a section of {config}")
        current = OmegaConf.select(base, path, default=_ABSENT, throw_on_missing=False)
        if current is _ABSENT:
            continue  # a new number for the section's class (e.g. Hiera's window_spec): still a number
        if OmegaConf.is_dict(current) or (OmegaConf.is_list(current) and any(OmegaConf.is_config(i) for i in current)):
            raise SourceConfigError(f"{where}: a section of {config}, not a number; it cannot be replaced")
        if isinstance(current, str):
            raise SourceConfigError(f"{where}: a string setting of {config}, not a number")
    try:
        compose(config_name=config, overrides=list(overrides))
    except Exception as e:  # noqa: BLE001
        raise SourceConfigError(f"segmentation.sam2_overrides: cannot apply them to {config!r}: {e}") from None


_ABSENT = object()


class Sam2Tracker:
    """:class:`segmentation.robotseg.video.FrameTracker` over a ``SAM2Base`` model.

    Each target keeps SAM 2's ``output_dict``, trimmed as tracking goes to what
    ``track_step`` can still reach (the last ``num_maskmem - 1`` memories, the last
    ``max_obj_ptrs_in_encoder - 1`` object pointers, the conditioning frames, and the
    forward frames the backward pass will read), so its size does not grow with the clip.
    """

    @dataclasses.dataclass
    class State:
        output_dict: dict[str, dict[int, dict[str, Any]]]
        num_frames: int
        keep_for_reverse: set[int]  # forward frames the backward pass will read (see MemoryBank)
        reverse: bool = False

    def __init__(self, sam: nn.Module, forward_image: Callable | None = None):
        self.sam = sam
        self.image_size = sam.image_size
        device = next(sam.parameters()).device
        self._mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
        self._std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
        self._forward_image = forward_image or sam.forward_image  # e.g. a torch.compile'd one

    def encode(self, images: torch.Tensor) -> list[tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]]:
        backbone_out = self._forward_image((images - self._mean) / self._std)
        _, feats, pos, sizes = self.sam._prepare_backbone_features(backbone_out)
        # Flattened features are (HW, N, C): frame i is column i.
        return [([f[:, i : i + 1] for f in feats], [p[:, i : i + 1] for p in pos], sizes) for i in range(images.shape[0])]

    def start(self, target: str, num_frames: int, first_cond_frame: int) -> "Sam2Tracker.State":
        reach = max(self.sam.num_maskmem - 1, min(num_frames, self.sam.max_obj_ptrs_in_encoder) - 1)
        keep = set(range(first_cond_frame + 1, first_cond_frame + 1 + reach)) if first_cond_frame > 0 else set()
        return self.State({"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}, num_frames, keep)

    def step(self, state: "Sam2Tracker.State", frame: int, features, prompt: PointPrompt | None, kind: str) -> torch.Tensor:
        if kind == "cond" and prompt is None:
            raise ValueError(f"SAM 2 needs a click or box on conditioning frame {frame}")
        if kind == "reverse":
            state.reverse = True
        feats, pos, sizes = features
        points = None if prompt is None else {"point_coords": prompt.coords, "point_labels": prompt.labels}
        out = self.sam.track_step(
            frame_idx=frame,
            is_init_cond_frame=kind == "cond",
            current_vision_feats=feats,
            current_vision_pos_embeds=pos,
            feat_sizes=sizes,
            point_inputs=points,
            mask_inputs=None,
            output_dict=state.output_dict,
            num_frames=state.num_frames,
            track_in_reverse=kind == "reverse",
            run_mem_encoder=True,
        )
        # Stored memories are bfloat16, as SAM2VideoPredictor stores them.
        memory = out["maskmem_features"].to(torch.bfloat16)
        kept = {"maskmem_features": memory, "maskmem_pos_enc": out["maskmem_pos_enc"], "obj_ptr": out["obj_ptr"]}
        if kind == "cond":
            state.output_dict["cond_frame_outputs"][frame] = kept
        else:
            self._trim_and_add(state, frame, kept)
        return out["pred_masks"]  # low-res logits, resized once to the frame size (as SAM 2's predictor)

    def _trim_and_add(self, state: "Sam2Tracker.State", frame: int, kept: dict[str, Any]) -> None:
        recent = state.output_dict["non_cond_frame_outputs"]
        recent[frame] = kept
        # What the next frame can still read: memories up to num_maskmem - 1 frames back,
        # pointers up to max_obj_ptrs - 1 back. Farther outputs shrink to their pointer, then go.
        reach_memory = self.sam.num_maskmem - 2
        reach_pointers = max(min(state.num_frames, self.sam.max_obj_ptrs_in_encoder) - 2, reach_memory)
        for t in list(recent):
            if not state.reverse and t in state.keep_for_reverse:
                continue
            distance = abs(frame - t)
            if distance > reach_pointers:
                del recent[t]
            elif distance > reach_memory and "maskmem_features" in recent[t]:
                recent[t] = {"obj_ptr": recent[t]["obj_ptr"]}


class Sam2VideoModel(nn.Module):
    """A SAM 2 model with one method per clip (works behind Beam's ``large_model`` proxy)."""

    def __init__(self, sam: nn.Module):
        super().__init__()
        self.sam = sam
        self._compiled_forward_image: Callable | None = None

    def segment_video(
        self, frames: np.ndarray, prompts: list[FramePrompt], options: InferenceOptions | None = None
    ) -> np.ndarray:
        """Label maps ``(T, H, W)`` uint8 of the prompted targets in ``frames`` ``(T, H, W, 3)`` uint8."""
        options = options or InferenceOptions()
        if options.compile and self._compiled_forward_image is None:
            self._compiled_forward_image = torch.compile(self.sam.forward_image, dynamic=False)
        tracker = Sam2Tracker(self.sam, self._compiled_forward_image if options.compile else None)
        masks = track_video(tracker, frames, tracks_for([], prompts), options, next(self.sam.parameters()).device)
        return label_maps_from_masks(masks, frames.shape[:3])


def build_sam2_video_model(
    config: str, checkpoint: str | None, device: str | torch.device, overrides: list[str] = ()
) -> Sam2VideoModel:
    """SAM 2 from the ``sam2`` package's ``config`` (number overrides allowed, see :func:`check_sam2_config`), in eval mode."""
    from sam2.build_sam import build_sam2_video_predictor

    check_sam2_config(config, list(overrides))  # again here: workers build models from pickled options
    sam = build_sam2_video_predictor(config, checkpoint, device=str(device), hydra_overrides_extra=list(overrides))
    return Sam2VideoModel(sam)


class Sam2MaskSource(MaskSource):
    """Plain SAM 2 video tracking from a prompt file (see the module docstring)."""

    name = "sam2"
    Options = Sam2Options

    def __init__(self, options: Sam2Options | None = None):
        super().__init__(options)
        self._prompt_file: PromptFile | None = None

    @staticmethod
    def check_options(options: Sam2Options) -> None:
        """What can be checked while the recipe loads, before any package is imported."""
        check_sam2_overrides(options.sam2_overrides)

    def check(self, features, cameras) -> None:
        o = self.options
        if o.prompts is None:
            raise SourceConfigError(
                "segmentation.prompts: source=sam2 needs a prompt file (JSON of clicks/boxes per episode and camera)"
            )
        try:
            load_prompt_file(o.prompts)
        except PromptFileError as e:
            raise SourceConfigError(f"segmentation.prompts: {e}") from None
        check_sam2_config(o.sam2_config, list(o.sam2_overrides))
        check_checkpoint(o.checkpoint, o.allow_random_init)
        check_device(o.device)
        if o.missing_prompts not in MISSING_PROMPTS:
            raise SourceConfigError(
                f"segmentation.missing_prompts: expected one of {', '.join(MISSING_PROMPTS)}, got {o.missing_prompts!r}"
            )
        if o.chunk_size < 1:
            raise SourceConfigError("segmentation.chunk_size: must be >= 1")

    def load_model(self) -> Sam2VideoModel:
        o = self.options
        return build_sam2_video_model(o.sam2_config, o.checkpoint, resolve_device(o.device), o.sam2_overrides)

    def segment(self, model: Sam2VideoModel, clip: CameraClip) -> np.ndarray:
        o = self.options
        if self._prompt_file is None:
            self._prompt_file = load_prompt_file(o.prompts)
        prompts = self._prompt_file.clip_prompts(clip.episode_key, clip.camera)
        if not prompts:
            if o.missing_prompts == "empty":
                return np.zeros(clip.frames.shape[:3], dtype=np.uint8)
            raise ValueError(
                f"episode {clip.episode_key}, camera {clip.camera}: no prompts in {o.prompts} (missing_prompts: error)"
            )
        # SAM 2 tracks through the whole clip: decoded whole here.
        return model.segment_video(np.asarray(clip.frames), prompts, inference_options(o))
