"""Demonstrations: recorded by the scripted expert, written and read as an RLDS dataset.

The dataset has the Open X-Embodiment layout with one camera, ``image``, and the
renderer's exact label maps stored beside it as ``image_robot_mask`` (0 background,
1 body, 2 arm, 3 gripper) and ``image_object_mask`` (0 none, k = task object k), the
features ``oxe-augment``'s ``segmentation.source: dataset`` reads. It is read back with
``tfds.builder_from_directory(...).as_dataset(...)``, as a policy team would read the
augmented output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
import shutil
import tempfile
from typing import Callable

import numpy as np

from policy_bench.scenes import TRAIN, TRAIN_SEED_SPACE
from policy_bench.sim import ACTION_SIZE, CAMERA, PROPRIO_SIZE, TabletopEnv
from policy_bench.tasks import EXPERT_NOISE, TASKS

DATASET_NAME = "policy_bench_demos"
DATASET_VERSION = "1.0.0"


@dataclasses.dataclass
class Demo:
    """One episode: frames, label maps, proprioception and the actions taken."""

    task: str
    images: np.ndarray  # (T, H, W, 3) uint8
    robot_masks: np.ndarray  # (T, H, W) uint8
    object_masks: np.ndarray  # (T, H, W) uint8
    proprio: np.ndarray  # (T, PROPRIO_SIZE) float32
    actions: np.ndarray  # (T, ACTION_SIZE) float32: action t was taken after frame t


def run_expert(env: TabletopEnv, task_name: str, rng: np.random.Generator) -> tuple[Demo, bool]:
    """One expert episode in ``env``; returns the recording and whether it succeeded."""
    task = TASKS[task_name]
    obs = env.reset(task.place, rng)
    images, robot, objects, proprio, actions = [], [], [], [], []
    for t in range(task.horizon):
        action = task.expert(env, t).astype(np.float64)
        action[:3] += rng.normal(0.0, EXPERT_NOISE, 3)
        images.append(obs.image)
        robot.append(obs.robot_mask)
        objects.append(obs.object_mask)
        proprio.append(obs.proprio)
        actions.append(action.astype(np.float32))
        obs = env.step(action)
    demo = Demo(task_name, np.stack(images), np.stack(robot), np.stack(objects), np.stack(proprio), np.stack(actions))
    return demo, task.success(env)


def record_demos(
    tasks: list[str], per_task: int, size: int, seed: int, cache_dir: str | None = None, progress: Callable[[str], None] = print
) -> list[Demo]:
    """``per_task`` successful expert demonstrations of each task, all in the training scene.

    Failed expert episodes are left out (as a team would discard them); episode seeds are
    ``[TRAIN_SEED_SPACE, seed, task index, attempt]``, disjoint from the evaluation seeds
    (``policy_bench.rollout.rollout_seed``, which start with ``EVAL_SEED_SPACE``).
    """
    env = TabletopEnv(TRAIN, size=size, cache_dir=cache_dir)
    demos = []
    try:
        for task_index, name in enumerate(tasks):
            kept, attempt = 0, 0
            while kept < per_task:
                if attempt >= 3 * per_task:
                    raise RuntimeError(f"the {name} expert failed too often ({attempt - kept} of {attempt})")
                demo, ok = run_expert(env, name, np.random.default_rng([TRAIN_SEED_SPACE, seed, task_index, attempt]))
                attempt += 1
                if ok:
                    demos.append(demo)
                    kept += 1
            progress(f"  demos: {name}: {kept} kept of {attempt} expert episodes")
    finally:
        env.close()
    return demos


def instruction_of(task: str) -> str:
    return TASKS[task].instruction


def task_of(instruction: str) -> str:
    """The task an instruction names (the dataset stores instructions, as OXE does)."""
    for name, task in TASKS.items():
        if task.instruction == instruction:
            return name
    raise ValueError(f"no task has the instruction {instruction!r}")


def _features(size: int):
    import tensorflow_datasets as tfds

    image = dict(shape=(size, size, 1), dtype=np.uint8, encoding_format="png")
    step = {
        "observation": tfds.features.FeaturesDict(
            {
                CAMERA: tfds.features.Image(
                    shape=(size, size, 3), dtype=np.uint8, encoding_format="png", doc="Fixed RGB camera."
                ),
                f"{CAMERA}_robot_mask": tfds.features.Image(
                    **image, doc="Robot label map: 0 background, 1 body, 2 arm, 3 gripper."
                ),
                f"{CAMERA}_object_mask": tfds.features.Image(**image, doc="Task objects: 0 none, k = task object k."),
                "state": tfds.features.Tensor(
                    shape=(PROPRIO_SIZE,), dtype=np.float32, doc="Finger-tip xyz (m), gripper opening."
                ),
            }
        ),
        "action": tfds.features.Tensor(shape=(ACTION_SIZE,), dtype=np.float32, doc="Finger-tip delta xyz (m), gripper (1 open)."),
        "reward": tfds.features.Scalar(dtype=np.float32),
        "discount": tfds.features.Scalar(dtype=np.float32),
        "is_first": tfds.features.Scalar(dtype=np.bool_),
        "is_last": tfds.features.Scalar(dtype=np.bool_),
        "is_terminal": tfds.features.Scalar(dtype=np.bool_),
        "language_instruction": tfds.features.Text(),
    }
    return tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(step),
            "episode_metadata": tfds.features.FeaturesDict({"file_path": tfds.features.Text()}),
        }
    )


def _example(index: int, demo: Demo) -> dict:
    steps = []
    count = len(demo.actions)
    for t in range(count):
        last = t == count - 1
        steps.append(
            {
                "observation": {
                    CAMERA: demo.images[t],
                    f"{CAMERA}_robot_mask": demo.robot_masks[t][..., None],
                    f"{CAMERA}_object_mask": demo.object_masks[t][..., None],
                    "state": demo.proprio[t],
                },
                "action": demo.actions[t],
                "reward": np.float32(last),
                "discount": np.float32(1.0),
                "is_first": t == 0,
                "is_last": last,
                "is_terminal": last,
                "language_instruction": instruction_of(demo.task),
            }
        )
    return {"steps": steps, "episode_metadata": {"file_path": f"policy_bench/{demo.task}/episode_{index:06d}"}}


def write_dataset(demos: list[Demo], out_dir: str | pathlib.Path) -> pathlib.Path:
    """Write ``demos`` as the TFDS version folder ``out_dir`` (split ``train``); returns it."""
    import tensorflow_datasets as tfds

    size = demos[0].images.shape[1]

    class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = DATASET_NAME
        VERSION = tfds.core.Version(DATASET_VERSION)
        RELEASE_NOTES = {DATASET_VERSION: "policy-bench demonstrations."}

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=_features(size), disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for index, demo in enumerate(demos):
                yield index, _example(index, demo)

    tfds.disable_progress_bar()
    out = pathlib.Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".policy-bench-", dir=out.parent) as scratch:
        with contextlib.redirect_stdout(io.StringIO()):
            _Builder(data_dir=scratch).download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP
                )
            )
        shutil.move(str(pathlib.Path(scratch) / DATASET_NAME / DATASET_VERSION), out)
    return out


def read_dataset(dataset_dir: str | pathlib.Path) -> list[Demo]:
    """Every episode of a dataset written by :func:`write_dataset` or augmented by ``oxe-augment run``."""
    import tensorflow_datasets as tfds

    dataset = tfds.builder_from_directory(str(dataset_dir)).as_dataset(split="train")
    demos = []
    for episode in tfds.as_numpy(dataset):
        steps = list(episode["steps"])
        observation = [s["observation"] for s in steps]
        masks = CAMERA + "_robot_mask" in observation[0]
        shape = observation[0][CAMERA].shape[:2]
        demos.append(
            Demo(
                task=task_of(steps[0]["language_instruction"].decode()),
                images=np.stack([o[CAMERA] for o in observation]),
                robot_masks=np.stack([o[f"{CAMERA}_robot_mask"][..., 0] for o in observation])
                if masks
                else np.zeros((len(steps), *shape), np.uint8),
                object_masks=np.stack([o[f"{CAMERA}_object_mask"][..., 0] for o in observation])
                if masks
                else np.zeros((len(steps), *shape), np.uint8),
                proprio=np.stack([o["state"] for o in observation]),
                actions=np.stack([s["action"] for s in steps]),
            )
        )
    return demos


def degrade_masks(demos: list[Demo], seed: int, pixels: int = 2, drop: float = 0.2) -> list[Demo]:
    """The errors a mask model makes: each episode's masks eroded or dilated, some frames' masks lost.

    Per episode one of erode/dilate (by ``pixels``) is drawn for the robot and the object
    masks; a fraction ``drop`` of frames lose both masks (all background), as when a
    tracker drops out.
    """
    import cv2

    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    out = []
    for index, demo in enumerate(demos):
        rng = np.random.default_rng([seed, index])
        grow = rng.random() < 0.5
        op = cv2.dilate if grow else cv2.erode
        robot = np.stack([op(m, kernel) for m in demo.robot_masks])
        objects = np.stack([op(m, kernel) for m in demo.object_masks])
        dropped = rng.random(len(robot)) < drop
        robot[dropped] = 0
        objects[dropped] = 0
        out.append(dataclasses.replace(demo, robot_masks=robot, object_masks=objects))
    return out
