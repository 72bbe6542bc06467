"""Diffusion-inpainted backgrounds through the Beam pipeline (RunInference), tiny model on CPU."""

from __future__ import annotations

import numpy as np

from pipelines.episode import decode_image
from tests.conftest import IN_PROCESS, read_report, run_cli
from tests.rlds_helpers import provenance, raw_examples
from tests.tiny_inpaint_pipeline import save_tiny_sd_inpaint


def test_diffusion_recipe_runs_end_to_end(sample_dir, tmp_path):
    model = save_tiny_sd_inpaint(tmp_path / "tiny-sd-inpaint")
    out = tmp_path / "out"
    status = run_cli(
        "run",
        "configs/diffusion_inpaint.yaml",
        "--set",
        f"input.dir={sample_dir}",
        "--set",
        f"output.dir={out}",
        "--set",
        f"background.model={model}",
        "--set",
        "background.steps=2",
        "--set",
        "background.resolution=64",
        "--set",
        "input.max_episodes=2",
        *IN_PROCESS,
    )
    assert status == 0
    report = read_report(out)
    assert (report["episodes_in"], report["episodes_written"], report["output_episodes"]) == (2, 2, 4)
    assert report["seconds_per_stage"]["background"] > 0

    source = raw_examples(sample_dir, "train")
    variants = {}
    for example in raw_examples(out / "oxe_augment_sample" / "1.0.0", "train"):
        origin = provenance(example)
        frames = np.stack([decode_image(s["observation"]["image_0"], "image_0") for s in example["steps"]])
        variants[(origin["source_key"], origin["variant"])] = frames
        original = source[int(origin["source_key"].split("/")[1])]
        before = np.stack([decode_image(s["observation"]["image_0"], "image_0") for s in original["steps"]])
        robot = np.stack([decode_image(s["observation"]["image_0_robot_mask"], "m") for s in original["steps"]]) > 0
        far = ~np.any(robot, axis=0)
        assert np.abs(frames.astype(int) - before.astype(int))[:, far].mean() > 5  # the scene was repainted
    assert set(variants) == {(f"train/{i:06d}", f"v{v}") for i in range(2) for v in range(2)}
    # Two variants of one episode are painted from different seeds.
    assert not np.array_equal(variants[("train/000000", "v0")], variants[("train/000000", "v1")])
