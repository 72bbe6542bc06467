"""The eval command: J&F between RLDS datasets and VRS-style folders."""

from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from pipelines import evaluate
from pipelines.sample_data import write_sample_dataset
from segmentation.labels import ARM, TARGETS, mask_feature_name, target_mask
from tests.conftest import BRIDGE, run_cli

CAMERAS = ("image_0", "image_1")


@pytest.fixture(scope="module")
def gt_dir(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("gt") / "1.0.0"
    return write_sample_dataset(out, episodes=2, steps=4, size=64, robots=("panda", "xarm"), cameras=2, seed=3)


@pytest.fixture(scope="module")
def gt_label_maps(gt_dir) -> list[dict[str, np.ndarray]]:
    """Per episode, camera -> (T, H, W) label maps, read independently of pipelines.evaluate."""
    builder = tfds.builder_from_directory(str(gt_dir))
    episodes = []
    for episode in tfds.as_numpy(builder.as_dataset("train", shuffle_files=False)):
        steps = list(episode["steps"])
        episodes.append({c: np.stack([s["observation"][mask_feature_name(c)][..., 0] for s in steps]) for c in CAMERAS})
    return episodes


def write_vrs_video(root: pathlib.Path, video: str, label_maps: np.ndarray, frame_ids=None) -> None:
    """Write label maps as VRS binary masks mask_gt/<video>/<000|001|002>/<frame:05d>.png."""
    frame_ids = range(len(label_maps)) if frame_ids is None else frame_ids
    for target, folder in evaluate.VRS_OBJECT_DIRS.items():
        directory = root / "mask_gt" / video / folder
        directory.mkdir(parents=True, exist_ok=True)
        for frame, labels in zip(frame_ids, label_maps):
            cv2.imwrite(str(directory / f"{frame:05d}.png"), target_mask(labels, target).astype(np.uint8) * 255)


def expected_score_of_empty_prediction(clips: list[np.ndarray], target: str) -> float:
    """Empty prediction: a frame scores 1 where the target is absent, 0 where present.

    Per clip (each clip is one episode here), frames 1..T-2 from the first one that shows
    the target (SA-V starts an object when it first appears); mean over the clips that
    show it there.
    """
    per_clip = []
    for clip in clips:
        present = [bool(target_mask(m, target).any()) for m in clip[1:-1]]
        if any(present):
            present = present[present.index(True) :]
            per_clip.append(np.mean([0.0 if p else 1.0 for p in present]))
    return float(np.mean(per_clip))


def test_dataset_against_itself_scores_one(gt_dir, tmp_path, capsys):
    report = tmp_path / "scores.json"
    assert run_cli(*["eval", "--pred", str(gt_dir), "--gt", str(gt_dir), "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    assert set(scores["overall"]) == set(TARGETS)
    for target in TARGETS:
        assert scores["overall"][target] == {"J": 1.0, "F": 1.0, "JF": 1.0}
    assert [e["key"] for e in scores["episodes"]] == ["train/000000", "train/000001"]
    assert scores["episodes"][0]["num_frames"] == 2 * 2  # 2 cameras x (4 steps - first - last)
    table = capsys.readouterr().out
    assert "J&F" in table and "100.0" in table


def test_all_background_prediction_scores_zero_where_gt_has_the_target(gt_dir, gt_label_maps, tmp_path):
    # A VRS folder of empty masks, one video per RLDS camera clip.
    pred = tmp_path / "pred"
    clips = []
    for index, episode in enumerate(gt_label_maps):
        for camera in CAMERAS:
            write_vrs_video(pred, evaluate.vrs_video_name(f"train/{index:06d}", camera), np.zeros_like(episode[camera]))
            clips.append(episode[camera])
    result = evaluate.evaluate(evaluate.open_mask_dataset(pred, "train"), evaluate.open_mask_dataset(gt_dir, "train"))
    assert len(result.episodes) == 4 and not result.unmatched_pred and not result.unmatched_gt
    for target in TARGETS:
        expected = expected_score_of_empty_prediction(clips, target)
        assert result.overall[target].J == pytest.approx(expected)
        assert result.overall[target].F == pytest.approx(expected)
    # The robot and the arm are in every frame of the sample data: exactly zero.
    assert result.overall["robot"].JF == 0.0
    assert result.overall["arm"].JF == 0.0


def write_vrs_objects(root: pathlib.Path, video: str, objects: dict[str, np.ndarray], frame_ids) -> None:
    """Write per-object binary masks (T, H, W) as mask_gt/<video>/<000|001|002>/<frame:05d>.png."""
    for target, masks in objects.items():
        directory = root / "mask_gt" / video / evaluate.VRS_OBJECT_DIRS[target]
        directory.mkdir(parents=True, exist_ok=True)
        for frame, mask in zip(frame_ids, masks):
            cv2.imwrite(str(directory / f"{frame:05d}.png"), mask.astype(np.uint8) * 255)


def overlapping_objects(frames: int = 4) -> dict[str, np.ndarray]:
    robot = np.zeros((frames, 20, 30), bool)
    robot[:, 2:18, 2:28] = True
    arm = np.zeros_like(robot)
    arm[:, 5:15, 5:20] = True
    gripper = np.zeros_like(robot)
    gripper[:, 8:12, 15:25] = True  # overlaps the arm at rows 8..11, columns 15..19
    return {"arm": arm, "gripper": gripper, "robot": robot}


def test_read_vrs_video_keeps_each_object_folder_as_its_own_mask(tmp_path):
    objects = overlapping_objects(2)
    write_vrs_objects(tmp_path / "VRS" / "test", "vid_a", objects, frame_ids=(3, 7))
    clip = evaluate.read_vrs_video(tmp_path / "VRS" / "test" / "mask_gt" / "vid_a")
    assert clip.frame_ids == (3, 7)
    for target, masks in objects.items():
        assert clip.objects[target].frame_ids == (3, 7)
        np.testing.assert_array_equal(clip.objects[target].masks, masks)  # the overlap stays in both arm and gripper

    dataset = evaluate.open_mask_dataset(tmp_path / "VRS" / "test", "train")
    assert dataset.kind == "vrs" and dataset.path.name == "mask_gt"
    result = evaluate.evaluate(dataset, dataset, skip_first_last=False)
    assert [e.key for e in result.episodes] == ["vid_a"]
    assert all(result.overall[t].JF == 1.0 for t in TARGETS)
    # Two annotated frames minus the first and the last leave nothing (the release's [1:-1]).
    assert evaluate.evaluate(dataset, dataset).overall == {}


def test_overlapping_arm_and_gripper_are_scored_separately(tmp_path):
    # The prediction misses the arm where the gripper covers it. Merged into one label
    # map (gripper over arm), both sides lose that region and arm scored J = 1; per
    # object it is J = (arm - overlap) / arm on every scored frame.
    gt = overlapping_objects(4)
    pred = {t: m.copy() for t, m in gt.items()}
    pred["arm"][:, 8:12, 15:20] = False
    write_vrs_objects(tmp_path / "gt", "v", gt, range(4))
    write_vrs_objects(tmp_path / "pred", "v", pred, range(4))
    result = evaluate.evaluate(
        evaluate.open_mask_dataset(tmp_path / "pred", "train"), evaluate.open_mask_dataset(tmp_path / "gt", "train")
    )
    arm_pixels, overlap = 10 * 15, 4 * 5
    assert result.overall["arm"].J == pytest.approx((arm_pixels - overlap) / arm_pixels)
    assert result.overall["arm"].F < 1.0
    assert result.overall["gripper"].JF == 1.0 and result.overall["robot"].JF == 1.0


def test_vrs_prediction_missing_an_annotated_frame_is_an_error(tmp_path):
    gt_maps = np.zeros((3, 8, 8), np.uint8)
    gt_maps[:, 2:5, 2:5] = ARM
    write_vrs_video(tmp_path / "gt", "v", gt_maps, frame_ids=[0, 5, 10])
    write_vrs_video(tmp_path / "pred", "v", gt_maps[:2], frame_ids=[0, 5])
    with pytest.raises(evaluate.EvalInputError, match=r"frames \[10\]"):
        evaluate.evaluate(
            evaluate.open_mask_dataset(tmp_path / "pred", "train"),
            evaluate.open_mask_dataset(tmp_path / "gt", "train"),
        )


class _PredictionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A pipeline-output-like RLDS dataset: masks of one camera plus provenance metadata."""

    name = "prediction"
    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, episodes: list[tuple[np.ndarray, dict]], data_dir: str):
        self._episodes = episodes
        super().__init__(data_dir=data_dir)

    def _info(self):
        size = self._episodes[0][0].shape[1]
        mask = tfds.features.Image(shape=(size, size, 1), dtype=np.uint8, encoding_format="png")
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "steps": tfds.features.Dataset({"observation": {mask_feature_name("image_0"): mask}}),
                    "episode_metadata": {"augmentation": tfds.features.Text()},
                }
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index, (maps, provenance) in enumerate(self._episodes):
            steps = [{"observation": {mask_feature_name("image_0"): m[..., None]}} for m in maps]
            yield index, {"steps": steps, "episode_metadata": {"augmentation": json.dumps(provenance)}}


def test_pipeline_outputs_match_their_source_episode(gt_dir, gt_label_maps, tmp_path):
    source = gt_label_maps[0]["image_0"]
    episodes = [
        (source, {"source_key": "train/000000", "variant": 0}),  # a perfect copy
        (np.zeros_like(source), {"source_key": "train/000000", "variant": 1}),  # an empty prediction
        (source, {"source_key": "train/000042", "variant": 0}),  # no such ground truth
    ]
    builder = _PredictionBuilder(episodes=episodes, data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    pred = evaluate.open_mask_dataset(builder.data_dir, "train")
    assert pred.cameras == ("image_0",)

    result = evaluate.evaluate(pred, evaluate.open_mask_dataset(gt_dir, "train"))
    assert [(e.key, e.pred_key) for e in result.episodes] == [
        ("train/000000", "train/000000 (variant 0)"),
        ("train/000000", "train/000001 (variant 1)"),
    ]
    assert result.unmatched_pred == ("train/000002 (variant 0)",)
    assert result.unmatched_gt == ("train/000001",)
    perfect, empty = result.episodes
    assert all(perfect.mean[t].JF == 1.0 for t in TARGETS)
    for target in TARGETS:
        assert empty.mean[target].J == pytest.approx(expected_score_of_empty_prediction([source], target))
        expected_overall = (1.0 + expected_score_of_empty_prediction([source], target)) / 2
        assert result.overall[target].J == pytest.approx(expected_overall)


def test_no_skip_first_last_scores_every_frame(gt_dir, tmp_path):
    report = tmp_path / "all.json"
    assert run_cli(*["eval", "--pred", str(gt_dir), "--gt", str(gt_dir), "--no-skip-first-last",
                    "--cameras", "image_1", "--json", str(report)]) == 0  # fmt: skip
    scores = json.loads(report.read_text())
    assert scores["skip_first_last"] is False
    assert scores["episodes"][0]["num_frames"] == 4  # one camera, every step


def test_missing_dataset_exits_2_naming_the_path(gt_dir, tmp_path, capsys):
    missing = tmp_path / "nothing_here"
    assert run_cli(*["eval", "--pred", str(missing), "--gt", str(gt_dir)]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.skipif(not BRIDGE.exists(), reason="shared Bridge sample not present")
def test_dataset_without_masks_exits_2_naming_the_path(gt_dir, capsys):
    assert run_cli(*["eval", "--pred", str(BRIDGE), "--gt", str(gt_dir)]) == 2
    error = capsys.readouterr().err
    assert str(BRIDGE) in error and "mask" in error


def test_unknown_camera_exits_2(gt_dir, capsys):
    assert run_cli(*["eval", "--pred", str(gt_dir), "--gt", str(gt_dir), "--cameras", "image_9"]) == 2
    assert "image_9" in capsys.readouterr().err


def write_robot_masks(root: pathlib.Path, video: str, masks: list[np.ndarray]) -> None:
    """Binary masks as a VRS robot folder: <root>/<video>/002/<frame:05d>.png (0 / 255)."""
    folder = root / video / evaluate.VRS_OBJECT_DIRS["robot"]
    folder.mkdir(parents=True)
    for frame, mask in enumerate(masks):
        cv2.imwrite(str(folder / f"{frame:05d}.png"), mask.astype(np.uint8) * 255)


def test_two_video_vrs_folders_score_as_the_release_benchmark(tmp_path, capsys):
    # 20 x 20 frames: tolerance r = ceil(0.008 * 28.28) = 1 px. A 4 x 4 square at rows and
    # cols 5..8; the same square shifted right by one pixel has J = 12 / 20 and every
    # boundary pixel within 1 px of the other outline, so F = 1.
    empty = np.zeros((20, 20), bool)
    square, shifted, far = empty.copy(), empty.copy(), empty.copy()
    square[5:9, 5:9] = True
    shifted[5:9, 6:10] = True
    far[14:18, 14:18] = True
    # Video a: frame 0 empty on both sides (before the object is first seen: not scored);
    # then exact (1, 1), missed (0, 0), both empty after the start (1, 1), shifted (0.6, 1).
    gt_a = [empty, square, square, empty, square]
    pred_a = [empty, square, empty, empty, shifted]
    # Video b: a false positive before the ground truth starts (0, 0), then exact twice.
    gt_b = [empty, square, square]
    pred_b = [far, square, square]
    gt_root, pred_root = tmp_path / "VRS" / "test" / "mask_gt", tmp_path / "pred"
    for video, gt, pred in (("video_a", gt_a, pred_a), ("video_b", gt_b, pred_b)):
        write_robot_masks(gt_root, video, gt)
        write_robot_masks(pred_root, video, pred)

    # --do_not_skip_first_and_last_frame (eval_auto_semi.sh): per video the mean over its
    # scored frames, x 100; overall the mean over the two videos, J&F = (J + F) / 2.
    j_a, f_a = (1 + 0 + 1 + 0.6) / 4, (1 + 0 + 1 + 1) / 4
    j_b, f_b = (0 + 1 + 1) / 3, (0 + 1 + 1) / 3
    j, f = 100 * (j_a + j_b) / 2, 100 * (f_a + f_b) / 2
    assert (j, f) != pytest.approx((100 * (2.6 + 2) / 7, 100 * (3 + 2) / 7))  # not the mean over all frames
    report = tmp_path / "robotseg.json"
    assert (
        run_cli("eval", "--protocol", "robotseg", "--gt", tmp_path / "VRS" / "test", "--pred", pred_root, "--json", report) == 0
    )
    overall = json.loads(report.read_text())["settings"]["pred"]["overall"]
    assert set(overall) == {"robot"}
    assert 100 * overall["robot"]["J"] == pytest.approx(j)
    assert 100 * overall["robot"]["F"] == pytest.approx(f)
    assert 100 * overall["robot"]["JF"] == pytest.approx((j + f) / 2)
    assert f"{(j + f) / 2:.1f}" in capsys.readouterr().out

    # The release's default (first and last annotated frames skipped): video a frames 1..3
    # (1, 0, 1), video b frame 1 only (1).
    gt, pred = evaluate.open_mask_dataset(gt_root, "test"), evaluate.open_mask_dataset(pred_root, "test")
    skipped = evaluate.evaluate(pred, gt).overall["robot"]
    assert (skipped.J, skipped.F) == pytest.approx(((2 / 3 + 1) / 2, (2 / 3 + 1) / 2))
    every = evaluate.evaluate(pred, gt, skip_first_last=False).overall["robot"]
    assert (100 * every.J, 100 * every.F) == pytest.approx((j, f))


def test_vrs_frames_are_ordered_by_file_name_as_the_release_lists_them(tmp_path):
    # The release sorts os.listdir() names as strings; with unpadded names 10 comes before 2.
    folder = tmp_path / "video" / evaluate.VRS_OBJECT_DIRS["robot"]
    folder.mkdir(parents=True)
    for frame in (1, 2, 10):
        cv2.imwrite(str(folder / f"{frame}.png"), np.full((4, 4), 255 if frame == 10 else 0, np.uint8))
    robot = evaluate.read_vrs_video(tmp_path / "video").objects["robot"]
    assert robot.frame_ids == (1, 10, 2)
    assert [m.any() for m in robot.masks] == [False, True, False]
    (folder / "mask.png").write_bytes((folder / "1.png").read_bytes())
    with pytest.raises(evaluate.EvalInputError, match="mask.png"):
        evaluate.read_vrs_video(tmp_path / "video")
