"""policy-bench: statistics, scenes, the expert, reproducible rollouts, bad input, and the quick run end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from policy_bench import bench, demos, policy, rollout, scenes, sim, stats, tasks

ROOT = pathlib.Path(__file__).resolve().parents[1]


# -- statistics ---------------------------------------------------------------------------


def _wilson_by_formula(k: int, n: int) -> tuple[float, float]:
    # (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = Phi^-1(0.975)
    z = 1.959963984540054
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


@pytest.mark.parametrize("k, n", [(8, 10), (0, 10), (10, 10), (1, 20), (37, 60)])
def test_wilson_interval_is_the_textbook_one(k, n):
    low, high = stats.wilson(k, n)
    expected = _wilson_by_formula(k, n)
    assert low == pytest.approx(expected[0], abs=1e-12) and high == pytest.approx(expected[1], abs=1e-12)


def test_wilson_known_values():
    # Published values (e.g. Newcombe 1998, Table I): 8/10 -> 0.4902-0.9433, 0/10 -> 0-0.2775.
    assert stats.wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert stats.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)


def _records(arm: str, successes: dict[int, list[bool]]) -> list[dict]:
    return [
        {"arm": arm, "seed": seed, "condition": "backdrop", "rollout": i, "success": s}
        for seed, outcomes in successes.items()
        for i, s in enumerate(outcomes)
    ]


def test_paired_bootstrap_difference_and_interval():
    rng = np.random.default_rng(0)
    base = {seed: [bool(x) for x in rng.random(40) < 0.3] for seed in range(3)}
    better = {seed: [True if i % 2 == 0 else s for i, s in enumerate(outcomes)] for seed, outcomes in base.items()}
    diff, low, high = stats.paired_bootstrap(_records("a", better), _records("b", base))
    expected = np.mean([int(b) - int(a) for seed in base for a, b in zip(base[seed], better[seed])])
    assert diff == pytest.approx(expected) and 0 < low < diff < high
    same = stats.paired_bootstrap(_records("a", base), _records("b", base))
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no paired"):
        stats.paired_bootstrap(_records("a", base), [])


# -- scenes -------------------------------------------------------------------------------


def test_each_test_scene_changes_its_axis_and_only_it():
    conditions = scenes.test_conditions()
    assert set(conditions) == {"train", "all", *scenes.AXES}
    assert conditions["train"] == scenes.TRAIN
    for axis, fields in scenes.AXES.items():
        assert scenes.TRAIN.differing_fields(conditions[axis]) == set(fields), axis
    assert scenes.TRAIN.differing_fields(conditions["all"]) == {f for fields in scenes.AXES.values() for f in fields}


def _first_frame(scene: scenes.Scene, tmp_path) -> sim.Observation:
    env = sim.TabletopEnv(scene, size=64, cache_dir=tmp_path)
    try:
        env.reset(tasks.TASKS["lift"].place, np.random.default_rng(rollout.rollout_seed(0)))
        return env.step(np.array([0.0, 0.0, -0.03, 1.0]))
    finally:
        env.close()


def test_test_scenes_render_differently_only_where_their_axis_acts(tmp_path):
    conditions = scenes.test_conditions()
    train = _first_frame(conditions["train"], tmp_path)
    seen = train.robot_mask > 0
    objects = train.object_mask > 0
    assert seen.any() and objects.any()
    frames = {name: _first_frame(scene, tmp_path) for name, scene in conditions.items() if name not in ("train", "all")}
    for name, frame in frames.items():
        assert not np.array_equal(frame.image, train.image), name
        if name != "camera":
            np.testing.assert_array_equal(frame.robot_mask, train.robot_mask, err_msg=name)
            np.testing.assert_array_equal(frame.object_mask, train.object_mask, err_msg=name)
    # Table and backdrop: robot and object pixels untouched, the rest changes.
    for name in ("table", "backdrop"):
        keep = seen | objects
        np.testing.assert_array_equal(frames[name].image[keep], train.image[keep], err_msg=name)
    # Light recolours the robot itself; the camera shift moves it.
    assert not np.array_equal(frames["light"].image[seen], train.image[seen])
    assert not np.array_equal(frames["camera"].robot_mask, train.robot_mask)
    # Distractors add objects that are not task objects and leave the robot's pixels.
    np.testing.assert_array_equal(frames["distractors"].image[seen], train.image[seen])
    noise = frames["noise"].image.astype(float) - train.image.astype(float)
    assert 5 < noise.std() < 20


def test_test_images_cannot_come_from_the_recipes():
    recipe = yaml.safe_load((ROOT / "configs" / "textures.yaml").read_text())
    recipe_kinds = set(recipe["background"]["kinds"])
    for name, scene in scenes.test_conditions().items():
        if name == "train":
            continue
        for look in (scene.table, scene.backdrop):
            if look != getattr(scenes.TRAIN, "table" if look is scene.table else "backdrop"):
                assert look.kind not in recipe_kinds and look.seed[0] == scenes.EVAL_SEED_SPACE


def test_eval_backgrounds_inside_a_recipe_library_are_refused(tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(library / "room.png")
    recipe = tmp_path / "images.yaml"
    recipe.write_text(yaml.safe_dump({"name": "images", "background": {"source": "images", "path": str(library)}}))
    with pytest.raises(bench.BenchError, match="inside"):
        bench.check_no_leak([recipe], bench.eval_background_files(str(library)))
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    (elsewhere / "copy.png").write_bytes((library / "room.png").read_bytes())
    with pytest.raises(bench.BenchError, match="same image"):
        bench.check_no_leak([recipe], bench.eval_background_files(str(elsewhere)))
    Image.new("RGB", (32, 32), (200, 10, 30)).save(elsewhere / "copy.png")
    bench.check_no_leak([recipe], bench.eval_background_files(str(elsewhere)))  # a different photo is fine
    photo_scene = scenes.test_conditions(bench.eval_background_files(str(elsewhere)))["backdrop"]
    assert photo_scene.backdrop.kind == "photo" and scenes.render_look(photo_scene.backdrop)[0, 0].tolist() == [200, 10, 30]


def test_the_parser_knows_every_size_without_importing_the_benchmark():
    from policy_bench import cli

    assert cli.SIZE_NAMES == tuple(bench.SIZES)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipelines.cli import build_parser; build_parser(); print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eval-backgrounds", "/nonexistent/photos"], "is not a folder"),
        (["--recipe", "/nonexistent/recipe.yaml"], "does not exist"),
        (
            ["--recipe", str(ROOT / "configs" / "textures.yaml"), "--recipe", str(ROOT / "configs" / "textures.yaml")],
            "share a name",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args, message, tmp_path, capsys):
    from pipelines.cli import main

    assert main(["policy-bench", "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err


# -- expert and rollouts ----------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_expert_succeeds_in_the_training_scene(task):
    # Physics only (no camera), so 40 episodes take seconds; demonstrations render the same episodes.
    env = sim.TabletopEnv(scenes.TRAIN, render=False)
    try:
        outcomes = [demos.run_expert(env, task, np.random.default_rng([99, i]))[1] for i in range(40)]
    finally:
        env.close()
    assert sum(outcomes) >= 38, f"{task}: expert succeeded in {sum(outcomes)}/40"


def _trace(model: policy.Policy, scene: scenes.Scene, seed: list[int], tmp_path) -> np.ndarray:
    env = sim.TabletopEnv(scene, size=32, cache_dir=tmp_path)
    try:
        obs = env.reset(tasks.TASKS["push"].place, np.random.default_rng(seed))
        trace = [obs.proprio]
        for _ in range(6):
            obs = env.step(policy.act(model, obs.image, obs.proprio, "push"))
            trace.append(obs.proprio)
        return np.stack(trace)
    finally:
        env.close()


def test_rollouts_are_reproducible_with_a_seed(tmp_path):
    torch.manual_seed(0)
    model = policy.Policy(size=32).eval()
    scene = scenes.test_conditions()["all"]  # sensor noise included: it is seeded too
    first = _trace(model, scene, rollout.rollout_seed(3), tmp_path)
    np.testing.assert_array_equal(first, _trace(model, scene, rollout.rollout_seed(3), tmp_path))
    assert not np.array_equal(first, _trace(model, scene, rollout.rollout_seed(4), tmp_path))
    records = rollout.evaluate(model, scene, 1, ["lift", "push"], 32, str(tmp_path))
    assert records == rollout.evaluate(model, scene, 1, ["lift", "push"], 32, str(tmp_path))
    assert [r["task"] for r in records] == ["lift"] and records[0]["steps"] >= 1


def test_baseline_augment_crops_and_jitters():
    images = torch.rand(4, 3, 16, 16)
    out = policy.baseline_augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    assert not torch.allclose(out, images)
    same = policy.baseline_augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)


def test_degraded_masks_differ_from_the_exact_ones():
    mask = np.zeros((10, 16, 16), np.uint8)
    mask[:, 5:11, 5:11] = 2
    demo = demos.Demo(
        "lift",
        np.zeros((10, 16, 16, 3), np.uint8),
        mask,
        mask.copy(),
        np.zeros((10, 4), np.float32),
        np.zeros((10, 4), np.float32),
    )
    (degraded,) = demos.degrade_masks([demo], seed=0, pixels=1, drop=0.3)
    kept = degraded.robot_masks.reshape(10, -1).any(axis=1)
    assert 0 < kept.sum() < 10  # some frames lost their masks
    areas = {int((m > 0).sum()) for m in degraded.robot_masks[kept]}
    assert areas == {64} or areas == {16}  # dilated to 8x8 or eroded to 4x4 from 6x6


# -- the quick run, end to end -------------------------------------------------------------------


@pytest.mark.slow
def test_quick_run_writes_results_summary_and_plot(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "policy-bench", "--size", "quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    size = bench.SIZES["quick"]
    arms = ["none", "baseline", "recipe:textures", "recipe:textures+baseline", "degraded-masks:textures"]
    assert results["arms"] == arms
    assert len(results["rollouts"]) == len(arms) * size.seeds * len(size.conditions) * size.rollouts
    assert {tuple(sorted(r)) for r in results["rollouts"]} == {
        ("arm", "condition", "rollout", "seed", "steps", "success", "task")
    }
    # The recipe arms trained on what oxe-augment wrote: its dataset holds the source episodes and 3 variants each.
    source = demos.read_dataset(out / "work" / "source" / "demos" / demos.DATASET_NAME / demos.DATASET_VERSION)
    augmented = demos.read_dataset(out / "work" / "augmented" / "recipe-0" / demos.DATASET_NAME / demos.DATASET_VERSION)
    assert len(augmented) == 4 * len(source) == 4 * 2 * size.demos_per_task
    summary = (out / "summary.md").read_text()
    for arm in arms:
        assert arm in summary
    assert "unseen (pooled)" in summary and summary.strip() in done.stdout  # the table, printed at the end
    with Image.open(out / "results.png") as image:
        assert image.size[0] > 300 and image.size[1] > 200
    assert "oxe-augment run" in done.stderr and "[5/5]" in done.stderr  # progress
    assert "oneDNN" not in done.stderr  # TensorFlow's native chatter went to the log file
    assert dataclasses.asdict(size)["rollouts"] == results["size"]["rollouts"]
