"""Label-efficient fine-tuning of tiny RobotSeg on CPU: learning curves and time per step.

Three runs from the same random initialisation on the same rendered training clips
(``segmentation.robotseg.synthetic``, 128 px), scored every ``--eval-every`` steps by the
robot IoU of automatic video mode on held-out clips (frames pooled per clip, mean
over clips):

* ``first_frame_let``: ground truth on the first frame of each clip + cycle, semantic
  and patch consistency (patch backbone: a frozen copy of the model's own image
  encoder, its stride-8 level by default);
* ``first_frame_only``: the same labels, no consistency losses;
* ``fully_supervised``: every frame labelled, no consistency losses.

    python benchmarks/robotseg_let.py                 # defaults below, ~10-20 minutes on 2 cores
    python benchmarks/robotseg_let.py --steps 200 --eval-every 50

Writes ``benchmarks/results/robotseg_let.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from segmentation.labels import target_mask  # noqa: E402
from segmentation.robotseg import segment_video  # noqa: E402
from segmentation.robotseg.let import FinetuneOptions, TrainClip, finetune  # noqa: E402
from segmentation.robotseg.synthetic import render_synthetic_clip  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "robotseg_let.json"

RUNS = {
    "first_frame_let": {"let": True, "label_every": 0},
    "first_frame_only": {"let": False, "label_every": 0},
    "fully_supervised": {"let": False, "label_every": 1},
}


def clips(count: int, frames: int, size: int, first_seed: int) -> list[TrainClip]:
    """Rendered robot clips with every frame's robot mask (label_every then hides what a run may not see)."""
    out = []
    for seed in range(first_seed, first_seed + count):
        clip = render_synthetic_clip(frames, size, seed=seed)
        out.append(TrainClip(f"synthetic_{seed}", clip.frames, target_mask(clip.labels, "robot"), np.ones(frames, bool)))
    return out


def video_iou(model, held_out: list[TrainClip]) -> float:
    """Mean over clips of the robot IoU of automatic video mode, all frames of a clip pooled."""
    ious = []
    for clip in held_out:
        predicted = segment_video(model, clip.frames, targets=("robot",)) >= 1
        union = (predicted | clip.masks).sum()
        ious.append((predicted & clip.masks).sum() / max(union, 1))
    return float(np.mean(ious))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--train-clips", type=int, default=16)
    parser.add_argument("--held-out-clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--clip-length", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patch-backbone", default="self_stride8")
    parser.add_argument("--cycle-weight", type=float, default=1.0)
    parser.add_argument("--semantic-weight", type=float, default=1.0)
    parser.add_argument("--patch-weight", type=float, default=1.0)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train = clips(args.train_clips, args.frames, 128, first_seed=0)
    held_out = clips(args.held_out_clips, args.frames, 128, first_seed=1000)
    results = {}
    for name in args.runs:
        with tempfile.TemporaryDirectory() as out:
            options = FinetuneOptions(
                out_dir=out,
                config="tiny",
                steps=args.steps,
                batch_size=args.batch_size,
                clip_length=args.clip_length,
                lr=args.lr,
                save_every=args.steps,
                log_every=args.eval_every,
                seed=0,
                patch_backbone=args.patch_backbone,
                cycle_weight=args.cycle_weight,
                semantic_weight=args.semantic_weight,
                patch_weight=args.patch_weight,
                **RUNS[name],
            )
            start = time.perf_counter()
            result = finetune(
                options, train, evaluate=lambda model, step: {"iou": video_iou(model, held_out)}, eval_every=args.eval_every
            )
            wall = time.perf_counter() - start
        curve = [
            {"step": r["step"], "held_out_iou": round(r["iou"], 4), "loss": round(r["total"], 4)}
            for r in result["history"]
            if "iou" in r
        ]
        results[name] = {
            "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "out_dir"},
            "seconds_per_step": round(result["seconds_per_step"], 4),
            "wall_seconds": round(wall, 1),
            "curve": curve,
        }
        print(name, f"{result['seconds_per_step']:.3f} s/step", [(c["step"], c["held_out_iou"]) for c in curve], flush=True)
    record = {
        "benchmark": "robotseg_let",
        "machine": {"processor": platform.processor() or platform.machine(), "threads": args.threads},
        "setup": {k: v for k, v in vars(args).items() if k not in ("runs", "output")},
        "runs": results,
    }
    args.output.parent.mkdir(exist_ok=True)
    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    existing_runs = existing.get("runs", {}) if existing.get("setup") == record["setup"] else {}
    record["runs"] = {**existing_runs, **results}  # runs made separately with the same setup accumulate
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
