"""RobotSeg's architecture as plain dataclasses: every size and every unconfirmed detail.

``robotseg_hiera_t`` is the published model (SAM 2.1 Hiera-T + SEMA + RPG, 41.3 M
parameters, 1024x1024 input). Its SAM 2 part repeats ``sam2/configs/sam2.1/sam2.1_hiera_t.yaml``
value for value, so that ``sam2.1_hiera_tiny.pt`` initialises it. ``tiny`` is a small
model with the same structure for tests and CPU experiments.

Details the RobotSeg paper (arXiv 2511.22950) and release leave open (the number of
macro regions K, the class-token bank, the edge detector's fallback, the structure
supervision) are fields here, never constants in the model code.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class HieraConfig:
    """The Hiera trunk of SAM 2's image encoder (``sam2.modeling.backbones.hieradet.Hiera``)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)

    @property
    def channel_list(self) -> list[int]:
        """Output channels per stage, deepest first (what ``FpnNeck`` expects)."""
        return [self.embed_dim * 2**i for i in reversed(range(len(self.stages)))]


@dataclasses.dataclass(frozen=True)
class SemaConfig:
    """Structure-Enhanced Memory Associator: the structure branch added to each memory-attention layer."""

    edge_method: str = "auto"  # auto (kornia Canny if installed, else Sobel) | canny | sobel
    canny_low: float = 0.1
    canny_high: float = 0.2
    kernel_sizes: tuple[int, ...] = (3, 5, 7)  # depthwise-separable multi-scale convolutions
    attention_heads: int = 1  # the structure branch's own cross-attention to memory
    alpha_init: float = 1.0  # fusion: out = temporal * (1 + alpha * sigmoid(S))
    structure_upsample: int = 16  # structure maps are returned at token grid x this (unconfirmed)


@dataclasses.dataclass(frozen=True)
class PromptGeneratorConfig:
    """Robot Prompt Generator: class tokens and clustered object tokens (details unconfirmed)."""

    class_bank_size: int = 4  # learned class tokens per target (arm, gripper, robot)
    num_macro: int = 4  # K macro regions per memory frame
    num_micro: int = 4  # micro clusters per macro region; their centroids form one token
    foreground_threshold: float = 0.5  # on the memory frame's mask probability
    project_object_tokens: bool = True  # a learned linear map from clustered features to d_model
    use_with_prompts: bool = True  # also add robot tokens when points or a box are given


@dataclasses.dataclass(frozen=True)
class RobotSegConfig:
    """Every value the model is built from. ``build_robotseg`` turns it into modules."""

    name: str = "robotseg_hiera_t"
    image_size: int = 1024
    backbone_stride: int = 16
    d_model: int = 256
    mem_dim: int = 64
    hiera: HieraConfig = dataclasses.field(default_factory=HieraConfig)
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    # memory attention (SAM 2's layer = SEMA's temporal branch)
    memory_layers: int = 4
    memory_feedforward: int = 2048
    memory_heads: int = 1
    memory_dropout: float = 0.1
    rope_theta: float = 10000.0
    # memory encoder
    mask_downsampler_stride: int = 2
    fuser_layers: int = 2
    # mask decoder
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    # SAM 2.1 tracking behaviour (sam2.1_hiera_t.yaml and the video predictor's overrides)
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    max_cond_frames_in_attn: int = -1
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # image normalisation (ImageNet, as SAM 2)
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    sema: SemaConfig = dataclasses.field(default_factory=SemaConfig)
    prompt_generator: PromptGeneratorConfig = dataclasses.field(default_factory=PromptGeneratorConfig)

    @property
    def token_grid(self) -> int:
        """Side of the square token grid the memory attention works on (64 at 1024 px)."""
        return self.image_size // self.backbone_stride


def tiny_config() -> RobotSegConfig:
    """A RobotSeg with the full structure but small dimensions: 128 px, a 4-block Hiera.

    Runs a few frames in well under a second on one CPU core; used by tests and the
    CPU learning test.
    """
    return RobotSegConfig(
        name="tiny",
        image_size=128,
        d_model=64,
        mem_dim=16,
        hiera=HieraConfig(
            embed_dim=16,
            num_heads=1,
            stages=(1, 1, 2, 1),
            global_att_blocks=(3,),
            window_spec=(8, 4, 4, 2),
            window_pos_embed_bkg_spatial_size=(4, 4),
        ),
        memory_layers=2,
        memory_feedforward=128,
        memory_dropout=0.0,
        decoder_mlp_dim=128,
        decoder_heads=2,
        iou_head_hidden_dim=64,
        fuser_layers=1,
        multimask_output_in_sam=False,
        multimask_output_for_tracking=False,
        dynamic_multimask_via_stability=False,
        prompt_generator=PromptGeneratorConfig(class_bank_size=2, num_macro=2),
    )


#: Named configurations accepted by ``build_robotseg(config=...)`` and recipes.
CONFIGS = {
    "robotseg_hiera_t": RobotSegConfig,
    "tiny": tiny_config,
}


def robotseg_config(name: str) -> RobotSegConfig:
    """The named configuration; raises ``KeyError`` naming the known ones."""
    if name not in CONFIGS:
        raise KeyError(f"unknown RobotSeg config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return CONFIGS[name]()
