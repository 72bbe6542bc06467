"""Diffusion backgrounds: images per second by pipeline type (SD, SDXL, Flux Fill) and resolution.

Every figure goes through ``DiffusionInpaintBackground.generate_batch``, so it includes the
clean plate, the mask, the resizes and the blend, not only the denoising loop.

On CUDA each type runs at 512 and 1024 px: from the pipeline folder given with
``--sd/--sdxl/--flux``, or else from randomly initialised full-size components (the
published architectures, so the same speed; the pictures are noise). On a CPU only the
tiny test pipelines run (``tests/tiny_inpaint_pipeline.py``, 64 and 128 px), which shows
that the script and the source work, not how fast a real model is.

    python benchmarks/diffusion_speed.py [--sd DIR] [--sdxl DIR] [--flux DIR] [--steps 30]

Writes ``benchmarks/results/diffusion_speed.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from backgrounds.base import BackgroundRequest  # noqa: E402
from backgrounds.diffusion import PIPELINE_KINDS, DiffusionInpaintBackground, DiffusionOptions  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "diffusion_speed.json"


def requests_at(resolution: int, count: int) -> list[BackgroundRequest]:
    """``count`` square-camera requests: a short episode, a robot block, the top two thirds replaced."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, resolution, resolution, 3), dtype=np.uint8)
    robot = np.zeros((4, resolution, resolution), bool)
    robot[:, resolution // 3 : resolution // 2, resolution // 4 : resolution // 2] = True
    replace = np.zeros((resolution, resolution), bool)
    replace[: 2 * resolution // 3] = True
    return [BackgroundRequest("bench", "image", i, 1000 + i, frames, robot, replace) for i in range(count)]


def measure(source: DiffusionInpaintBackground, model, resolution: int, images: int) -> dict:
    """Images per second for ``images`` requests at ``resolution``, after one warm-up call."""
    source.generate_batch(model, requests_at(resolution, 1))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    backgrounds = source.generate_batch(model, requests_at(resolution, images))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert all(b.shape == (resolution, resolution, 3) for b in backgrounds)
    result = {
        "resolution": resolution,
        "images": images,
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 4),
    }
    if torch.cuda.is_available():
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


# -- randomly initialised full-size pipelines (CUDA without a model folder) ---------------------


@contextlib.contextmanager
def built_on(device: torch.device, dtype: torch.dtype):
    """Modules constructed inside are created on ``device`` in ``dtype`` (no float32 copy on the host)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            yield
    finally:
        torch.set_default_dtype(previous)


def clip_l_config(vocab_size: int = 49408):
    """CLIP ViT-L/14's text tower (SD 1.5, SDXL's first encoder, Flux's pooled encoder)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
    )


def sd_vae(**overrides):
    """The SD/SDXL/Flux VAE: four blocks, scale factor 8."""
    from diffusers import AutoencoderKL

    config = dict(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    return AutoencoderKL(**{**config, **overrides})


def full_size_networks(kind: str) -> dict:
    """The networks of ``kind``: published architectures, random weights (denoisers of 859 M, 2.6 B, 11.9 B)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    if kind == "sd":
        return dict(
            unet=UNet2DConditionModel(
                sample_size=64,
                in_channels=9,
                out_channels=4,
                block_out_channels=(320, 640, 1280, 1280),
                layers_per_block=2,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=768,
                attention_head_dim=8,
            ),
            vae=sd_vae(sample_size=512),
            text_encoder=CLIPTextModel(clip_l_config()),
        )
    if kind == "sdxl":
        return dict(
            unet=UNet2DConditionModel(
                sample_size=128,
                in_channels=9,
                out_channels=4,
                block_out_channels=(320, 640, 1280),
                layers_per_block=2,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10),
                attention_head_dim=(5, 10, 20),
                cross_attention_dim=2048,
                addition_embed_type="text_time",
                addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816,
                use_linear_projection=True,
            ),
            vae=sd_vae(sample_size=1024, scaling_factor=0.13025, force_upcast=True),
            text_encoder=CLIPTextModel(clip_l_config()),
            text_encoder_2=CLIPTextModelWithProjection(
                CLIPTextConfig(
                    vocab_size=49408,
                    hidden_size=1280,
                    intermediate_size=5120,
                    num_hidden_layers=32,
                    num_attention_heads=20,
                    max_position_embeddings=77,
                    hidden_act="gelu",
                    projection_dim=1280,
                )
            ),
        )
    if kind == "flux":
        return dict(
            transformer=FluxTransformer2DModel(
                in_channels=384,
                out_channels=64,
                num_layers=19,
                num_single_layers=38,
                attention_head_dim=128,
                num_attention_heads=24,
                joint_attention_dim=4096,
                pooled_projection_dim=768,
                guidance_embeds=True,
                axes_dims_rope=(16, 56, 56),
            ),
            vae=sd_vae(
                sample_size=1024,
                latent_channels=16,
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
            ),
            text_encoder=CLIPTextModel(clip_l_config()),
            text_encoder_2=T5EncoderModel(
                T5Config(
                    vocab_size=32128,
                    d_model=4096,
                    d_ff=10240,
                    d_kv=64,
                    num_heads=64,
                    num_layers=24,
                    feed_forward_proj="gated-gelu",
                    relative_attention_num_buckets=32,
                )
            ),
        )
    raise ValueError(f"unknown pipeline type {kind!r}; known: {', '.join(PIPELINE_KINDS)}")


def full_size_extras(kind: str, scratch: Path) -> dict:
    """The parts of ``kind`` that are not networks: tokenizers, the scheduler, pipeline flags."""
    import diffusers
    from tiny_inpaint_pipeline import tiny_clip_tokenizer, tiny_t5_tokenizer

    # The tokenizers only turn the prompt into ids; padding to full length keeps the encoders' cost real.
    tokenizer = tiny_clip_tokenizer(scratch / "tokenizer")
    if kind == "sd":
        scheduler = diffusers.DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        return dict(
            tokenizer=tokenizer, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    if kind == "sdxl":
        scheduler = diffusers.EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
        )
        return dict(tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler, requires_aesthetics_score=False)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return dict(tokenizer=tokenizer, tokenizer_2=tiny_t5_tokenizer(), scheduler=scheduler)


def full_size_pipeline(kind: str, device: torch.device, dtype: torch.dtype, scratch: Path):
    """A random-weight pipeline of ``kind``, its networks built directly on ``device`` in ``dtype``."""
    import diffusers

    with built_on(device, dtype):
        networks = full_size_networks(kind)
    # Schedulers and tokenizers stay outside: a half-precision default would round the noise schedule.
    pipeline = getattr(diffusers, PIPELINE_KINDS[kind].class_name)(**networks, **full_size_extras(kind, scratch))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# -- the two modes -------------------------------------------------------------------------------


def run_cuda(args, scratch: Path) -> list[dict]:
    """Every requested type at 512 and 1024 px, from a folder or random full-size weights."""
    device = torch.device("cuda")
    results = []
    for kind in args.kinds:
        folder = getattr(args, kind)
        options = DiffusionOptions(
            model=folder or f"<random {kind}>",
            pipeline=kind,
            steps=args.steps,
            device="cuda",
        )
        source = DiffusionInpaintBackground(options)
        if folder:
            source.check()
            model = source.load_model()
        else:
            model = full_size_pipeline(kind, device, PIPELINE_KINDS[kind].half_dtype, scratch)
        for resolution in args.resolutions:
            source.options.resolution = resolution
            result = measure(source, model, resolution, args.images)
            result.update(pipeline=kind, weights=folder or "random-init full size", dtype=str(model.dtype))
            print(json.dumps(result), flush=True)
            results.append(result)
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return results


def run_cpu_tiny(args, scratch: Path) -> list[dict]:
    """The tiny test pipelines at 64 and 128 px: proof that the path works, not a speed figure."""
    from tiny_inpaint_pipeline import save_tiny_flux_fill, save_tiny_sd_inpaint, save_tiny_sdxl_inpaint

    savers = {"sd": save_tiny_sd_inpaint, "sdxl": save_tiny_sdxl_inpaint, "flux": save_tiny_flux_fill}
    results = []
    for kind in args.kinds:
        folder = savers[kind](scratch / kind)
        source = DiffusionInpaintBackground(DiffusionOptions(model=str(folder), steps=min(args.steps, 2), device="cpu"))
        source.check()
        model = source.load_model()
        for resolution in (64, 128):
            source.options.resolution = resolution
            result = measure(source, model, resolution, args.images)
            result.update(pipeline=kind, weights="tiny random (tests/tiny_inpaint_pipeline.py)", dtype=str(model.dtype))
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write its JSON; returns what was written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for kind in PIPELINE_KINDS:
        parser.add_argument(f"--{kind}", metavar="DIR", help=f"a {PIPELINE_KINDS[kind].class_name} folder")
    parser.add_argument("--kinds", nargs="+", default=list(PIPELINE_KINDS), choices=list(PIPELINE_KINDS))
    parser.add_argument("--resolutions", nargs="+", type=int, default=[512, 1024], help="CUDA only")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--images", type=int, default=8, help="timed images per (type, resolution)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=1,
        help="torch threads in CPU mode: the tiny networks gain nothing from more, and on a shared "
        "machine extra threads spin-wait (15x slower measured on 2 busy cores)",
    )
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(args.cpu_threads)
    with tempfile.TemporaryDirectory() as scratch:
        results = run_cuda(args, Path(scratch)) if cuda else run_cpu_tiny(args, Path(scratch))
    report = {
        "benchmark": "diffusion_speed",
        "mode": "cuda" if cuda else "cpu, tiny random pipelines only (not a speed figure for real models)",
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
        "steps": args.steps if cuda else min(args.steps, 2),
        "images_per_call": 1,  # every image is painted alone (outputs independent of batching)
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return report


if __name__ == "__main__":
    main()
