"""The sample-data command: pybullet episodes written as an RLDS dataset with exact masks."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pybullet
import pybullet_data
import pytest
import tensorflow_datasets as tfds
from scipy import ndimage

from pipelines import sample_data
from pipelines.rlds_io import describe_observation
from segmentation.labels import ARM, BACKGROUND, BODY, GRIPPER, mask_feature_name, object_mask_feature_name
from segmentation.synthetic import render
from tests.conftest import run_cli

REPO = pathlib.Path(__file__).resolve().parents[1]
# The acceptance size of the issue: 3 episodes (one per robot) x 8 steps x 128 px.
ACCEPTANCE_ARGS = ["--episodes", "3", "--steps", "8", "--size", "128"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("sample") / "oxe_augment_sample" / "1.0.0"
    assert run_cli(*["sample-data", str(out), *ACCEPTANCE_ARGS]) == 0
    return out


@pytest.fixture(scope="module")
def episodes(dataset_dir) -> list[dict]:
    builder = tfds.builder_from_directory(str(dataset_dir))
    result = []
    for episode in tfds.as_numpy(builder.as_dataset("train", shuffle_files=False)):
        result.append({"metadata": episode["episode_metadata"], "steps": list(episode["steps"])})
    return result


def test_folder_is_exactly_the_tfds_version_folder(dataset_dir):
    names = sorted(p.name for p in dataset_dir.iterdir())
    assert names == ["dataset_info.json", "features.json", "oxe_augment_sample-train.tfrecord-00000-of-00001"]
    info = json.loads((dataset_dir / "dataset_info.json").read_text())
    assert info["name"] == "oxe_augment_sample" and info["version"] == "1.0.0"
    assert info["splits"][0]["name"] == "train" and info["splits"][0]["shardLengths"] == ["3"]
    for name in ("dataset_info.json", "features.json"):
        text = (dataset_dir / name).read_text()
        assert str(dataset_dir.parent.parent) not in text and "/tmp" not in text, name


def test_schema(dataset_dir):
    builder = tfds.builder_from_directory(str(dataset_dir))
    assert (builder.info.name, str(builder.info.version)) == ("oxe_augment_sample", "1.0.0")
    observation = builder.info.features["steps"]["observation"]
    for camera in ("image_0", "image_1"):
        assert observation[camera].shape == (128, 128, 3)
        assert observation[camera].encoding_format == "jpeg"
        for name in (mask_feature_name(camera), object_mask_feature_name(camera)):
            mask = observation[name]
            assert mask.shape == (128, 128, 1) and mask.encoding_format == "png", name
    assert "image_wrist" not in observation
    assert not [name for name in observation.keys() if name.endswith("_true_plate")]  # only when asked
    assert observation["state"].shape == (8,)
    assert builder.info.features["steps"]["action"].shape == (7,)


def test_episodes_cycle_robots_and_flag_steps(episodes):
    assert [e["metadata"]["robot"].decode() for e in episodes] == ["panda", "kuka", "xarm"]
    assert [e["metadata"]["file_path"].decode() for e in episodes][0] == "sample/panda/episode_000000"
    for episode in episodes:
        steps = episode["steps"]
        assert len(steps) == 8
        assert [bool(s["is_first"]) for s in steps] == [True] + [False] * 7
        assert [bool(s["is_last"]) for s in steps] == [False] * 7 + [True]
        assert [bool(s["is_terminal"]) for s in steps] == [False] * 7 + [True]
        assert [float(s["reward"]) for s in steps] == [0.0] * 7 + [1.0]
        assert steps[0]["language_instruction"].decode().split()[0] in {"pick", "push", "touch", "move"}
        gripper = np.array([s["observation"]["state"][7] for s in steps])
        assert gripper[0] == 1.0 and np.all((gripper >= 0) & (gripper <= 1))


def test_states_stay_within_joint_limits(episodes):
    client = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
        for episode in episodes:
            model = render.ROBOTS[episode["metadata"]["robot"].decode()]
            if model.asset.endswith(".sdf"):
                (body,) = pybullet.loadSDF(model.asset, physicsClientId=client)
            else:
                body = pybullet.loadURDF(model.asset, physicsClientId=client)
            limits = np.array([pybullet.getJointInfo(body, j, physicsClientId=client)[8:10] for j in model.arm_joints])
            states = np.stack([s["observation"]["state"] for s in episode["steps"]])
            joints = states[:, : len(model.arm_joints)]
            assert np.all(joints >= limits[:, 0] - 1e-5) and np.all(joints <= limits[:, 1] + 1e-5)
            assert np.all(states[:, len(model.arm_joints) : 7] == 0)  # padding (xArm6 has 6 joints)
            # Smooth motion: no joint moves more than 1 rad between consecutive steps.
            assert np.abs(np.diff(joints, axis=0)).max() < 1.0
    finally:
        pybullet.disconnect(client)


def test_label_maps_show_arm_and_gripper_in_most_frames(episodes):
    for episode in episodes:
        for camera in ("image_0", "image_1"):
            maps = np.stack([s["observation"][mask_feature_name(camera)][..., 0] for s in episode["steps"]])
            assert set(np.unique(maps)) <= {BACKGROUND, BODY, ARM, GRIPPER}
            has_arm = ((maps == ARM).sum(axis=(1, 2)) > 20).mean()
            has_gripper = ((maps == GRIPPER).sum(axis=(1, 2)) > 5).mean()
            assert has_arm >= 0.8 and has_gripper >= 0.8, (episode["metadata"]["robot"], camera, has_arm, has_gripper)
            # The robot covers part of the frame, not all of it.
            robot_fraction = (maps > 0).mean()
            assert 0.01 < robot_fraction < 0.6


def test_stored_masks_equal_the_rendered_ones(episodes, rendered):
    # PNG is lossless: what the dataset holds must be exactly what the renderer produced.
    rendered = rendered[1]
    for camera in ("image_0", "image_1"):
        stored = np.stack([s["observation"][mask_feature_name(camera)][..., 0] for s in episodes[1]["steps"]])
        np.testing.assert_array_equal(stored, rendered.label_maps[camera])
        frames = np.stack([s["observation"][camera] for s in episodes[1]["steps"]]).astype(int)
        assert np.abs(frames - rendered.frames[camera]).mean() < 6  # jpeg


@pytest.fixture(scope="module")
def rendered() -> list:
    """The dataset's episodes as the renderer makes them (same spec as ACCEPTANCE_ARGS)."""
    spec = sample_data.SampleSpec(episodes=3, steps=8, size=128)
    return [sample_data.render_sample_episode(spec, index) for index in range(3)]


def test_stored_object_masks_equal_the_rendered_ones(episodes, rendered):
    for index in range(3):
        for camera in ("image_0", "image_1"):
            stored = np.stack([s["observation"][object_mask_feature_name(camera)][..., 0] for s in episodes[index]["steps"]])
            np.testing.assert_array_equal(stored, rendered[index].object_maps[camera])


def test_object_masks_label_each_placed_object_and_never_the_robot(episodes, rendered):
    for index, episode in enumerate(episodes):
        names = rendered[index].object_names
        assert 2 <= len(names) <= 4
        # The instruction names one of the objects on the table.
        instruction = episode["steps"][0]["language_instruction"].decode()
        assert instruction.split(" the ")[-1] in names, (instruction, names)
        seen = set()
        for camera in ("image_0", "image_1"):
            objects = rendered[index].object_maps[camera]
            robot = rendered[index].label_maps[camera]
            assert objects.max() <= len(names)
            assert not ((objects > 0) & (robot > 0)).any()  # one body per pixel
            seen |= set(np.unique(objects[objects > 0]).tolist())
            # Objects are small: some pixels, far from the whole frame.
            assert 0 < (objects > 0).mean() < 0.2, (index, camera)
        # Most placed objects are seen by at least one camera (one may be hidden by the robot
        # or fall outside both views).
        assert len(seen) >= len(names) - 1, (index, seen, names)


def test_same_seed_gives_byte_identical_files_across_processes(dataset_dir, tmp_path):
    # A separate process: the protobuf map order that made TFDS output differ is per process.
    other = tmp_path / "again"
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sample-data", str(other), *ACCEPTANCE_ARGS],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    names = sorted(p.name for p in dataset_dir.iterdir())
    assert names == sorted(p.name for p in other.iterdir())
    for name in names:
        assert (dataset_dir / name).read_bytes() == (other / name).read_bytes(), name


# sha256 of the files ACCEPTANCE_ARGS wrote before camera motion and true plates existed
# (commit d065e7c, this repository's pinned TFDS / TF / pybullet on x86-64). Adding options
# must not change the default dataset by a byte. If a deliberate change to the default
# sample data moves these, update them in that change.
DEFAULT_SHA256 = {
    "dataset_info.json": "7ff4e1d1c66b5eb4b153c55b5564eed1d379be3cfc2a93ab2748c6b5b77b5afd",
    "features.json": "eab4066ed7f4ac3e94f3643384a5f7728bcabab42268a28fede175000946d067",
    "oxe_augment_sample-train.tfrecord-00000-of-00001": "f2068dad4f8ea1e5183e62588571a5746335aaa5b04f9c0e7d1dce7a7e6b158d",
}


def test_default_output_is_byte_identical_to_before_camera_motion(dataset_dir):
    found = {name: hashlib.sha256((dataset_dir / name).read_bytes()).hexdigest() for name in DEFAULT_SHA256}
    assert found == DEFAULT_SHA256


@pytest.fixture(scope="module")
def pan_dir(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("pan") / "1.0.0"
    args = ["--episodes", "1", "--steps", "3", "--size", "64", "--cameras", "1", "--robots", "kuka"]
    assert run_cli("sample-data", str(out), *args, "--camera-motion", "pan", "--true-plate") == 0
    return out


def test_true_plate_round_trips_through_sample_data(pan_dir):
    builder = tfds.builder_from_directory(str(pan_dir))
    feature = builder.info.features["steps"]["observation"]["image_0_true_plate"]
    assert feature.shape == (64, 64, 3) and feature.encoding_format == "png"
    assert "pan" in builder.info.description
    # Ground truth, not a camera to augment: the pipeline leaves it untouched.
    cameras = [f.name for f in describe_observation(builder.info.features) if f.camera]
    assert cameras == ["image_0"]
    (episode,) = tfds.as_numpy(builder.as_dataset("train", shuffle_files=False))
    steps = list(episode["steps"])
    stored = np.stack([s["observation"]["image_0_true_plate"] for s in steps])
    spec = sample_data.SampleSpec(episodes=1, steps=3, size=64, robots=("kuka",), cameras=1, camera_motion="pan", true_plate=True)
    rendered = sample_data.render_sample_episode(spec, 0)
    np.testing.assert_array_equal(stored, rendered.true_plates["image_0"])  # PNG: exactly what was rendered
    # The robot is not in it: where the robot stands, the plate shows something else...
    robot = rendered.label_maps["image_0"] > 0
    frames = rendered.frames["image_0"]
    differs = np.abs(stored.astype(int) - frames).sum(axis=-1) > 0
    assert robot.sum() > 50 and differs[robot].mean() > 0.95
    # ... and far from it (away from its shadow too), the very same pixels as the frame.
    far = ~ndimage.binary_dilation(robot, iterations=3, structure=np.ones((1, 3, 3)))
    assert (~differs[far]).mean() > 0.8


def test_a_clean_plate_fallback_reaches_report_json(pan_dir, tmp_path):
    """The pipeline on the panning sample, with a correlation no aligned frame can reach: no
    frame but the reference aligns, so each camera falls back to the static plate, and the
    run's report says so for the episode (the episode itself is written)."""
    recipe = tmp_path / "plate.yaml"
    recipe.write_text(
        f"input: {{dir: {pan_dir}}}\n"
        f"output: {{dir: {tmp_path / 'out'}, variants_per_episode: 1, previews: 0}}\n"
        "segmentation: {source: dataset}\n"
        "background: {source: clean_plate, min_correlation: 1.0}\n"
    )
    assert run_cli("run", str(recipe)) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["episodes_written"] == 1 and report["failures"] == []
    (note,) = report["notes"]
    assert note["key"] == "train/000000"
    assert note["note"].startswith("clean_plate camera image_0: only 1 of 3 sampled frames could be aligned")
    assert "static plate" in note["note"]


def test_camera_motion_moves_the_view_not_the_scene():
    config = {motion: render.RenderConfig(size=48, cameras=1, camera_motion=motion) for motion in ("none", "pan", "shake")}
    episodes = {m: render.render_episode("xarm", 4, c, np.random.default_rng([3, 1])) for m, c in config.items()}
    static, pan, shake = episodes["none"], episodes["pan"], episodes["shake"]
    # Same seed, same scene and robot motion: the camera draws come after everything else.
    assert pan.object_names == static.object_names == shake.object_names
    assert pan.instruction == static.instruction
    np.testing.assert_array_equal(pan.states, static.states)
    for moving in (pan, shake):
        # The view differs from the static camera's, and from one frame to the next.
        assert np.abs(moving.frames["image_0"].astype(int) - static.frames["image_0"]).mean() > 2
        background = moving.label_maps["image_0"] == 0
        steady = background[0] & background[-1]
        change = np.abs(moving.frames["image_0"][0].astype(int) - moving.frames["image_0"][-1])[steady].mean()
        still = np.abs(static.frames["image_0"][0].astype(int) - static.frames["image_0"][-1])[steady].mean()
        assert change > still + 2


def test_rejects_an_unknown_camera_motion(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("sample-data", str(tmp_path / "out"), "--camera-motion", "zoom")
    assert exit_info.value.code == 2
    assert "zoom" in capsys.readouterr().err
    with pytest.raises(ValueError, match="camera motion must be one of none, pan, shake"):
        sample_data.SampleSpec(camera_motion="zoom")


def test_seed_changes_the_scene():
    config = render.RenderConfig(size=48, cameras=1)
    first = render.render_episode("kuka", 2, config, np.random.default_rng([0, 0]))
    again = render.render_episode("kuka", 2, config, np.random.default_rng([0, 0]))
    other = render.render_episode("kuka", 2, config, np.random.default_rng([1, 0]))
    np.testing.assert_array_equal(first.frames["image_0"], again.frames["image_0"])
    assert not np.array_equal(first.frames["image_0"], other.frames["image_0"])


@pytest.mark.parametrize("robot", sorted(render.ROBOTS))
def test_wrist_camera_sees_the_gripper(robot):
    config = render.RenderConfig(size=48, cameras=1, wrist=True)
    episode = render.render_episode(robot, 3, config, np.random.default_rng([0, 7]))
    assert set(episode.frames) == {"image_0", "image_wrist"}
    wrist = episode.label_maps["image_wrist"]
    assert np.all((wrist == GRIPPER).sum(axis=(1, 2)) > 10)


@pytest.mark.parametrize("robot", sorted(render.ROBOTS))
def test_link_table_matches_link_names(robot):
    # Check the hand-written table against the asset's own link names.
    model = render.ROBOTS[robot]
    client = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
        if model.asset.endswith(".sdf"):
            (body,) = pybullet.loadSDF(model.asset, physicsClientId=client)
        else:
            body = pybullet.loadURDF(model.asset, physicsClientId=client)
        num_links = pybullet.getNumJoints(body, physicsClientId=client)
        labels = model.link_labels(num_links)
        assert labels[0] == BODY  # the base
        for link in range(num_links):
            name = pybullet.getJointInfo(body, link, physicsClientId=client)[12].decode()
            if "finger" in name or "knuckle" in name or "hand" in name or "gripper" in name:
                assert labels[link + 1] == GRIPPER, name
            elif name.endswith(("_base", "link0", "link_0")):
                assert labels[link + 1] == BODY, name
            else:
                assert labels[link + 1] in (ARM, GRIPPER), name
    finally:
        pybullet.disconnect(client)


def test_refuses_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert run_cli(*["sample-data", str(tmp_path), "--episodes", "1"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_rejects_unknown_robot(tmp_path, capsys):
    assert run_cli(*["sample-data", str(tmp_path / "out"), "--robots", "panda,ur5"]) == 2
    assert "ur5" in capsys.readouterr().err


def test_robot_names_match_the_renderer():
    assert tuple(render.ROBOTS) == sample_data.ROBOT_NAMES
