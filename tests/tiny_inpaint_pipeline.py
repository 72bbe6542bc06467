"""Tiny, randomly initialised diffusers pipelines saved to a folder, for tests and the CPU benchmark.

Nothing is downloaded: every component is built from a small config and the CLIP
tokenizer from a vocabulary written here. The pictures they paint are noise, but the
pipelines run the real diffusers code paths (text encoding, VAE, UNet, scheduler) in
well under a second on a CPU, and load back through ``from_pretrained`` like a real
checkpoint does.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxFillPipeline,
    FluxTransformer2DModel,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

#: Width of every tiny network; small enough for a 2-core CPU, divisible by the group-norm groups.
TINY_CHANNELS = (16, 32)
TINY_NORM_GROUPS = 8
TINY_TEXT_DIM = 32
#: UNet latent side; with the two-block VAE (scale factor 2) the native resolution is 64 px.
TINY_SAMPLE_SIZE = 32


def write_tiny_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """Write a byte-level BPE ``vocab.json`` and ``merges.txt`` (letters, digits, a few merges)."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ",.-'")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    merges = ["e r</w>", "t h", "i n", "a n", "o n</w>", "e n"]
    tokens += [m.replace(" ", "") for m in merges]
    vocab_path = folder / "vocab.json"
    merges_path = folder / "merges.txt"
    vocab_path.write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_path, merges_path


def tiny_clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer over the tiny vocabulary, padding and truncating at CLIP's 77 tokens."""
    vocab_path, merges_path = write_tiny_clip_vocab(folder)
    return CLIPTokenizer(vocab=str(vocab_path), merges=str(merges_path), model_max_length=77)


def tiny_clip_config(vocab_size: int, projection_dim: int = TINY_TEXT_DIM) -> CLIPTextConfig:
    """A 2-layer CLIP text config with the tiny width."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TINY_TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def tiny_text_encoder(vocab_size: int, seed: int) -> CLIPTextModel:
    """A tiny random CLIP text model."""
    torch.manual_seed(seed)
    return CLIPTextModel(tiny_clip_config(vocab_size)).eval()


def tiny_vae(seed: int, **overrides) -> AutoencoderKL:
    """A two-block VAE: 4 latent channels, scale factor 2 (``overrides`` for Flux's shift and no quant convs)."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(TINY_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(TINY_CHANNELS),
        block_out_channels=TINY_CHANNELS,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=TINY_NORM_GROUPS,
        sample_size=TINY_SAMPLE_SIZE * 2,
        **overrides,
    ).eval()


def tiny_unet(in_channels: int, seed: int, **overrides) -> UNet2DConditionModel:
    """A two-block conditional UNet; ``in_channels`` 9 for inpainting, 4 for text-to-image."""
    torch.manual_seed(seed)
    config = dict(
        sample_size=TINY_SAMPLE_SIZE,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=TINY_CHANNELS,
        layers_per_block=1,
        norm_num_groups=TINY_NORM_GROUPS,
        cross_attention_dim=TINY_TEXT_DIM,
        attention_head_dim=4,
    )
    return UNet2DConditionModel(**{**config, **overrides}).eval()


def tiny_sd_components(folder: Path, unet_in_channels: int, seed: int = 0) -> dict:
    """Keyword arguments for a Stable Diffusion pipeline class, every part tiny and random."""
    tokenizer = tiny_clip_tokenizer(folder / "_tokenizer_source")
    return dict(
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(len(tokenizer), seed + 1),
        tokenizer=tokenizer,
        unet=tiny_unet(unet_in_channels, seed + 2),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_sd_inpaint(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionInpaintPipeline`` (9-channel UNet) to ``folder``; returns it."""
    pipeline = StableDiffusionInpaintPipeline(**tiny_sd_components(folder, unet_in_channels=9, seed=seed))
    pipeline.save_pretrained(folder)
    return folder


def save_tiny_sd_text_to_image(folder: Path, seed: int = 0) -> Path:
    """Save a tiny text-to-image ``StableDiffusionPipeline`` (4-channel UNet): not an inpainting model."""
    pipeline = StableDiffusionPipeline(**tiny_sd_components(folder, unet_in_channels=4, seed=seed))
    pipeline.save_pretrained(folder)
    return folder


def save_tiny_sdxl_inpaint(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionXLInpaintPipeline``: two CLIP encoders, a UNet with SDXL's size conditioning."""
    tokenizer = tiny_clip_tokenizer(folder / "_tokenizer_source")
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(tiny_clip_config(len(tokenizer))).eval()
    time_embed_dim = 8
    unet = tiny_unet(
        9,
        seed + 2,
        # Both encoders' hidden states side by side.
        cross_attention_dim=2 * TINY_TEXT_DIM,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # Six size numbers (original size, crop corner, target size) plus the pooled text embedding.
        projection_class_embeddings_input_dim=6 * time_embed_dim + TINY_TEXT_DIM,
        use_linear_projection=True,
    )
    pipeline = StableDiffusionXLInpaintPipeline(
        # float32 already: no upcasting of the VAE's decoder.
        vae=tiny_vae(seed, force_upcast=False),
        text_encoder=tiny_text_encoder(len(tokenizer), seed + 1),
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1),
        requires_aesthetics_score=False,
    )
    pipeline.save_pretrained(folder)
    return folder


def tiny_t5_tokenizer() -> T5Tokenizer:
    """A unigram T5 tokenizer over single letters and a few words."""
    pieces = ["<pad>", "</s>", "<unk>"] + ["\u2581" + c for c in string.ascii_lowercase] + list(string.ascii_lowercase)
    pieces += ["\u2581a", ",", "\u2581kitchen", "\u2581counter", "\u2581light"]
    return T5Tokenizer(vocab=[(piece, -float(i)) for i, piece in enumerate(pieces)], extra_ids=0)


def save_tiny_flux_fill(folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``FluxFillPipeline``: CLIP + T5 encoders, a 2-layer Flux transformer taking image and mask."""
    clip_tokenizer = tiny_clip_tokenizer(folder / "_tokenizer_source")
    t5_tokenizer = tiny_t5_tokenizer()
    latent_channels = 4
    vae_scale = 2 ** (len(TINY_CHANNELS) - 1)
    torch.manual_seed(seed + 3)
    t5 = T5EncoderModel(
        T5Config(vocab_size=len(t5_tokenizer), d_model=TINY_TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    ).eval()
    torch.manual_seed(seed + 2)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        # Packed (2x2) noisy latents and masked-image latents, and the mask packed at full resolution.
        in_channels=8 * latent_channels + 4 * vae_scale**2,
        out_channels=4 * latent_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TINY_TEXT_DIM,
        pooled_projection_dim=TINY_TEXT_DIM,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    ).eval()
    pipeline = FluxFillPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(seed, shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=tiny_text_encoder(len(clip_tokenizer), seed + 1),
        tokenizer=clip_tokenizer,
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    pipeline.save_pretrained(folder)
    return folder
