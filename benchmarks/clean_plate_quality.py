"""Clean plate quality against the true empty scene, for static, panning and shaking cameras.

Renders episodes with ``segmentation.synthetic.render`` (the same renderer as ``sample-data``)
together with their true plates (every frame again with the robot hidden), then builds the
clean plate of each (episode, camera) two ways, from the same frames and robot masks:

- ``static``: today's plate, the per-pixel median (``clean_plate``, ``motion: static``), one image
  for every frame;
- ``motion``: ``motion: auto``, frames aligned to the middle one before the median and the
  plate warped back into each frame (identical to ``static`` when the camera does not move).

Each plate is scored against each frame's true plate, over all frames, with PSNR (dB) and SSIM
(Wang et al. 2004: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, per RGB channel,
averaged), in two regions per frame: ``outside`` (pixels the robot does not cover in that
frame) and ``inside`` (pixels it covers: the scene there must come from other frames, the
hard part). ``inside`` mixes two kinds of pixel: those some other frame shows (where lining
frames up matters) and those no frame shows (the robot's base: both plates inpaint them the same
way). ``inside_uncovered`` is the first kind alone: inside pixels that some frame shows once the
frames are lined up (the alignment of ``motion: auto``, used to pick the same pixels for both
plates; for a static camera, the pixels the robot leaves at some step). The robot's shadow is in neither mask, so it counts against a plate in ``outside``
(the true plate has no shadow; neither plate can know).

Usage: ``python benchmarks/clean_plate_quality.py [--episodes 3] [--steps 24] [--size 128]``;
writes benchmarks/results/clean_plate_quality.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from backgrounds.base import BackgroundRequest  # noqa: E402
from backgrounds.clean_plate import CleanPlateOptions, dilated_masks, episode_clean_plate, moving_clean_plate  # noqa: E402

MOTIONS = ("none", "pan", "shake")
ROBOTS = ("panda", "kuka", "xarm")


def squared_error(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> tuple[float, int]:
    """Sum of squared differences of two ``(..., H, W, 3)`` uint8 images over ``region`` (``(..., H, W)``
    bool), and the number of values summed."""
    error = (a.astype(np.float64) - b.astype(np.float64))[region]
    return float((error**2).sum()), int(error.size)


def psnr_of(total: float, count: int) -> float:
    """PSNR in dB from a sum of squared errors over ``count`` values (inf when they are all exact)."""
    if count == 0:
        return float("nan")
    mse = total / count
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two ``(H, W, 3)`` uint8 images (Wang et al. 2004), averaged over the channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim.mean(axis=-1)


def scores(plates: np.ndarray, truth: np.ndarray, robot: np.ndarray, uncovered: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM of per-frame ``plates`` against ``truth`` (both ``(T, H, W, 3)``) outside and
    inside ``robot``, and on the ``uncovered`` part of inside."""
    ssim = np.stack([ssim_map(p, t) for p, t in zip(plates, truth)])
    result = {}
    for region, mask in (("outside", ~robot), ("inside", robot), ("inside_uncovered", uncovered)):
        total, count = squared_error(plates, truth, mask)
        result[f"psnr_{region}"] = psnr_of(total, count)
        result[f"sse_{region}"], result[f"values_{region}"] = total, count
    return {
        **result,
        "ssim_outside": float(ssim[~robot].mean()),
        "ssim_inside": float(ssim[robot].mean()),
        "ssim_inside_uncovered": float(ssim[uncovered].mean()),
    }


def uncovered_region(frames: np.ndarray, robot: np.ndarray) -> np.ndarray:
    """``(T, H, W)``: robot pixels of each frame that some frame shows, once frames are lined up."""
    options = CleanPlateOptions()
    canvas, to_canvas, _, _ = moving_clean_plate(frames, robot, options.dilate_px, options.inpaint_radius, options.alignment)
    hidden = dilated_masks(robot, options.dilate_px)
    size = (canvas.shape[1], canvas.shape[0])
    seen = np.zeros(canvas.shape[:2], bool)
    for i, to in enumerate(to_canvas):
        if to is not None:
            seen |= cv2.warpPerspective((~hidden[i]).astype(np.uint8), to, size, flags=cv2.INTER_NEAREST) > 0
    height, width = frames.shape[1:3]
    back = [
        cv2.warpPerspective(seen.astype(np.uint8), to, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        for to in to_canvas
    ]
    return robot & np.stack(back)


def evaluate_clip(frames: np.ndarray, robot: np.ndarray, truth: np.ndarray, key: str, camera: str) -> dict:
    """Both plates of one camera clip, scored; with the motion plate's notes and time."""
    request = BackgroundRequest(key, camera, 0, 0, frames, robot, np.ones(frames.shape[1:3], bool))
    uncovered = uncovered_region(frames, robot)
    result = {"inside_pixels": int(robot.sum()), "inside_uncovered_pixels": int(uncovered.sum())}
    for name, motion in (("static", "static"), ("motion", "auto")):
        start = time.perf_counter()
        plate = episode_clean_plate(request, CleanPlateOptions(motion=motion))
        seconds = time.perf_counter() - start
        per_frame = np.asarray(plate.plate)
        if per_frame.ndim == 3:
            per_frame = np.repeat(per_frame[None], len(frames), axis=0)
        result[name] = {**scores(per_frame, truth, robot, uncovered), "seconds": round(seconds, 3), "moving": plate.moving}
        if plate.notes:
            result[name]["notes"] = list(plate.notes)
    return result


def mean_scores(clips: list[dict], method: str) -> dict[str, float]:
    """PSNR pooled over the clips (their squared errors summed: one exact clip does not make it
    infinite), SSIM and seconds averaged over the clips."""
    summary = {}
    for region in ("outside", "inside", "inside_uncovered"):
        total = sum(c[method][f"sse_{region}"] for c in clips)
        count = sum(c[method][f"values_{region}"] for c in clips)
        summary[f"psnr_{region}"] = round(psnr_of(total, count), 2)
    for key in ("ssim_outside", "ssim_inside", "ssim_inside_uncovered", "seconds"):
        summary[key] = round(float(np.mean([c[method][key] for c in clips])), 4 if key.startswith("ssim") else 2)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3, help="episodes per camera motion (robots cycle)")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "clean_plate_quality"))
    args = parser.parse_args()

    from segmentation.synthetic import render

    results: dict = {
        "settings": {
            "episodes_per_motion": args.episodes,
            "steps": args.steps,
            "size": args.size,
            "cameras": 2,
            "plate_options": "CleanPlateOptions() defaults; static = motion: static, motion = motion: auto",
            "frames": "raw renders (no JPEG), robot mask = exact label map > 0; task objects are part of the scene",
        },
        "motions": {},
    }
    for motion in MOTIONS:
        clips = []
        for index in range(args.episodes):
            robot_name = ROBOTS[index % len(ROBOTS)]
            config = render.RenderConfig(size=args.size, cameras=2, camera_motion=motion, true_plate=True)
            # Same seeds for every motion: the same scenes and robot motions, only the camera differs.
            episode = render.render_episode(robot_name, args.steps, config, np.random.default_rng([0, index]))
            for camera in config.camera_names():
                robot = episode.label_maps[camera] > 0
                clip = evaluate_clip(episode.frames[camera], robot, episode.true_plates[camera], f"{motion}/{index}", camera)
                clip.update(episode=index, robot=robot_name, camera=camera)
                clips.append(clip)
                print(
                    f"{motion:5s} ep {index} {camera}: inside PSNR static {clip['static']['psnr_inside']:.2f} "
                    f"motion {clip['motion']['psnr_inside']:.2f}; outside {clip['static']['psnr_outside']:.2f} "
                    f"/ {clip['motion']['psnr_outside']:.2f}",
                    flush=True,
                )
        static, moving = mean_scores(clips, "static"), mean_scores(clips, "motion")
        results["motions"][motion] = {
            "static": static,
            "motion": moving,
            "gain_psnr_inside_db": round(moving["psnr_inside"] - static["psnr_inside"], 2),
            "gain_psnr_outside_db": round(moving["psnr_outside"] - static["psnr_outside"], 2),
            "gain_psnr_inside_uncovered_db": round(moving["psnr_inside_uncovered"] - static["psnr_inside_uncovered"], 2),
            "inside_uncovered_fraction": round(
                sum(c["inside_uncovered_pixels"] for c in clips) / sum(c["inside_pixels"] for c in clips), 3
            ),
            "clips": clips,
        }

    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=2, default=float)
    lines = [
        "# Clean plate quality against the true plate",
        "",
        f"{args.episodes} episodes x 2 cameras per camera motion, {args.steps} steps, {args.size} px; "
        "PSNR (dB) pooled over the clips' pixels, SSIM averaged over the clips, per region. `static` = today's per-pixel median "
        "(`motion: static`), `motion` = `motion: auto`. Written by `benchmarks/clean_plate_quality.py`.",
        "",
        "| camera | plate | PSNR inside robot | PSNR inside, uncovered part | PSNR outside | SSIM inside | "
        "SSIM inside, uncovered | SSIM outside | s per clip |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for motion, entry in results["motions"].items():
        for method in ("static", "motion"):
            s = entry[method]
            lines.append(
                f"| {motion} | {method} | {s['psnr_inside']:.2f} | {s['psnr_inside_uncovered']:.2f} | {s['psnr_outside']:.2f} | "
                f"{s['ssim_inside']:.4f} | {s['ssim_inside_uncovered']:.4f} | {s['ssim_outside']:.4f} | {s['seconds']:.2f} |"
            )
    lines += [
        "",
        "| camera | PSNR gain inside (dB) | PSNR gain inside, uncovered part (dB) | PSNR gain outside (dB) | uncovered share of inside |",
        "|---|---|---|---|---|",
    ]
    for motion, entry in results["motions"].items():
        lines.append(
            f"| {motion} | {entry['gain_psnr_inside_db']:+.2f} | {entry['gain_psnr_inside_uncovered_db']:+.2f} | "
            f"{entry['gain_psnr_outside_db']:+.2f} | {entry['inside_uncovered_fraction']:.2f} |"
        )
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
