"""RobotSeg video-inference speed and peak memory (random weights, default architecture).

CUDA (when available): 1024x1024 model input, several chunk sizes, bf16 autocast and
``torch.compile`` on and off. CPU: 512x512 model input on a handful of frames. Frames are
rendered synthetic clips (640x480); every run segments all frames of one clip in
automatic mode, after one untimed warm-up run of the same setting; each setting is timed
``--repeats`` times (median and best are reported: shared machines are noisy).

    python benchmarks/robotseg_speed.py                      # CPU part, and CUDA if present
    python benchmarks/robotseg_speed.py --cpu-frames 8 --targets robot arm gripper

Writes ``benchmarks/results/robotseg_speed.json`` (one record per setting).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from segmentation.robotseg import InferenceOptions, build_robotseg_video_predictor, segment_video  # noqa: E402
from segmentation.robotseg.build import compile_image_encoder, size_overrides  # noqa: E402
from segmentation.robotseg.synthetic import render_synthetic_clip  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "robotseg_speed.json"


def peak_cpu_memory_mb() -> float:
    """Peak resident set size of this process so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(model, frames, targets, options: InferenceOptions, device: torch.device, repeats: int) -> dict:
    segment_video(model, frames[: max(2, options.chunk_size)], targets=targets, options=options)  # warm-up (and compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):  # shared machines are noisy: keep every time, report the median and the best
        start = time.perf_counter()
        segment_video(model, frames, targets=targets, options=options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_cpu_memory_mb()
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "image_size": model.config.image_size,
        "frames": len(frames),
        "frame_size": list(frames.shape[1:3]),
        "targets": list(targets),
        "chunk_size": options.chunk_size,
        "bf16": options.bf16 and device.type == "cuda",
        "compile": options.compile,
        "seconds_median": round(seconds, 3),
        "seconds_all": [round(t, 3) for t in times],
        "fps": round(len(frames) / seconds, 3),
        "fps_best": round(len(frames) / min(times), 3),
        "peak_memory_mb": round(peak, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-frames", type=int, default=4)
    parser.add_argument("--cpu-size", type=int, default=512)
    # The predictor encodes one frame at a time (as the release): chunk sizes no longer change RobotSeg's speed.
    parser.add_argument("--cpu-chunks", type=int, nargs="+", default=[1])
    parser.add_argument("--cuda-frames", type=int, default=48)
    parser.add_argument("--cuda-chunks", type=int, nargs="+", default=[1])
    parser.add_argument("--targets", nargs="+", default=["robot"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    records = []
    if torch.cuda.is_available():
        device = torch.device("cuda")
        frames = render_synthetic_clip(args.cuda_frames, (480, 640), seed=0).frames
        for compile_encoder in (False, True):
            model = build_robotseg_video_predictor("robotseg-infer", None, device)
            if compile_encoder:
                compile_image_encoder(model)
            for bf16 in (True, False):
                for chunk in args.cuda_chunks:
                    options = InferenceOptions(chunk_size=chunk, bf16=bf16, compile=compile_encoder)
                    records.append(run(model, frames, args.targets, options, device, args.repeats))
                    print(json.dumps(records[-1]), flush=True)
        del model
        torch.cuda.empty_cache()
    if not args.skip_cpu:
        device = torch.device("cpu")
        model = build_robotseg_video_predictor(
            "robotseg-infer", None, device, hydra_overrides_extra=size_overrides(args.cpu_size)
        )
        frames = render_synthetic_clip(args.cpu_frames, (480, 640), seed=0).frames
        for chunk in args.cpu_chunks:
            records.append(run(model, frames, args.targets, InferenceOptions(chunk_size=chunk, bf16=False), device, args.repeats))
            print(json.dumps(records[-1]), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "robotseg_speed", "torch": torch.__version__, "weights": "random", "records": records}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
