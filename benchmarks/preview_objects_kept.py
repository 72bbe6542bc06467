"""Before/after preview of demo episodes with the task objects kept, and the kept pixels' error.

Renders a small sample dataset (128 px), runs ``configs/demo.yaml`` on it in this process,
stacks the first episodes' contact sheets (rows: original, robot + object masks, the two
variants) into ``benchmarks/results/preview_objects_kept.png`` and writes the measured
mean absolute differences (kept objects, kept robot, replaced background, frame-to-frame
background change, and the JPEG noise floor of the unchanged frames) to
``benchmarks/results/preview_objects_kept.json``.

    .venv/bin/python benchmarks/preview_objects_kept.py [--episodes 3] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from augment.previews import write_png  # noqa: E402
from pipelines.cli import main as cli  # noqa: E402
from pipelines.sample_data import write_sample_dataset  # noqa: E402
from tests.test_augment_objects import FEATHER_PX, comparisons, dilated, eroded, jpeg_noise  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        sample = write_sample_dataset(
            Path(scratch) / "sample" / "oxe_augment_sample" / "1.0.0", episodes=args.episodes, steps=args.steps, size=128
        )
        out = Path(scratch) / "out"
        status = cli(
            [
                "run",
                "configs/demo.yaml",
                "--set",
                f"input.dir={sample}",
                "--set",
                f"output.dir={out}",
                "--",
                "--runner=DirectRunner",
                "--direct_running_mode=in_memory",
            ]
        )
        assert status == 0, status

        import cv2

        sheets = [
            cv2.imread(str(out / "previews" / f"train_{i:06d}_image_0.png"))[..., ::-1] for i in range(min(args.episodes, 3))
        ]
        write_png(str(RESULTS / "preview_objects_kept.png"), np.concatenate(sheets, axis=0))

        rows = []
        for name, camera, before, after, robot, objects in comparisons(sample, out / "oxe_augment_sample" / "1.0.0"):
            difference = np.abs(after - before).mean(axis=-1)
            noise = jpeg_noise(before)
            inner_objects, inner_robot = eroded(objects > 0, FEATHER_PX), eroded(robot, FEATHER_PX)
            outside = ~dilated(robot | (objects > 0), FEATHER_PX)
            both = outside[1:] & outside[:-1]
            rows.append(
                {
                    "episode_variant": name,
                    "camera": camera,
                    "objects_mad": round(float(difference[inner_objects].mean()), 2),
                    "objects_jpeg_floor": round(float(noise[inner_objects].mean()), 2),
                    "object_pixels": int(inner_objects.sum()),
                    "robot_mad": round(float(difference[inner_robot].mean()), 2),
                    "robot_jpeg_floor": round(float(noise[inner_robot].mean()), 2),
                    "background_mad": round(float(difference[outside].mean()), 1),
                    "background_frame_to_frame": round(float(np.abs(after[1:] - after[:-1]).mean(axis=-1)[both].mean()), 2),
                }
            )
    report = {
        "benchmark": "preview_objects_kept",
        "recipe": "configs/demo.yaml (objects kept), sample data 128 px",
        "episodes": args.episodes,
        "steps": args.steps,
        "measure": "mean absolute difference per pixel (mean over RGB), kept regions eroded and the background "
        f"dilated by the feather ({FEATHER_PX} px); jpeg_floor: the same measure for the unchanged frames re-encoded",
        "rows": rows,
    }
    (RESULTS / "preview_objects_kept.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'preview_objects_kept.png'} and .json")
    return report


if __name__ == "__main__":
    main()
