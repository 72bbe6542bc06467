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
import csv
import dataclasses
import json
import pathlib
import sys
import time
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import tensorflow_datasets as tfds

from pipelines.rlds_io import AUGMENTATION_FIELD, episode_key
from segmentation import metrics
from segmentation.labels import MASK_FEATURE_SUFFIX, TARGETS, mask_feature_name, target_mask

#: Object folders of a VRS video, in RobotSeg's id order: arm, gripper, robot.
VRS_OBJECT_DIRS = {"arm": "000", "gripper": "001", "robot": "002"}
#: The camera name a VRS video's clip carries.
VRS_CAMERA = "video"


class EvalInputError(ValueError):
    """An input cannot be evaluated (missing path, no mask features, mismatched frames...)."""


@dataclasses.dataclass(frozen=True)
class ObjectMasks:
    """One target's annotated frames in one clip: a VRS object folder, or a target cut from label maps."""

    frame_ids: tuple[int, ...]  # step (RLDS) or frame-file (VRS) index of each mask
    masks: np.ndarray  # (T, H, W) bool

    def at(self, frame_ids: Sequence[int], where: str) -> np.ndarray:
        """Masks at ``frame_ids``; raises naming ``where`` if some frame is missing."""
        position = {f: i for i, f in enumerate(self.frame_ids)}
        missing = [f for f in frame_ids if f not in position]
        if missing:
            raise EvalInputError(f"{where}: no prediction for frames {missing[:5]}{'...' if len(missing) > 5 else ''}")
        return self.masks[[position[f] for f in frame_ids]]


@dataclasses.dataclass(frozen=True)
class LabelClip:
    """One camera's annotated masks of one episode, per target.

    Each target is its own binary mask with its own frames, as SA-V scores object
    folders: where a VRS video's arm and gripper masks overlap, both keep the pixels.
    """

    objects: dict[str, ObjectMasks]

    @classmethod
    def from_label_maps(cls, frame_ids: Sequence[int], labels: np.ndarray) -> "LabelClip":
        """Every target of ``(T, H, W)`` label maps, all on the same frames."""
        ids = tuple(int(f) for f in frame_ids)
        return cls({t: ObjectMasks(ids, target_mask(labels, t)) for t in TARGETS})

    @property
    def frame_ids(self) -> tuple[int, ...]:
        """Every frame annotated for some target, in order."""
        return tuple(sorted(set().union(*(o.frame_ids for o in self.objects.values()))))


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
        f"{path}: neither an RLDS dataset (no dataset_info.json) nor a VRS-style folder (no mask_gt/<video>/<000|001|002>/*.png)"
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
    return {name[: -len(MASK_FEATURE_SUFFIX)]: name for name in observation.keys() if name.endswith(MASK_FEATURE_SUFFIX)}


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
        clips = {c: LabelClip.from_label_maps(range(len(maps)), np.stack(maps)) for c, maps in per_camera.items() if maps}
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
    """The object masks of one VRS video folder (``<000|001|002>/<frame:05d>.png``).

    Each object folder keeps its own frames and its own binary mask (any value > 0),
    as the release's ``tools/benchmark.py`` reads them; a missing folder is a target the
    video does not annotate. Frames are in file-name order (a plain string sort, as the
    release lists them), which is frame order for zero-padded names.
    """
    video_dir = pathlib.Path(video_dir)
    objects, shape = {}, None
    for target, folder in VRS_OBJECT_DIRS.items():
        paths = sorted((video_dir / folder).glob("*.png"), key=lambda p: p.name)
        if not paths:
            continue
        bad = [p.name for p in paths if not p.stem.isdigit()]
        if bad:
            raise EvalInputError(f"{video_dir / folder}: mask files must be named by their frame index (00000.png), not {bad[0]}")
        files = [(int(p.stem), p) for p in paths]
        masks = []
        for frame, path in files:
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise EvalInputError(f"{path}: cannot read image")
            shape = shape or mask.shape
            if mask.shape != shape:
                raise EvalInputError(f"{path}: mask is {mask.shape}, other masks of {video_dir} are {shape}")
            masks.append(mask > 0)
        objects[target] = ObjectMasks(tuple(f for f, _ in files), np.stack(masks))
    if not objects:
        raise EvalInputError(f"{video_dir}: no mask files in {'/'.join(VRS_OBJECT_DIRS.values())}")
    return LabelClip(objects)


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
    progress: Callable[[int], None] | None = None,
) -> metrics.EvalResult:
    """Score every prediction episode against its ground-truth episode.

    ``cameras`` default to those with masks on both sides (RLDS vs RLDS); with a VRS side
    each video is one clip. ``progress(scored)`` is called after each scored episode.
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
        if progress:
            progress(len(scored))
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
        raise EvalInputError(f"no camera has masks in both {pred.path} ({list(pred.cameras)}) and {gt.path} ({list(gt.cameras)})")
    return common


def _score_episode(
    pred: MaskEpisode,
    gt: MaskEpisode,
    skip_first_last: bool,
    pred_path: pathlib.Path,
) -> metrics.EpisodeScores:
    frames = []
    for camera, truth in gt.clips.items():
        where = f"{pred_path} episode {pred.display_key} camera {camera}"
        if camera not in pred.clips:
            raise EvalInputError(f"{where}: missing")
        per_target = {}
        for target, obj in truth.objects.items():
            predicted_obj = pred.clips[camera].objects.get(target)
            if predicted_obj is None:
                raise EvalInputError(f"{where}: no {target} masks (object folder {VRS_OBJECT_DIRS[target]})")
            predicted = predicted_obj.at(obj.frame_ids, f"{where} target {target}")
            if predicted.shape != obj.masks.shape:
                raise EvalInputError(
                    f"{where}: {target} masks are {predicted.shape[1:]} but ground truth {gt.key} is {obj.masks.shape[1:]}"
                )
            per_target[target] = metrics.score_object(
                predicted,
                obj.masks,
                frame_ids=obj.frame_ids,
                skip_first_last=skip_first_last,
            )
        frames += metrics.frames_from_objects(camera, per_target)
    return metrics.episode_scores(gt.key, pred.display_key, frames)


# ----------------------------------------------------------------------------- RobotSeg protocol


def vrs_image_dir(gt: MaskDataset, video: str) -> pathlib.Path:
    """``image/<video>`` beside the ``mask_gt`` folder of a VRS split."""
    return gt.path.parent / "image" / video


def evaluate_robotseg(
    gt: MaskDataset,
    predictor,
    settings: Sequence[str] = ("AU", "1C", "3C", "BB"),
    targets: Sequence[str] = TARGETS,
    pred: MaskDataset | None = None,
) -> dict[str, metrics.EvalResult]:
    """RobotSeg's protocol on a VRS split: per setting, every video's targets prompted from ground truth, tracked, scored.

    ``predictor`` is a ``RobotSegVideoPredictor``; with ``pred`` (stored predictions)
    nothing runs and the one setting is ``pred``. Each target is scored on every annotated
    frame from the first where it shows up in the ground truth or the prediction (the
    release's ``eval_auto_semi.sh`` passes ``--do_not_skip_first_and_last_frame``; our own
    predictions are empty before the prompt frame, as the release writes none there),
    predictions refined as the release's script does.
    """
    if gt.kind != "vrs":
        raise EvalInputError(f"{gt.path}: --protocol robotseg reads VRS folders (image/<video>/, mask_gt/<video>/<000|001|002>/)")
    # torch and the model only when the protocol runs: plain `eval` stays light.
    from segmentation.robotseg import protocol

    videos = [e for e in gt.episodes(gt.cameras) if any(t in e.clips[VRS_CAMERA].objects for t in targets)]
    if pred is not None:
        predicted = {e.key: e for e in pred.episodes(pred.cameras)}
        scored = []
        for video in videos:
            if video.key not in predicted:
                raise EvalInputError(f"{pred.path}: no prediction for video {video.key}")
            episode = _protocol_episode(predicted[video.key], video, targets, pred.path)
            if episode is not None:
                scored.append(episode)
        return {"pred": _overall(scored, gt.path)}
    results = {}
    for setting in settings:
        scored = []
        for video in videos:
            image_dir = vrs_image_dir(gt, video.key)
            if not image_dir.is_dir():
                raise EvalInputError(f"{image_dir}: no frames for video {video.key}")
            frames = _load_vrs_frames(image_dir)
            frame_ids = tuple(sorted(int(p.stem) for p in image_dir.iterdir() if p.stem.isdigit()))
            if len(frame_ids) != len(frames):
                raise EvalInputError(f"{image_dir}: frame files must be named by their index (00000.jpg, ...)")
            truth = video.clips[VRS_CAMERA]
            full = {}
            for target in targets:
                obj = truth.objects.get(target)
                if obj is None:
                    continue
                if obj.masks.shape[1:] != frames.shape[1:3]:
                    raise EvalInputError(f"{image_dir}: frames are {frames.shape[1:3]}, {target} masks {obj.masks.shape[1:]}")
                masks = np.zeros(frames.shape[:3], bool)
                position = {f: i for i, f in enumerate(frame_ids)}
                missing = [f for f in obj.frame_ids if f not in position]
                if missing:
                    raise EvalInputError(f"{image_dir}: no frame files for annotated frames {missing[:5]} ({target})")
                masks[[position[f] for f in obj.frame_ids]] = obj.masks
                full[target] = masks
            masks = protocol.segment_for_protocol(predictor, frames, full, setting)
            clip = LabelClip({t: ObjectMasks(frame_ids, m) for t, m in masks.items()})
            episode = _protocol_episode(MaskEpisode(video.key, {VRS_CAMERA: clip}), video, targets, image_dir)
            if episode is not None:
                scored.append(episode)
        results[setting] = _overall(scored, gt.path)
    return results


def _load_vrs_frames(image_dir: pathlib.Path) -> np.ndarray:
    """A VRS video's frames ``(T, H, W, 3)`` uint8 RGB, ordered by the integer in their names."""
    from segmentation.robotseg.video import load_frame_folder

    try:
        return load_frame_folder(image_dir)
    except ValueError as error:
        raise EvalInputError(str(error)) from None


def _protocol_episode(pred: MaskEpisode, gt: MaskEpisode, targets: Sequence[str], where) -> metrics.EpisodeScores | None:
    wanted = {t: o for t, o in gt.clips[VRS_CAMERA].objects.items() if t in targets and o.masks.any()}
    if not wanted:
        return None
    gt = MaskEpisode(gt.key, {VRS_CAMERA: LabelClip(wanted)})
    return _score_episode(pred, gt, skip_first_last=False, pred_path=pathlib.Path(str(where)))


def _overall(scored: list[metrics.EpisodeScores], path: pathlib.Path) -> metrics.EvalResult:
    if not scored:
        raise EvalInputError(f"{path}: no video has ground truth for the requested targets")
    return metrics.overall_scores(scored)


def write_csv(path: str | pathlib.Path, results: dict[str, metrics.EvalResult]) -> None:
    """The per-video CSV: one row per (video, setting, target), scores in percent."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=metrics.CSV_COLUMNS)
        writer.writeheader()
        for setting, result in results.items():
            for row in metrics.csv_rows(result, setting):
                writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})


# ----------------------------------------------------------------------------- command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="J&F of robot masks against ground truth (RLDS datasets or VRS folders); RobotSeg's VRS protocol",
        description=(
            "Default protocol (sav): compare steps/observation/<camera>_robot_mask label maps of two RLDS datasets "
            "(or VRS-style mask folders) episode by episode; print J, F and J&F per target (robot, arm, gripper). "
            "Each target (VRS object folder 000 arm, 001 gripper, 002 robot) is scored as its own binary mask, as "
            "SA-V's sav_benchmark.py does. Pipeline outputs are matched to their source episode through "
            "episode_metadata/augmentation. "
            "--protocol robotseg: RobotSeg's VRS evaluation: --gt is a VRS split (image/<video>/<frame>.jpg, "
            "mask_gt/<video>/<000|001|002>/<frame>.png); each target is prompted from its ground truth on its first "
            "present frame (AU automatic, 1C one click at the mask's interior centre, 3C three clicks at the largest "
            "error regions, BB the box), tracked with RobotSeg (--config/--checkpoint), and scored from that frame "
            "(every frame from it on, refined as the release's script refines them); with --pred, stored predictions are scored by the same rules."
        ),
    )
    parser.add_argument(
        "--pred", help="predicted masks: RLDS version folder or VRS-style folder (required unless --protocol robotseg)"
    )
    parser.add_argument(
        "--gt",
        required=True,
        help="ground-truth masks: RLDS version folder or VRS-style folder (a VRS split for --protocol robotseg)",
    )
    parser.add_argument(
        "--protocol",
        choices=("sav", "robotseg"),
        default="sav",
        help="sav (default): compare stored masks; robotseg: RobotSeg's VRS protocol",
    )
    parser.add_argument("--split", default="train", help="RLDS split to read on both sides (default train)")
    parser.add_argument("--json", metavar="FILE", help="also write the scores as JSON to FILE")
    parser.add_argument(
        "--csv", metavar="FILE", help="also write per-video scores (video, setting, target, frames, J, F, JF in percent) to FILE"
    )
    parser.add_argument(
        "--no-skip-first-last",
        dest="skip_first_last",
        action="store_false",
        help="score the first and last frame of each clip too (SA-V skips them; sav protocol only)",
    )
    parser.add_argument(
        "--cameras",
        nargs="+",
        metavar="CAMERA",
        help="RLDS cameras to score, space- or comma-separated (default: all with masks on both sides)",
    )
    robotseg = parser.add_argument_group("--protocol robotseg")
    robotseg.add_argument(
        "--settings",
        nargs="+",
        default=["AU", "1C", "3C", "BB"],
        metavar="SETTING",
        help="prompt settings to run: AU 1C 3C BB (default all)",
    )
    robotseg.add_argument(
        "--targets", nargs="+", default=list(TARGETS), metavar="TARGET", help="targets to score: arm gripper robot (default all)"
    )
    robotseg.add_argument(
        "--config",
        default="robotseg_hiera_t",
        help="RobotSeg config name (robotseg_hiera_t, tiny) or the release's robotseg-infer.yaml",
    )
    robotseg.add_argument("--checkpoint", help="RobotSeg checkpoint (robotseg.pt, or one written by `oxe-augment finetune`)")
    robotseg.add_argument(
        "--allow-random-init", action="store_true", help="run without a checkpoint (tests only: random weights)"
    )
    robotseg.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    parser.set_defaults(handler=run_eval)


def _progress_line(every_seconds: float = 2.0) -> Callable[[int], None]:
    """A progress callback for ``evaluate``: "scored N episodes" every few seconds (stderr)."""
    from pipelines.console import Console

    console, last = Console(), [time.monotonic()]

    def show(scored: int) -> None:
        if time.monotonic() - last[0] >= every_seconds:
            last[0] = time.monotonic()
            console.progress(f"scored {scored} episodes ...")

    return show


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``eval``: score, print the table, write JSON/CSV. Exit 2 on unusable inputs."""
    if args.protocol == "robotseg":
        return _run_robotseg_protocol(args)
    if not args.pred:
        print("eval: --pred is required (unless --protocol robotseg)", file=sys.stderr)
        return 2
    try:
        pred = open_mask_dataset(args.pred, args.split)
        gt = open_mask_dataset(args.gt, args.split)
        cameras = [c for arg in args.cameras or () for c in arg.split(",") if c]
        result = evaluate(pred, gt, cameras=cameras or None, skip_first_last=args.skip_first_last, progress=_progress_line())
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
    if args.csv:
        write_csv(args.csv, {"": result})
        print(f"wrote {args.csv}")
    return 0


def _run_robotseg_protocol(args: argparse.Namespace) -> int:
    targets = [t for arg in args.targets for t in arg.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    settings = [s.upper() for arg in args.settings for s in arg.split(",") if s]
    bad = [s for s in settings if s not in ("AU", "1C", "3C", "BB")]
    if unknown or bad:
        print(f"eval: unknown {'target' if unknown else 'setting'} {(unknown or bad)[0]!r}", file=sys.stderr)
        return 2
    try:
        gt = open_mask_dataset(args.gt, args.split)
        pred = open_mask_dataset(args.pred, args.split) if args.pred else None
        predictor = None
        if pred is None:
            if args.checkpoint is None and not args.allow_random_init:
                raise EvalInputError("--checkpoint: required to run RobotSeg (or --pred to score stored predictions)")
            from segmentation.robotseg.build import build_robotseg_video_predictor
            from segmentation.robotseg.checkpoint import CheckpointError
            from segmentation.robotseg.source import resolve_device

            try:
                predictor = build_robotseg_video_predictor(args.config, args.checkpoint, resolve_device(args.device))
            except (CheckpointError, ValueError) as error:
                raise EvalInputError(f"--checkpoint/--config: {error}") from None
        results = evaluate_robotseg(gt, predictor, settings, targets, pred=pred)
    except EvalInputError as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    for setting, result in results.items():
        print(f"setting {setting}: {len(result.episodes)} videos scored, ground truth {gt.path}")
        print(metrics.format_table(result.overall))
    if args.json:
        payload = {setting: json.loads(result.to_json()) for setting, result in results.items()}
        pathlib.Path(args.json).write_text(json.dumps({"protocol": "robotseg", "settings": payload}, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.csv:
        write_csv(args.csv, results)
        print(f"wrote {args.csv}")
    return 0
