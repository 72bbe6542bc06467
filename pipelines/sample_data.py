"""The ``sample-data`` command: a small synthetic RLDS dataset with exact robot and object masks.

Episodes come from ``segmentation.synthetic.render`` (pybullet, CPU); this module writes
them in the Open X-Embodiment layout with TFDS, adding the ground-truth label maps as
``steps/observation/<camera>_robot_mask`` and the task objects' as
``steps/observation/<camera>_object_mask`` (0 none, k = object k) features. On request the
cameras move (``--camera-motion pan|shake``) and each frame is stored beside the same view
with the robot hidden, ``steps/observation/<camera>_true_plate`` (``--true-plate``): the
ground truth a clean plate is measured against. The result is a TFDS version folder
(``dataset_info.json``, ``features.json``, tfrecord shards) that
``tfds.builder_from_directory`` reads. The same arguments and seed give byte-identical
files, so the dataset can serve as a fixture for tests and demos.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import pathlib
import shutil
import sys
import tempfile
import time
import typing
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from pipelines.rlds_io import deterministic_serialization
from segmentation.labels import mask_feature_name, object_mask_feature_name

if typing.TYPE_CHECKING:
    from segmentation.synthetic import render

# pybullet prints a banner when imported, so ``render`` is imported only when rendering,
# not whenever the command line is built. These are its robots' names and camera motions.
ROBOT_NAMES = ("panda", "kuka", "xarm")
CAMERA_MOTIONS = ("none", "pan", "shake")

#: ``steps/observation/<camera><TRUE_PLATE_SUFFIX>``: the frame with the robot hidden.
TRUE_PLATE_SUFFIX = "_true_plate"

DATASET_NAME = "oxe_augment_sample"
DATASET_VERSION = "1.0.0"
SPLIT = "train"


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """Everything that determines the sample dataset's content."""

    episodes: int = 8
    steps: int = 16
    size: int = 128
    robots: tuple[str, ...] = ROBOT_NAMES
    cameras: int = 2
    wrist: bool = False
    seed: int = 0
    camera_motion: str = "none"  # one of CAMERA_MOTIONS
    true_plate: bool = False  # store <camera>_true_plate, the frame with the robot hidden

    def __post_init__(self):
        unknown = [r for r in self.robots if r not in ROBOT_NAMES]
        if unknown or not self.robots:
            raise ValueError(f"unknown robots {unknown or '(none given)'}; choose from {sorted(ROBOT_NAMES)}")
        if self.cameras not in (1, 2):
            raise ValueError(f"cameras must be 1 or 2, got {self.cameras}")
        if self.episodes < 1 or self.steps < 1 or self.size < 16:
            raise ValueError(f"need episodes >= 1, steps >= 1 and size >= 16; got {self}")
        if self.camera_motion not in CAMERA_MOTIONS:
            raise ValueError(f"camera motion must be one of {', '.join(CAMERA_MOTIONS)}, got {self.camera_motion!r}")

    @property
    def render_config(self) -> render.RenderConfig:
        from segmentation.synthetic import render

        return render.RenderConfig(
            size=self.size, cameras=self.cameras, wrist=self.wrist, camera_motion=self.camera_motion, true_plate=self.true_plate
        )

    def robot_of_episode(self, index: int) -> str:
        """Episodes cycle through the robots in the order given."""
        return self.robots[index % len(self.robots)]


def features_of(spec: SampleSpec) -> tfds.features.FeaturesDict:
    """The dataset's TFDS feature tree (OXE style, plus a robot and an object mask feature per camera)."""
    from segmentation.synthetic import render

    size = spec.size
    observation = {}
    for camera in spec.render_config.camera_names():
        observation[camera] = tfds.features.Image(
            shape=(size, size, 3), dtype=np.uint8, encoding_format="jpeg", doc=f"{camera} RGB camera."
        )
        observation[mask_feature_name(camera)] = tfds.features.Image(
            shape=(size, size, 1),
            dtype=np.uint8,
            encoding_format="png",
            doc=f"{camera} robot label map: 0 background, 1 robot body, 2 arm, 3 gripper.",
        )
        observation[object_mask_feature_name(camera)] = tfds.features.Image(
            shape=(size, size, 1),
            dtype=np.uint8,
            encoding_format="png",
            doc=f"{camera} task-object label map: 0 none, k = the k-th object placed on the table.",
        )
        if spec.true_plate:
            # PNG: ground truth, so no JPEG loss of its own.
            observation[true_plate_feature_name(camera)] = tfds.features.Image(
                shape=(size, size, 3),
                dtype=np.uint8,
                encoding_format="png",
                doc=f"{camera} with the robot hidden (the true clean plate), same camera pose and light.",
            )
    observation["state"] = tfds.features.Tensor(
        shape=(render.STATE_SIZE,),
        dtype=np.float32,
        doc="Arm joint positions (padded with zeros to 7) and gripper opening (1 open, 0 closed).",
    )
    step = {
        "observation": tfds.features.FeaturesDict(observation),
        "action": tfds.features.Tensor(
            shape=(render.ACTION_SIZE,),
            dtype=np.float32,
            doc="End-effector delta xyz (m), delta roll/pitch/yaw (rad), gripper opening target.",
        ),
        "reward": tfds.features.Scalar(dtype=np.float32, doc="1 on the last step, else 0."),
        "discount": tfds.features.Scalar(dtype=np.float32, doc="Always 1."),
        "is_first": tfds.features.Scalar(dtype=np.bool_),
        "is_last": tfds.features.Scalar(dtype=np.bool_),
        "is_terminal": tfds.features.Scalar(dtype=np.bool_),
        "language_instruction": tfds.features.Text(),
    }
    return tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(step),
            "episode_metadata": tfds.features.FeaturesDict(
                {
                    "file_path": tfds.features.Text(doc="Synthetic source name of the episode."),
                    "robot": tfds.features.Text(doc="panda, kuka or xarm."),
                }
            ),
        }
    )


def true_plate_feature_name(camera: str) -> str:
    """``<camera>_true_plate``: the feature holding ``camera``'s frames with the robot hidden."""
    return f"{camera}{TRUE_PLATE_SUFFIX}"


def episode_example(index: int, episode: render.RenderedEpisode) -> dict:
    """One rendered episode as a TFDS example (numpy values, encoded by the features)."""
    steps = []
    num_steps = len(episode.states)
    for t in range(num_steps):
        observation = {"state": episode.states[t]}
        for camera, frames in episode.frames.items():
            observation[camera] = frames[t]
            observation[mask_feature_name(camera)] = episode.label_maps[camera][t][..., None]
            observation[object_mask_feature_name(camera)] = episode.object_maps[camera][t][..., None]
            if episode.true_plates is not None:
                observation[true_plate_feature_name(camera)] = episode.true_plates[camera][t]
        last = t == num_steps - 1
        steps.append(
            {
                "observation": observation,
                "action": episode.actions[t],
                "reward": np.float32(1.0 if last else 0.0),
                "discount": np.float32(1.0),
                "is_first": t == 0,
                "is_last": last,
                "is_terminal": last,
                "language_instruction": episode.instruction,
            }
        )
    return {
        "steps": steps,
        "episode_metadata": {"file_path": f"sample/{episode.robot}/episode_{index:06d}", "robot": episode.robot},
    }


def render_sample_episode(spec: SampleSpec, index: int) -> render.RenderedEpisode:
    """Episode ``index`` of the dataset ``spec`` describes; depends only on (seed, index)."""
    from segmentation.synthetic import render

    rng = np.random.default_rng([spec.seed, index])
    return render.render_episode(spec.robot_of_episode(index), spec.steps, spec.render_config, rng)


def _motion_description(spec: SampleSpec) -> str:
    """The description's words on camera motion and true plates; empty for the default (static, none)."""
    text = ""
    if spec.camera_motion != "none":
        text += f" Third-person cameras move: {spec.camera_motion}."
    if spec.true_plate:
        text += " The frames with the robot hidden (true clean plates) in steps/observation/<camera>_true_plate."
    return text


class _SampleDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes the sample dataset; built only by :func:`write_sample_dataset`."""

    name = DATASET_NAME
    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES = {DATASET_VERSION: "Synthetic pybullet robots with exact part and task-object masks."}

    def __init__(self, *, spec: SampleSpec, data_dir: str, progress: Callable[[int, int], None] | None = None):
        self._spec = spec
        self._progress = progress
        super().__init__(data_dir=data_dir)

    def _info(self) -> tfds.core.DatasetInfo:
        spec = self._spec
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "oxe-augment sample data: pybullet robots "
                f"({', '.join(spec.robots)}), {spec.episodes} episodes x {spec.steps} steps, "
                f"{spec.size}x{spec.size} px, seed {spec.seed}. Ground-truth robot label maps "
                "in steps/observation/<camera>_robot_mask, task-object label maps (0 none, k = object k) "
                "in steps/observation/<camera>_object_mask." + _motion_description(spec)
            ),
            features=features_of(spec),
            # Episode i is record i, so episode keys (split/index) name the same episode
            # here and in any dataset derived from this one.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {SPLIT: self._generate_examples()}

    def _generate_examples(self):
        for index in range(self._spec.episodes):
            yield index, episode_example(index, render_sample_episode(self._spec, index))
            if self._progress:
                self._progress(index + 1, self._spec.episodes)


def write_sample_dataset(
    out_dir: str | pathlib.Path,
    *,
    episodes: int = 8,
    steps: int = 16,
    size: int = 128,
    robots: tuple[str, ...] | list[str] = ROBOT_NAMES,
    cameras: int = 2,
    wrist: bool = False,
    seed: int = 0,
    camera_motion: str = "none",
    true_plate: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pathlib.Path:
    """Render the sample dataset and write it as the TFDS version folder ``out_dir``.

    ``out_dir`` must not exist or be empty. Returns ``out_dir`` as a path; load it with
    ``tfds.builder_from_directory(out_dir)``. ``progress(done, total)`` is called after
    each rendered episode. ``camera_motion`` (none, pan, shake) moves the third-person
    cameras; ``true_plate`` adds each camera's frames with the robot hidden.
    """
    spec = SampleSpec(
        episodes=episodes,
        steps=steps,
        size=size,
        robots=tuple(robots),
        cameras=cameras,
        wrist=wrist,
        seed=seed,
        camera_motion=camera_motion,
        true_plate=true_plate,
    )
    out = pathlib.Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"output folder {out} exists and is not empty")

    # TFDS writes into <data_dir>/<name>/<version>; build in a scratch data_dir beside the
    # output (same filesystem, so the final moves are renames) and move the files up.
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sample-data-", dir=out.parent) as scratch:
        builder = _SampleDatasetBuilder(spec=spec, data_dir=scratch, progress=progress)
        # TFDS prints "downloaded and prepared to <scratch path>", which is not where the
        # dataset ends up.
        with contextlib.redirect_stdout(io.StringIO()), deterministic_serialization():
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP
                )
            )
        built = pathlib.Path(scratch) / DATASET_NAME / DATASET_VERSION
        out.mkdir(exist_ok=True)
        for path in sorted(built.iterdir()):
            shutil.move(str(path), out / path.name)
    return out


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sample-data`` subcommand."""
    parser = subparsers.add_parser(
        "sample-data",
        help="render a small synthetic RLDS dataset (pybullet robots) with ground-truth robot and object masks",
        description=(
            "Render pybullet robots (Franka Panda, KUKA iiwa + WSG-50, xArm6) on a table and write "
            "an RLDS dataset with ground-truth label maps in steps/observation/<camera>_robot_mask "
            "(0 background, 1 body, 2 arm, 3 gripper) and <camera>_object_mask (0 none, k = task "
            "object k). OUT becomes the TFDS version folder. "
            "The same arguments give byte-identical files."
        ),
    )
    parser.add_argument("out", metavar="OUT", help="output folder (the TFDS version folder; must be new or empty)")
    parser.add_argument("--episodes", type=int, default=8, help="number of episodes (default 8)")
    parser.add_argument("--steps", type=int, default=16, help="steps per episode (default 16)")
    parser.add_argument("--size", type=int, default=128, help="square image size in pixels (default 128)")
    parser.add_argument(
        "--robots",
        default=",".join(ROBOT_NAMES),
        help=f"comma-separated robots, episodes cycle through them (default {','.join(ROBOT_NAMES)})",
    )
    parser.add_argument("--cameras", type=int, choices=(1, 2), default=2, help="static third-person cameras (default 2)")
    parser.add_argument("--wrist", action="store_true", help="add a wrist camera (image_wrist)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--camera-motion",
        choices=CAMERA_MOTIONS,
        default="none",
        help="third-person cameras: none (static, default), pan (a slow 5-9 degree pan over the episode) "
        "or shake (hand-held jitter per frame, seeded)",
    )
    parser.add_argument(
        "--true-plate",
        action="store_true",
        help="also store each frame with the robot hidden as steps/observation/<camera>_true_plate (PNG): "
        "the ground truth for clean plates",
    )
    parser.set_defaults(handler=run_sample_data)


def run_sample_data(args: argparse.Namespace) -> int:
    """Handler of ``sample-data``: write the dataset with a progress line, print where it is."""
    from pipelines.console import Console, quiet_native_output

    robots = tuple(r.strip() for r in args.robots.split(",") if r.strip())
    tfds.disable_progress_bar()
    log_path = os.path.join(tempfile.gettempdir(), f"oxe-augment-sample-data-{os.getpid()}.log")
    # pybullet and TensorFlow print banners from C; without -v they go to a log file.
    native = contextlib.nullcontext(Console()) if getattr(args, "verbose", False) else quiet_native_output(log_path)
    start = time.monotonic()
    with native as console:

        def progress(done: int, total: int) -> None:
            elapsed = time.monotonic() - start
            eta = elapsed / done * (total - done)
            console.progress(f"rendered {done}/{total} episodes, {elapsed:.0f} s, ETA {eta:.0f} s", final=done == total)

        console.progress(f"rendering {args.episodes} episodes ({args.steps} steps, {args.size} px) ...")
        try:
            out = write_sample_dataset(
                args.out,
                episodes=args.episodes,
                steps=args.steps,
                size=args.size,
                robots=robots,
                cameras=args.cameras,
                wrist=args.wrist,
                seed=args.seed,
                camera_motion=args.camera_motion,
                true_plate=args.true_plate,
                progress=progress,
            )
            error = None
        except (ValueError, FileExistsError) as e:
            error = e
    if error is not None:
        print(f"sample-data: {error}", file=sys.stderr)
        return 2
    with contextlib.suppress(OSError):
        os.remove(log_path)
    print(f"wrote {args.episodes} episodes to {out} (dataset {DATASET_NAME} {DATASET_VERSION}, split {SPLIT})")
    return 0
