"""The ``eval`` command: J&F of predicted robot masks against ground truth.

Both sides are label maps (``segmentation.labels``) read from either

* an RLDS dataset (a TFDS version folder) with ``steps/observation/<camera>_robot_mask``
  features: episode ``i`` of split ``s`` has the key ``f"{s}/{i:06d}"`` (its position in
  the split, shards and records in order); or
* a VRS-style folder (SA-V layout): ``mask_gt/<video>/<000|001|002>/<frame:05d>.png``
  binary masks of arm, gripper and robot (the ``mask_gt`` level may be left out, as in
  prediction folders); the video name is the key.

A pipeline output names its source in ``episode_metadata/augmentation`` (JSON with
``source_key`` and ``variant``); such episodes are scored against the ground-truth
episode they came from, every variant separately. When one side is VRS and the other
RLDS, each RLDS camera clip becomes a video named by :func:`vrs_video_name`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Iterator, Sequence

import cv2
import numpy as np
import tensorflow_datasets as tfds

from pipelines.rlds_io import AUGMENTATION_FIELD, episode_key
from segmentation import metrics
from segmentation.labels import MASK_FEATURE_SUFFIX, TARGETS, label_map_from_targets, mask_feature_name

#: Object folders of a VRS video, in RobotSeg's id order: arm, gripper, robot.
VRS_OBJECT_DIRS = {"arm": "000", "gripper": "001", "robot": "002"}
#: The camera name a VRS video's clip carries.
VRS_CAMERA = "video"


class EvalInputError(ValueError):
    """An input cannot be evaluated (missing path, no mask features, mismatched frames...)."""


@dataclasses.dataclass(frozen=True)
class LabelClip:
    """One camera's annotated frames of one episode."""

    frame_ids: tuple[int, ...]  # step (RLDS) or frame-file (VRS) index of each label map
    labels: np.ndarray  # (T, H, W) uint8 label maps

    def at(self, frame_ids: Sequence[int], where: str) -> np.ndarray:
        """Label maps at ``frame_ids``; raises naming ``where`` if some frame is missing."""
        position = {f: i for i, f in enumerate(self.frame_ids)}
        missing = [f for f in frame_ids if f not in position]
        if missing:
            raise EvalInputError(f"{where}: no prediction for frames {missing[:5]}{'...' if len(missing) > 5 else ''}")
        return self.labels[[position[f] for f in frame_ids]]


@dataclasses.dataclass(frozen=True)
class MaskEpisode:
    """One episode's label maps per camera, and where it came from (pipeline outputs)."""

    key: str
    clips: dict[str, LabelClip]
    source_key: str | None = None  # the ground-truth key this episode was derived from
    variant: str | None = None

    @property
    def display_key(self) -> str:
        return self.key if self.variant is None else f"{self.key} (variant {self.variant})"


@dataclasses.dataclass(frozen=True)
class MaskDataset:
    """An opened mask dataset: its kind, its cameras with masks, and a way to read it."""

    path: pathlib.Path
    kind: str  # "rlds" or "vrs"
    cameras: tuple[str, ...]
    split: str | None = None

    def episodes(self, cameras: Sequence[str]) -> Iterator[MaskEpisode]:
        """Episodes in dataset order, with clips of ``cameras`` only."""
        if self.kind == "rlds":
            return _read_rlds(self.path, self.split, cameras)
        return _read_vrs(self.path)


# ----------------------------------------------------------------------------- opening


def open_mask_dataset(path: str | pathlib.Path, split: str) -> MaskDataset:
    """Open ``path`` as an RLDS dataset or a VRS-style folder; checks it holds masks."""
    path = pathlib.Path(path)
    if not path.exists():
        raise EvalInputError(f"{path}: no such dataset")
    if (path / "dataset_info.json").is_file():
        return _open_rlds(path, split)
    root = _vrs_mask_root(path)
    if root is not None:
        return MaskDataset(path=root, kind="vrs", cameras=(VRS_CAMERA,))
    raise EvalInputError(
        f"{path}: neither an RLDS dataset (no dataset_info.json) nor a VRS-style folder "
        "(no mask_gt/<video>/<000|001|002>/*.png)"
    )


def _open_rlds(path: pathlib.Path, split: str) -> MaskDataset:
    builder = tfds.builder_from_directory(str(path))
    if split not in builder.info.splits:
        raise EvalInputError(f"{path}: no split {split!r} (splits: {sorted(builder.info.splits)})")
    cameras = tuple(sorted(_mask_feature_names(builder.info.features)))
    if not cameras:
        raise EvalInputError(f"{path}: no mask features (steps/observation/<camera>{MASK_FEATURE_SUFFIX})")
    return MaskDataset(path=path, kind="rlds", cameras=cameras, split=split)


def _mask_feature_names(features) -> dict[str, str]:
    """camera -> mask feature name, for every ``<camera>_robot_mask`` under steps/observation."""
    try:
        observation = features["steps"]["observation"]
    except KeyError:
        return {}
    return {
        name[: -len(MASK_FEATURE_SUFFIX)]: name for name in observation.keys() if name.endswith(MASK_FEATURE_SUFFIX)
    }


def _vrs_mask_root(path: pathlib.Path) -> pathlib.Path | None:
    """The folder that holds ``<video>/<000|001|002>/`` for a VRS-style folder, else None."""
    for root in (path / "mask_gt", path):
        if root.is_dir() and any(
            (video / obj).is_dir() for video in root.iterdir() if video.is_dir() for obj in VRS_OBJECT_DIRS.values()
        ):
            return root
    return None


# ----------------------------------------------------------------------------- reading


def _read_rlds(path: pathlib.Path, split: str, cameras: Sequence[str]) -> Iterator[MaskEpisode]:
    builder = tfds.builder_from_directory(str(path))
    features = builder.info.features
    observation = features["steps"]["observation"]
    wanted = {mask_feature_name(c) for c in cameras}
    # Leave every image we do not score encoded (RGB frames, other cameras' masks).
    skip = {
        name: tfds.decode.SkipDecoding()
        for name, feature in observation.items()
        if isinstance(feature, tfds.features.Image) and name not in wanted
    }
    has_provenance = "episode_metadata" in features and AUGMENTATION_FIELD in features["episode_metadata"].keys()
    dataset = builder.as_dataset(split, shuffle_files=False, decoders={"steps": {"observation": skip}})
    for index, episode in enumerate(tfds.as_numpy(dataset)):
        key = episode_key(split, index)
        per_camera: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
        for step in episode["steps"]:
            for camera in cameras:
                per_camera[camera].append(step["observation"][mask_feature_name(camera)][..., 0])
        clips = {c: LabelClip(tuple(range(len(maps))), np.stack(maps)) for c, maps in per_camera.items() if maps}
        source_key = variant = None
        if has_provenance:
            source_key, variant = _provenance(episode["episode_metadata"][AUGMENTATION_FIELD], path, key)
        yield MaskEpisode(key=key, clips=clips, source_key=source_key, variant=variant)


def _provenance(raw: bytes, path: pathlib.Path, key: str) -> tuple[str | None, str | None]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    if not text:
        return None, None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise EvalInputError(f"{path} episode {key}: episode_metadata/{AUGMENTATION_FIELD} is not JSON ({error})")
    variant = record.get("variant")
    return record.get("source_key"), None if variant is None else str(variant)


def _read_vrs(root: pathlib.Path) -> Iterator[MaskEpisode]:
    for video in sorted(p for p in root.iterdir() if p.is_dir()):
        yield MaskEpisode(key=video.name, clips={VRS_CAMERA: read_vrs_video(video)})


def read_vrs_video(video_dir: str | pathlib.Path) -> LabelClip:
    """Label maps of one VRS video folder (``<000|001|002>/<frame:05d>.png``).

    A frame annotated for some targets but not others counts as empty for the others.
    Gripper wins over arm over body where masks overlap (``label_map_from_targets``).
    """
    video_dir = pathlib.Path(video_dir)
    files = {
        target: {int(p.stem): p for p in (video_dir / folder).glob("*.png")}
        for target, folder in VRS_OBJECT_DIRS.items()
    }
    frame_ids = sorted(set().union(*(f.keys() for f in files.values())))
    if not frame_ids:
        raise EvalInputError(f"{video_dir}: no mask files in {'/'.join(VRS_OBJECT_DIRS.values())}")
    maps, shape = [], None
    for frame in frame_ids:
        masks = {}
        for target in TARGETS:
            path = files[target].get(frame)
            mask = None if path is None else cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if path is not None and mask is None:
                raise EvalInputError(f"{path}: cannot read image")
            masks[target] = mask
        shape = shape or next(m.shape for m in masks.values() if m is not None)
        binary = {t: np.zeros(shape, bool) if m is None else m > 0 for t, m in masks.items()}
        if any(b.shape != shape for b in binary.values()):
            raise EvalInputError(f"{video_dir}: frame {frame:05d} masks differ in size")
        maps.append(label_map_from_targets(robot=binary["robot"], arm=binary["arm"], gripper=binary["gripper"]))
    return LabelClip(tuple(frame_ids), np.stack(maps))


def vrs_video_name(key: str, camera: str) -> str:
    """Name of the VRS video that stands for one RLDS camera clip: ``train/000003``, ``image_0`` -> ``train_000003_image_0``."""
    return f"{key.replace('/', '_')}_{camera}"


def _as_vrs_videos(episode: MaskEpisode) -> Iterator[MaskEpisode]:
    """Split an RLDS episode into one single-camera episode per clip, keyed like a VRS video."""
    for camera, clip in episode.clips.items():
        source = None if episode.source_key is None else vrs_video_name(episode.source_key, camera)
        yield MaskEpisode(
            key=vrs_video_name(episode.key, camera),
            clips={VRS_CAMERA: clip},
            source_key=source,
            variant=episode.variant,
        )


# ----------------------------------------------------------------------------- scoring


def evaluate(
    pred: MaskDataset,
    gt: MaskDataset,
    *,
    cameras: Sequence[str] | None = None,
    skip_first_last: bool = True,
) -> metrics.EvalResult:
    """Score every prediction episode against its ground-truth episode.

    ``cameras`` default to those with masks on both sides (RLDS vs RLDS); with a VRS side
    each video is one clip.
    """
    mixed = (pred.kind == "vrs") != (gt.kind == "vrs")
    read_cameras = {"pred": pred.cameras, "gt": gt.cameras}
    if pred.kind == "rlds" and gt.kind == "rlds":
        cameras = _cameras_to_score(pred, gt, cameras)
        read_cameras = {"pred": cameras, "gt": cameras}
    elif cameras:
        rlds_side = pred if pred.kind == "rlds" else gt
        missing = [c for c in cameras if c not in rlds_side.cameras]
        if missing:
            raise EvalInputError(f"{rlds_side.path}: no mask feature for cameras {missing}")
        read_cameras["pred" if pred.kind == "rlds" else "gt"] = tuple(cameras)

    def episodes_of(dataset: MaskDataset, side: str) -> Iterator[MaskEpisode]:
        for episode in dataset.episodes(read_cameras[side]):
            if mixed and dataset.kind == "rlds":
                yield from _as_vrs_videos(episode)
            else:
                yield episode

    gt_episodes = {e.key: e for e in episodes_of(gt, "gt")}
    scored, unmatched_pred, matched_gt = [], [], set()
    for episode in episodes_of(pred, "pred"):
        target_key = episode.source_key or episode.key
        truth = gt_episodes.get(target_key)
        if truth is None:
            unmatched_pred.append(episode.display_key)
            continue
        matched_gt.add(target_key)
        scored.append(_score_episode(episode, truth, skip_first_last, pred.path))
    if not scored:
        raise EvalInputError(
            f"no episode of {pred.path} matched an episode of {gt.path} "
            f"(first prediction keys: {unmatched_pred[:3]}, first ground-truth keys: {list(gt_episodes)[:3]})"
        )
    unmatched_gt = [k for k in gt_episodes if k not in matched_gt]
    return metrics.overall_scores(
        scored, unmatched_pred=unmatched_pred, unmatched_gt=unmatched_gt, skip_first_last=skip_first_last
    )


def _cameras_to_score(pred: MaskDataset, gt: MaskDataset, cameras: Sequence[str] | None) -> tuple[str, ...]:
    if cameras:
        for dataset in (pred, gt):
            missing = [c for c in cameras if c not in dataset.cameras]
            if missing:
                raise EvalInputError(f"{dataset.path}: no mask feature for cameras {missing}")
        return tuple(cameras)
    common = tuple(c for c in gt.cameras if c in pred.cameras)
    if not common:
        raise EvalInputError(
            f"no camera has masks in both {pred.path} ({list(pred.cameras)}) and {gt.path} ({list(gt.cameras)})"
        )
    return common


def _score_episode(
    pred: MaskEpisode, gt: MaskEpisode, skip_first_last: bool, pred_path: pathlib.Path
) -> metrics.EpisodeScores:
    frames = []
    for camera, truth in gt.clips.items():
        where = f"{pred_path} episode {pred.display_key} camera {camera}"
        if camera not in pred.clips:
            raise EvalInputError(f"{where}: missing")
        predicted = pred.clips[camera].at(truth.frame_ids, where)
        if predicted.shape != truth.labels.shape:
            raise EvalInputError(
                f"{where}: masks are {predicted.shape[1:]} but ground truth {gt.key} is {truth.labels.shape[1:]}"
            )
        frames += metrics.score_clip(
            camera, predicted, truth.labels, frame_ids=truth.frame_ids, skip_first_last=skip_first_last
        )
    return metrics.episode_scores(gt.key, pred.display_key, frames)


# ----------------------------------------------------------------------------- command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="J&F of predicted robot masks against ground truth (RLDS datasets or VRS folders)",
        description=(
            "Compare steps/observation/<camera>_robot_mask label maps of two RLDS datasets (or VRS-style "
            "mask folders) episode by episode; print J, F and J&F per target (robot, arm, gripper). "
            "Pipeline outputs are matched to their source episode through episode_metadata/augmentation."
        ),
    )
    parser.add_argument("--pred", required=True, help="predicted masks: RLDS version folder or VRS-style folder")
    parser.add_argument("--gt", required=True, help="ground-truth masks: RLDS version folder or VRS-style folder")
    parser.add_argument("--split", default="train", help="RLDS split to read on both sides (default train)")
    parser.add_argument("--json", metavar="FILE", help="also write the scores as JSON to FILE")
    parser.add_argument(
        "--no-skip-first-last",
        dest="skip_first_last",
        action="store_false",
        help="score the first and last frame of each clip too (SA-V skips them)",
    )
    parser.add_argument(
        "--cameras",
        nargs="+",
        metavar="CAMERA",
        help="RLDS cameras to score, space- or comma-separated (default: all with masks on both sides)",
    )
    parser.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``eval``: score, print the table, write JSON. Exit 2 on unusable inputs."""
    try:
        pred = open_mask_dataset(args.pred, args.split)
        gt = open_mask_dataset(args.gt, args.split)
        cameras = [c for arg in args.cameras or () for c in arg.split(",") if c]
        result = evaluate(pred, gt, cameras=cameras or None, skip_first_last=args.skip_first_last)
    except EvalInputError as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    print(f"{len(result.episodes)} episodes scored; prediction {pred.path}, ground truth {gt.path}")
    print(metrics.format_table(result.overall))
    if result.unmatched_pred:
        print(f"unmatched prediction episodes ({len(result.unmatched_pred)}): {', '.join(result.unmatched_pred)}")
    if result.unmatched_gt:
        print(f"ground-truth episodes without prediction ({len(result.unmatched_gt)}): {', '.join(result.unmatched_gt)}")
    if args.json:
        pathlib.Path(args.json).write_text(result.to_json() + "\n")
        print(f"wrote {args.json}")
    return 0
