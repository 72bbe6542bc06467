"""SAM 3 (``source: sam3``) speed on CPU with the tiny test model, and the size of the real one.

1. Speed: the tiny random SAM 3 of ``tests/test_sam3_source.py`` at 256x256 model input
   (patch 16), segmenting a 256x256 synthetic clip through ``Sam3MaskSource.segment_clip``
   with 2 robot + 2 object prompts, after one untimed warm-up; once with the default
   thresholds (random weights then detect nothing: encoder + detector heads only) and once
   with threshold 0 (every prompt detects and tracks: the tracker's cost too).
2. Size: the released architecture (``Sam3VideoConfig()`` defaults, what ``facebook/sam3``
   ships) built on the ``meta`` device: parameters per part, weight memory in fp32/bf16,
   and per-frame / per-tracked-object session memory computed from the config.
3. ``--full-size-frames N`` (optional, slow): the released architecture with random weights
   on CPU at 1008x1008 for N frames: wall time per frame and peak RSS (weights + activations).

    python benchmarks/sam3_speed.py                  # parts 1 and 2
    python benchmarks/sam3_speed.py --full-size-frames 2

Writes ``benchmarks/results/sam3_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from segmentation.sam3_source import Sam3MaskSource, Sam3Options  # noqa: E402
from segmentation.sources import CameraClip  # noqa: E402
from tests.test_sam3_source import save_tiny_sam3  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "sam3_speed.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_clip(frames: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    clip = np.repeat(rng.integers(60, 120, size=(1, size, size, 3), dtype=np.uint8), frames, axis=0)
    for t in range(frames):
        clip[t, size // 4 : size // 2, 10 + 4 * t : 60 + 4 * t] = (230, 40, 40)
    return clip


def tiny_speed(frames: int, repeats: int) -> list[dict]:
    """Frames per second of the tiny model at 256 px, default thresholds and threshold 0."""
    records = []
    with tempfile.TemporaryDirectory() as folder:
        save_tiny_sam3(folder, image_size=256, patch_size=16)
        clip = CameraClip("bench/000000", "image_0", synthetic_clip(frames, 256), instruction="put the red block on the towel")
        for label, thresholds in (
            ("default thresholds (no detections)", (0.5, 0.7)),
            ("threshold 0 (every prompt tracked)", (0.0, 0.0)),
        ):
            source = Sam3MaskSource(
                Sam3Options(model=folder, device="cpu", score_threshold=thresholds[0], new_object_threshold=thresholds[1])
            )
            model = source.load_model()
            source.segment_clip(model, clip)  # warm-up
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                found = source.segment_clip(model, clip)
                seconds.append(time.perf_counter() - start)
            records.append(
                {
                    "setting": label,
                    "model_input_px": 256,
                    "frame_px": [256, 256],
                    "frames": frames,
                    "prompts": 2 + len(found.object_names),
                    "torch_threads": torch.get_num_threads(),
                    "seconds_median": round(statistics.median(seconds), 3),
                    "seconds_best": round(min(seconds), 3),
                    "frames_per_second_median": round(frames / statistics.median(seconds), 2),
                    "tiny_model_parameters": sum(p.numel() for p in model.model.parameters()),
                }
            )
            print(json.dumps(records[-1]), flush=True)
    return records


def released_size() -> dict:
    """Parameters and memory of the released SAM 3 architecture, from its config on the meta device."""
    from transformers import Sam3VideoConfig, Sam3VideoModel

    config = Sam3VideoConfig()
    with torch.device("meta"):
        model = Sam3VideoModel(config)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    parts = {f"detector.{name}": count(child) for name, child in model.detector_model.named_children()}
    parts["tracker"] = count(model.tracker_model)
    parts["tracker_neck"] = count(model.tracker_neck)
    total = count(model)
    size = config.image_size
    vit = config.detector_config.vision_config.backbone_config
    grid = size // vit.patch_size
    trk = config.tracker_config
    low_res = config.low_res_mask_size
    frame_fp32 = 3 * size * size * 4  # a preprocessed frame as the session stores it
    # Per tracked object and frame the session keeps: maskmem_features (bf16, grid^2 x mem_dim),
    # maskmem_pos_enc (fp32, same size), pred_masks (fp32, low-res), pointer and scores (small).
    mem_dim = trk.memory_encoder_output_channels
    object_frame = (
        grid * grid * mem_dim * 2 + grid * grid * mem_dim * 4 + low_res * low_res * 4 + trk.memory_attention_hidden_size * 4
    )
    # Backbone activations of one frame (inference): hidden states and MLP of one ViT layer at a
    # time, plus a global-attention layer's score matrix if the attention kernel materialises it.
    tokens = grid * grid
    backbone_layer = tokens * (vit.hidden_size * 4 + vit.intermediate_size) * 4
    global_scores = vit.num_attention_heads * tokens * tokens * 4
    mb = lambda n: round(n / 2**20, 1)  # noqa: E731
    return {
        "config": "Sam3VideoConfig() defaults (the facebook/sam3 architecture)",
        "image_size": size,
        "token_grid": [grid, grid],
        "parameters_total": total,
        "parameters_by_part": parts,
        "weights_mb_fp32": mb(total * 4),
        "weights_mb_bf16": mb(total * 2),
        "session_mb_per_frame_fp32": mb(frame_fp32),
        "session_mb_per_tracked_object_per_frame": mb(object_frame),
        "session_mb_max_frames_64_with_10_objects_fp32": mb(64 * frame_fp32 + 64 * 10 * object_frame),
        "backbone_activation_mb_per_layer_fp32": mb(backbone_layer),
        "global_attention_scores_mb_if_materialised_fp32": mb(global_scores),
        "note": (
            "weights and the per-frame/per-object session sizes follow from the config; activations are an "
            "estimate (one ViT layer live at a time under inference_mode); the number of tracked objects, and so "
            "the tracker's memory and time, depends on what the trained detector finds and cannot be known "
            "without the weights"
        ),
    }


def full_size_cpu(frames: int) -> dict:
    """The released architecture, random weights, on CPU at its own input size: time and peak memory."""
    from transformers import Sam3VideoConfig, Sam3VideoModel

    before = peak_rss_mb()
    torch.manual_seed(0)
    model = Sam3VideoModel(Sam3VideoConfig()).eval()
    after_build = peak_rss_mb()
    vision = model.detector_model.get_vision_features
    size = model.config.image_size
    pixels = torch.randn(1, 3, size, size)
    seconds = []
    with torch.inference_mode():
        for _ in range(frames):
            start = time.perf_counter()
            vision(pixel_values=pixels)
            seconds.append(time.perf_counter() - start)
    return {
        "setting": "released architecture, random weights, image encoder only, CPU",
        "image_size": size,
        "frames": frames,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "seconds_per_frame_median": round(statistics.median(seconds), 2),
        "peak_rss_mb_before_build": round(before),
        "peak_rss_mb_after_build": round(after_build),
        "peak_rss_mb_after_frames": round(peak_rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16, help="frames of the 256 px clip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--full-size-frames", type=int, default=0, help="also time the released architecture (random weights) on CPU"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (extra ones spin-wait on a loaded machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}

    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(),
        },
        "tiny_cpu_256px": tiny_speed(args.frames, args.repeats),
        "released_model_size": released_size(),
    }
    print(json.dumps(result["released_model_size"], indent=1), flush=True)
    if args.full_size_frames:
        result["released_model_cpu"] = full_size_cpu(args.full_size_frames)
        print(json.dumps(result["released_model_cpu"]), flush=True)
    elif "released_model_cpu" in previous:  # slow to measure: keep the last run's
        result["released_model_cpu"] = previous["released_model_cpu"]
    result["not_measured"] = [
        "mask quality of SAM 3 on robot data (needs the released weights)",
        "how many objects the trained detector tracks per prompt, hence the tracker's real time and memory",
        "GPU speed and memory (no GPU on this machine)",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
