"""The ``robotseg`` mask source: RobotSeg label maps for every camera clip of an episode.

Recipe keys (under ``segmentation:``, beside the pipeline's own ``source``, ``targets``,
``batch_size``, ``large_model``, ``model_copies``) are the fields of
:class:`RobotSegOptions`. ``checkpoint`` is required: RobotSeg without trained weights
segments nothing useful (the authors' ``robotseg.pt``, see docs/robotseg.md). A RobotSeg
checkpoint must fill every key of the model, or the run stops (exit 2) naming the keys;
a SAM 2.1 checkpoint fills the SAM 2 part only. ``allow_random_init: true`` lifts the
requirement; it exists only so that tests and benchmarks can run the ``tiny`` (or full)
architecture with (seeded) random weights. ``config`` names one of the configs we ship
(:data:`segmentation.robotseg.build.CONFIGS`); a recipe cannot pass Hydra overrides.

``model_targets`` says which RobotSeg targets run (each costs one memory-attention and
decoder pass per frame; the image encoder runs once per frame for all of them); the
label maps get 1 where ``robot``, 2 where ``arm``, 3 where ``gripper`` is predicted, the
finer part winning.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from segmentation.labels import TARGETS
from segmentation.robotseg.build import CONFIGS, build_robotseg_video_predictor, compile_image_encoder
from segmentation.robotseg.checkpoint import CheckpointError, checkpoint_kind, read_state_dict
from segmentation.robotseg.predictor import RobotSegVideoPredictor
from segmentation.robotseg.prompts import PromptFile, PromptFileError, load_prompt_file
from segmentation.robotseg.video import InferenceOptions
from segmentation.sources import CameraClip, MaskSource, SourceConfigError

MODES = ("automatic", "prompted")
MISSING_PROMPTS = ("automatic", "error", "empty")


@dataclasses.dataclass
class RobotSegOptions:
    """``segmentation:`` keys of ``source: robotseg``."""

    config: str = "robotseg_hiera_t"  # robotseg_hiera_t | tiny
    checkpoint: str | None = None  # robotseg.pt (or a SAM 2.1 checkpoint, for the SAM 2 part only)
    allow_random_init: bool = False  # tests only: run without a checkpoint
    strict_checkpoint: bool = False  # also refuse SAM 2.1 checkpoints (RobotSeg checkpoints are always strict)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    model_targets: list[str] = dataclasses.field(default_factory=lambda: list(TARGETS))
    mode: str = "automatic"  # automatic (Robot Prompt Generator) | prompted (clicks/boxes from `prompts`)
    prompts: str | None = None  # prompt file (JSON, see segmentation.robotseg.prompts) for mode=prompted
    missing_prompts: str = "automatic"  # prompted mode, clip without prompts: automatic | error | empty
    chunk_size: int = 8  # unused by RobotSeg (its predictor encodes frame by frame, as the release); kept for old recipes
    bf16: bool = True  # bf16 autocast on CUDA
    compile: bool = False  # torch.compile the image encoder
    refine: bool = False  # the release's guided-filter edge refinement (every frame but the first prompted one)
    fill_holes: bool = True  # the release's hole filling (8 px) on the low-res logits
    refine_radius: int = 4  # sam2 source only
    refine_eps: float = 0.001  # sam2 source only


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"segmentation.device={device}, but torch sees no CUDA device on this worker")
    return torch.device(device)


def check_device(device: str) -> None:
    """Raise :class:`SourceConfigError` unless ``device`` is auto, cpu, cuda or cuda:N."""
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return
    raise SourceConfigError(f"segmentation.device: expected auto, cpu, cuda or cuda:N, got {device!r}")


def check_checkpoint(checkpoint: str | None, allow_random_init: bool) -> None:
    """Raise :class:`SourceConfigError` naming the path unless the checkpoint loads with ``torch.load``."""
    if checkpoint is None:
        if not allow_random_init:
            raise SourceConfigError(
                "segmentation.checkpoint: required (path to the model's .pt file); "
                "allow_random_init: true runs random weights and is meant for tests only"
            )
        return
    try:
        read_state_dict(checkpoint)
    except CheckpointError as e:
        raise SourceConfigError(f"segmentation.checkpoint: {e}") from None


def check_robotseg_checkpoint(options: "RobotSegOptions") -> None:
    """Raise :class:`SourceConfigError` unless the checkpoint fits the configured model exactly (RobotSeg) or in its SAM 2 part.

    The model is built here once, on CPU, so a bad checkpoint stops the run before any worker starts.
    """
    check_checkpoint(options.checkpoint, options.allow_random_init)
    if options.checkpoint is None:
        return
    if options.strict_checkpoint and checkpoint_kind(read_state_dict(options.checkpoint)) == "sam2":
        raise SourceConfigError(
            f"segmentation.checkpoint: {options.checkpoint} is a SAM 2.1 checkpoint (no RobotSeg keys) and strict_checkpoint is set"
        )
    try:
        build_robotseg_video_predictor(options.config, options.checkpoint, "cpu", fill_holes=options.fill_holes)
    except CheckpointError as e:
        raise SourceConfigError(f"segmentation.checkpoint: {e}") from None


def inference_options(options) -> InferenceOptions:
    """The engine's options from a source's options (shared field names)."""
    return InferenceOptions(
        chunk_size=options.chunk_size,
        bf16=options.bf16,
        compile=options.compile,
        refine=options.refine,
        refine_radius=options.refine_radius,
        refine_eps=options.refine_eps,
    )


class RobotSegMaskSource(MaskSource):
    """RobotSeg on each camera clip: automatic, or prompted from a prompt file."""

    name = "robotseg"
    Options = RobotSegOptions

    def __init__(self, options: RobotSegOptions | None = None):
        super().__init__(options)
        self._prompt_file: PromptFile | None = None

    def check(self, features, cameras) -> None:
        o = self.options
        if o.config not in CONFIGS:
            raise SourceConfigError(
                f"segmentation.config: unknown RobotSeg config {o.config!r}; known: {', '.join(sorted(CONFIGS))}"
            )
        check_device(o.device)
        if not o.model_targets:
            raise SourceConfigError("segmentation.model_targets: needs at least one of " + ", ".join(TARGETS))
        for target in o.model_targets:
            if target not in TARGETS:
                raise SourceConfigError(f"segmentation.model_targets: unknown target {target!r}; allowed: {', '.join(TARGETS)}")
        if o.mode not in MODES:
            raise SourceConfigError(f"segmentation.mode: expected one of {', '.join(MODES)}, got {o.mode!r}")
        if o.missing_prompts not in MISSING_PROMPTS:
            raise SourceConfigError(
                f"segmentation.missing_prompts: expected one of {', '.join(MISSING_PROMPTS)}, got {o.missing_prompts!r}"
            )
        if o.mode == "prompted":
            if o.prompts is None:
                raise SourceConfigError("segmentation.prompts: mode=prompted needs a prompt file")
            try:
                load_prompt_file(o.prompts)
            except PromptFileError as e:
                raise SourceConfigError(f"segmentation.prompts: {e}") from None
        if o.chunk_size < 1:
            raise SourceConfigError("segmentation.chunk_size: must be >= 1")
        check_robotseg_checkpoint(o)

    def load_model(self) -> RobotSegVideoPredictor:
        o = self.options
        predictor = build_robotseg_video_predictor(o.config, o.checkpoint, resolve_device(o.device), fill_holes=o.fill_holes)
        if o.compile:
            compile_image_encoder(predictor)
        return predictor

    def segment(self, model: RobotSegVideoPredictor, clip: CameraClip) -> np.ndarray:
        o = self.options
        prompts = None
        if o.mode == "prompted":
            if self._prompt_file is None:
                self._prompt_file = load_prompt_file(o.prompts)
            prompts = self._prompt_file.clip_prompts(clip.episode_key, clip.camera)
            if not prompts and o.missing_prompts == "error":
                raise ValueError(f"episode {clip.episode_key}, camera {clip.camera}: no prompts in {o.prompts}")
            if not prompts and o.missing_prompts == "empty":
                return np.zeros(clip.frames.shape[:3], dtype=np.uint8)
        # A video model tracks through the whole clip: it is decoded whole here (memory grows with the
        # episode on this path only; model sources run on GPU workers sized for it).
        # Seeded per clip: the prompt generator draws from the global RNG (as in the release), and a
        # clip's masks must not depend on which clips a worker ran before it.
        return model.segment_video(np.asarray(clip.frames), list(o.model_targets), prompts, inference_options(o), seed=0)
