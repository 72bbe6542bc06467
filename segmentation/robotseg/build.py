"""Building RobotSeg from the configs we ship, with the release's builder signatures.

``build_robotseg_video_predictor(config_file, ckpt_path, device, mode, hydra_overrides_extra,
apply_postprocessing)`` and ``build_robotseg(...)`` are the release's
(``robotseg/build_robotseg.py``). ``config_file`` names one of the configs shipped in
``segmentation/robotseg/configs`` (:data:`CONFIGS`): a release path such as
``configs/robotseg-infer.yaml`` or ``../robotseg/configs/robotseg-infer`` resolves by its
file name, so the release's scripts work unchanged. A config never comes from a recipe:
recipes choose among these names, and only Python callers can pass
``hydra_overrides_extra`` (as in the release).

The model is always instantiated under a fixed seed, so weights a checkpoint does not
provide (only possible for SAM 2.1 checkpoints: the RobotSeg-only keys) are the same in
every run. Checkpoints load through :func:`segmentation.robotseg.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

import pathlib

import torch
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

from segmentation.robotseg.checkpoint import CheckpointReport, load_checkpoint

CONFIG_DIR = pathlib.Path(__file__).parent / "configs"
#: Config names -> shipped files. ``robotseg_hiera_t`` and ``tiny`` are the recipe names.
CONFIGS = {
    "robotseg-infer": "robotseg-infer.yaml",
    "robotseg": "robotseg-infer.yaml",
    "robotseg_hiera_t": "robotseg-infer.yaml",
    "robotseg-tiny": "robotseg-tiny.yaml",
    "tiny": "robotseg-tiny.yaml",
}
#: The seed of every fresh initialisation.
INIT_SEED = 0
#: The release's post-processing overrides (build_robotseg.py), hole filling apart.
POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
#: The release fills background holes up to this area (pixels of the 256 x 256 logits).
FILL_HOLE_AREA = 8


def config_path(config_file: str) -> pathlib.Path:
    """The shipped config file for ``config_file`` (a name, or a release path ending in one); ``ValueError`` otherwise."""
    name = pathlib.PurePath(str(config_file)).name
    name = name.removesuffix(".yaml")
    if name not in CONFIGS:
        raise ValueError(f"unknown RobotSeg config {config_file!r}; known: {', '.join(sorted(CONFIGS))}")
    return CONFIG_DIR / CONFIGS[name]


def _instantiate(config_file: str, overrides: list[str]):
    cfg = OmegaConf.load(config_path(config_file))
    if overrides:
        ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(list(overrides)), cfg)
    OmegaConf.resolve(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = instantiate(cfg.model, _recursive_=True)
    return model


def _finish(model, ckpt_path, device, mode):
    model.checkpoint_report = None
    if ckpt_path is not None:
        model.checkpoint_report = load_checkpoint(model, ckpt_path)
    model = model.to(device)
    if mode == "eval":
        model.eval()
    return model


def build_robotseg(
    config_file,
    ckpt_path=None,
    device="cuda",
    mode="eval",
    hydra_overrides_extra=(),
    apply_postprocessing=True,
):
    """The image model (:class:`~segmentation.robotseg.model.RobotSegBase`), as the release's ``build_robotseg``."""
    overrides = list(POSTPROCESSING if apply_postprocessing else ()) + list(hydra_overrides_extra)
    return _finish(_instantiate(config_file, overrides), ckpt_path, device, mode)


def build_robotseg_video_predictor(
    config_file,
    ckpt_path=None,
    device="cuda",
    mode="eval",
    hydra_overrides_extra=(),
    apply_postprocessing=True,
    fill_holes=True,
):
    """The video predictor (:class:`~segmentation.robotseg.predictor.RobotSegVideoPredictor`), as the release's.

    ``apply_postprocessing`` adds the release's overrides: dynamic multimask fallback,
    binarised memory masks on prompted frames, hole filling (area 8). ``fill_holes=False``
    (our switch) keeps the others but skips hole filling, which is what the release does
    wherever its CUDA extension is missing (its reference outputs were made that way).
    ``ckpt_path``: a RobotSeg checkpoint must fill every key (else
    :class:`~segmentation.robotseg.checkpoint.CheckpointError`); a SAM 2.1 one fills the SAM 2 part.
    """
    overrides = ["++model._target_=segmentation.robotseg.predictor.RobotSegVideoPredictor"]
    if apply_postprocessing:
        overrides += list(POSTPROCESSING)
        overrides += [
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            f"++model.fill_hole_area={FILL_HOLE_AREA if fill_holes else 0}",
        ]
    overrides += list(hydra_overrides_extra)
    return _finish(_instantiate(config_file, overrides), ckpt_path, device, mode)


def checkpoint_report(model) -> CheckpointReport | None:
    """What loading the model's checkpoint did (``None`` without a checkpoint)."""
    return getattr(model, "checkpoint_report", None)


def size_overrides(image_size: int, backbone_stride: int = 16) -> list[str]:
    """Hydra overrides that run a shipped config at another input size (benchmarks): the token grid follows."""
    grid = image_size // backbone_stride
    return [
        f"++model.image_size={image_size}",
        f"++model.robot_prompt_generator.grid_size={grid}",
        *(
            f"++model.memory_attention.layer.{a}.feat_sizes=[{grid},{grid}]"
            for a in ("self_attention", "cross_attention", "cross_attention_structure")
        ),
    ]


def compile_image_encoder(model, backend: str = "inductor") -> None:
    """``torch.compile`` the image encoder's forward (the bulk of the FLOPs); state-dict keys do not change.

    One eager pass first: ``sam2``'s position encodings fill a cache on their first call at
    a size, and filled inside the compiled graph that cache fails a guard on the next call
    (a second compile).
    """
    parameter = next(model.image_encoder.parameters())
    with torch.no_grad():
        model.image_encoder(torch.zeros(1, 3, model.image_size, model.image_size, device=parameter.device, dtype=parameter.dtype))
    model.image_encoder.forward = torch.compile(model.image_encoder.forward, dynamic=False, backend=backend)
