"""Reading and writing RLDS datasets (TFDS version folders), local or ``gs://``.

Reading works on raw TFRecords rather than ``tf.data`` so that a damaged shard costs only
the records it damaged: every intact record before the damage is read, and the loss is
reported (``ReadFailure``) instead of failing the job. Image features are kept encoded;
frames are decoded only for the cameras a recipe changes, and an unchanged frame is
written back with its original bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil
from google.protobuf import json_format
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core.proto import feature_pb2

from pipelines.episode import Episode, observation_path, sibling_path
from segmentation.labels import (
    MASK_FEATURE_SUFFIX,
    OBJECT_MASK_SUFFIX,
    mask_feature_name,
    object_mask_feature_name,
)

log = logging.getLogger("oxe_augment")

AUGMENTATION_FIELD = "augmentation"


class DatasetError(ValueError):
    """The input dataset folder is missing or malformed; the message names the path."""


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """One shard file of one split, and where its episodes sit in the split's order."""

    split: str
    path: str
    shard_index: int
    first_index: int  # index (within the split) of the shard's first episode
    expected: int  # episodes dataset_info.json promises in this shard


@dataclasses.dataclass(frozen=True)
class RawEpisode:
    key: str
    split: str
    index: int
    data: bytes
    source: str = ""  # the shard file it was read from


@dataclasses.dataclass(frozen=True)
class ReadFailure:
    """Episodes that could not be read: one named episode, or a run of lost ones."""

    split: str
    path: str
    first_index: int
    lost: int  # how many episodes are lost (dataset_info.json says how many there were)
    reason: str
    offset: int | None = None  # byte offset of the damage in the shard file

    def keys(self) -> list[str]:
        """Keys of the lost episodes."""
        return [episode_key(self.split, self.first_index + i) for i in range(self.lost)]


def episode_key(split: str, index: int) -> str:
    """The key that names an episode everywhere (reports, provenance, eval matching)."""
    return f"{split}/{index:06d}"


@dataclasses.dataclass(frozen=True)
class ObservationFeature:
    """One field under ``steps/observation`` and whether the pipeline treats it as a camera."""

    name: str  # path under steps/observation, nested keys joined with "/"
    kind: str  # the TFDS feature class: Image, Tensor, Scalar, Text, ...
    shape: tuple
    dtype: str
    encoding: str | None  # an Image's declared encoding_format (None: undeclared)
    camera: bool
    reason: str  # why it is (or is not) a camera, for ``inspect``


@dataclasses.dataclass
class SourceDataset:
    """What we know about an input dataset before reading any episode."""

    dir: str  # the TFDS version folder that was opened
    name: str
    version: str
    builder: Any  # tfds.core.ReadOnlyBuilder
    shards: dict[str, list[ShardSpec]]
    cameras: list[str]  # names of the RGB cameras under steps/observation (see describe_observation)
    observation: list[ObservationFeature] = dataclasses.field(default_factory=list)
    missing_shards: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # split -> absent shard files
    _sniffed: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def features(self) -> tfds.features.FeaturesDict:
        return self.builder.info.features

    @property
    def observation_features(self) -> dict[str, Any]:
        """Every leaf feature under ``steps/observation`` by name (nested: ``parent/child``)."""
        return dict(leaf_features(self.features["steps"]["observation"]))

    @property
    def episode_fields(self) -> list[str]:
        """The episode-level features beside ``steps`` (``episode_metadata``, ``aspects``, ...)."""
        return [name for name in self.features.keys() if name != "steps"]

    def episode_count(self, split: str) -> int:
        return sum(s.expected for s in self.shards[split])

    def camera_shape(self, camera: str) -> tuple[int, ...]:
        return tuple(self.observation_features[camera].shape)

    def camera_format(self, camera: str) -> str:
        """How the camera's frames are stored, and so how changed frames are written back:
        ``jpeg`` or ``png`` (an ``Image``), or ``tensor`` (a uint8 ``Tensor``: arrays).

        An ``Image`` without a declared encoding holds whatever bytes its writer was given
        (TFDS decodes them by sniffing); the first stored frame says which.
        """
        feature = self.observation_features[camera]
        if not isinstance(feature, tfds.features.Image):
            return "tensor"
        if feature.encoding_format:
            return feature.encoding_format
        if camera not in self._sniffed:
            self._sniffed[camera] = self._sniff_format(camera)
        return self._sniffed[camera]

    def _sniff_format(self, camera: str) -> str:
        """``jpeg`` or ``png``: the first non-empty frame of ``camera`` in the first records.

        Read from the raw ``tf.train.Example`` rather than through TFDS, which would decode
        other images (float depth maps) on the way and fail on an empty one; empty frames
        are skipped here and reported per episode later.
        """
        import tensorflow as tf

        key = f"steps/observation/{camera}"
        for split in self.shards:
            for shard in self.shards[split]:
                if shard.expected == 0 or shard.path in self.missing_shards.get(split, []):
                    continue
                data = _first_record(shard.path)
                if data is None:
                    continue
                try:
                    frames = tf.train.Example.FromString(data).features.feature[key].bytes_list.value
                except Exception:  # noqa: BLE001 - a damaged record: the reader reports it
                    continue
                for frame in frames:
                    if frame:
                        return "jpeg" if frame[:2] == b"\xff\xd8" else "png"
        return "png"  # no stored frame to look at: TFDS's own choice for arrays


def open_dataset(path: str) -> SourceDataset:
    """Open the TFDS dataset at ``path`` (local or ``gs://``).

    ``path`` is a version folder (``<name>/<version>``) or a dataset folder holding
    versions, of which the newest is opened (and logged). Shard files, their order and
    their episode counts come from each split's entry in ``dataset_info.json``
    (``filepathTemplate`` and ``shardLengths``), as TFDS itself reads them.
    """
    path = find_version_folder(path)
    # TFDS reports a missing features.json as "generated with an old TFDS version": name the file.
    if not FileSystems.exists(FileSystems.join(path, "features.json")):
        raise DatasetError(
            f"{path}: features.json is missing (TFDS needs it beside dataset_info.json to read the records); "
            "copy it from the original dataset"
        )
    try:
        builder = tfds.builder_from_directory(path)
    except Exception as e:  # tfds raises a variety of errors for malformed folders
        raise DatasetError(f"{path}: cannot be read as a TFDS dataset: {e}") from e
    info = builder.info
    features = info.features
    if "steps" not in features or not isinstance(features["steps"], tfds.features.Dataset):
        raise DatasetError(f"{path}: not an RLDS dataset (no 'steps' Dataset feature in features.json)")
    if "observation" not in features["steps"].feature.keys():
        raise DatasetError(f"{path}: not an RLDS dataset (no 'steps/observation' in features.json)")
    file_format = info.file_format.file_suffix if info.file_format else "tfrecord"
    if "tfrecord" not in file_format:
        raise DatasetError(f"{path}: file format {file_format!r} is not supported (only tfrecord)")
    shards, missing = {}, {}
    for split in info.splits:
        shards[split], missing[split] = split_shards(path, info.splits[split])
        if missing[split]:
            log.warning(
                "%s: split %s lacks %d of %d shard files (their episodes will be reported as lost), e.g. %s",
                path,
                split,
                len(missing[split]),
                len(shards[split]),
                missing[split][0],
            )
    observation = describe_observation(features)
    return SourceDataset(
        dir=path,
        name=info.name,
        version=str(info.version),
        builder=builder,
        shards=shards,
        cameras=sorted(f.name for f in observation if f.camera),
        observation=observation,
        missing_shards={s: m for s, m in missing.items() if m},
    )


def find_version_folder(path: str) -> str:
    """``path`` if it is a TFDS version folder, else the newest version folder inside it."""
    if "://" in path:
        try:
            FileSystems.get_filesystem(path)
        except ValueError:
            scheme = path.split("://", 1)[0]
            extra = " (install the gcp extra: pip install 'oxe-augment[gcp]')" if scheme == "gs" else ""
            raise DatasetError(f"{path}: no file system for {scheme}:// paths is installed{extra}") from None
    if FileSystems.exists(FileSystems.join(path, "dataset_info.json")):
        return path
    if not FileSystems.exists(path):
        raise DatasetError(f"{path}: input folder does not exist")
    versions = []
    for metadata in FileSystems.match([FileSystems.join(path, "*", "dataset_info.json")])[0].metadata_list:
        folder = metadata.path[: -len("/dataset_info.json")]
        try:
            versions.append((tfds.core.Version(folder.rstrip("/").rsplit("/", 1)[-1]), folder))
        except ValueError:
            continue  # not named like a version (x.y.z)
    if not versions:
        raise DatasetError(
            f"{path}: not a TFDS dataset (no dataset_info.json here or in a <version>/ folder below; point at <name>/<version>/)"
        )
    versions.sort()
    version, folder = versions[-1]
    log.warning("%s holds version(s) %s; reading the newest, %s", path, ", ".join(str(v) for v, _ in versions), folder)
    return folder


def split_shards(path: str, split_info) -> tuple[list[ShardSpec], list[str]]:
    """The shard files of one split in order, and those of them that are absent.

    Paths come from the split's file-name template in ``dataset_info.json`` (any that
    TFDS writes: ``{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}``, ``...-{SHARD_INDEX}``,
    ``{SPLIT}/data.{FILEFORMAT}-{SHARD_INDEX}``, ...), joined to ``path`` through Beam's
    file systems so ``gs://`` works the same. An absent file loses only its own episodes.
    """
    lengths = [int(n) for n in split_info.shard_lengths]
    template = split_info.filename_template
    specs, first = [], 0
    for index, length in enumerate(lengths):
        relative = template.relative_filepath(shard_index=index, num_shards=len(lengths))
        specs.append(ShardSpec(split_info.name, FileSystems.join(path, relative), index, first, length))
        first += length
    existing = _existing_files([s.path for s in specs])
    missing = [s.path for s in specs if s.path not in existing]
    if specs and len(missing) == len(specs):
        raise DatasetError(
            f"{path}: split {split_info.name!r} has none of its {len(specs)} shard files "
            f"(dataset_info.json names them like {specs[0].path})"
        )
    return specs, missing


def _existing_files(paths: list[str]) -> set[str]:
    """Which of ``paths`` exist: one listing per folder, not one request per file."""
    folders: dict[str, list[str]] = {}
    for file_path in paths:
        folders.setdefault(file_path.rsplit("/", 1)[0], []).append(file_path)
    found: set[str] = set()
    for folder, files in folders.items():
        try:
            matches = FileSystems.match([FileSystems.join(folder, "*")])[0].metadata_list
        except Exception:  # noqa: BLE001 - an unlistable folder: none of its files can be read
            continue
        # A listing may spell the folder differently (absolute, normalised): compare names.
        names = {m.path.rstrip("/").rsplit("/", 1)[-1] for m in matches}
        found.update(f for f in files if f.rsplit("/", 1)[-1] in names)
    return found


def _first_record(path: str) -> bytes | None:
    """The first record of a TFRecord file, or ``None`` if there is none to read."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return _TFRecordUtil.read_record(handle)
    except Exception:  # noqa: BLE001 - a damaged shard is the reader's to report
        return None


# Names that mark a 3-channel uint8 image as something other than a camera view.
# "plate": sample-data's <camera>_true_plate, the ground-truth scene without the robot.
_NOT_CAMERA_WORDS = {"depth", "seg", "segmentation", "mask", "flow", "normal", "normals", "label", "labels", "plate"}


def describe_observation(features) -> list[ObservationFeature]:
    """Every field under ``steps/observation``, each marked camera or not, with the reason.

    A camera is a 3-channel uint8 ``Image`` (JPEG, PNG or undeclared) or a uint8 ``Tensor``
    of shape ``(H, W, 3)``, at any depth of nested dicts. Depth maps, one-channel and float
    images, segmentation or mask images and other tensors are carried untouched.
    """
    described = []
    for name, feature in leaf_features(features["steps"]["observation"]):
        shape = tuple(feature.shape)
        dtype = np.dtype(feature.np_dtype).name if getattr(feature, "np_dtype", None) is not None else "?"
        kind = type(feature).__name__
        encoding = feature.encoding_format if isinstance(feature, tfds.features.Image) else None
        camera, reason = _camera_verdict(name, feature, shape, dtype)
        described.append(ObservationFeature(name, kind, shape, dtype, encoding, camera, reason))
    return described


def _camera_verdict(name: str, feature, shape: tuple, dtype: str) -> tuple[bool, str]:
    words = set(re.split(r"[^a-z0-9]+", name.lower().rsplit("/", 1)[-1]))
    is_image = isinstance(feature, tfds.features.Image)
    if is_image:
        what = f"Image {dtype} {shape}"
    elif type(feature) is tfds.features.Tensor and len(shape) == 3:
        what = f"Tensor {dtype} {shape}"
    elif type(feature) is tfds.features.Tensor and len(shape) >= 2:
        return False, f"Tensor {dtype} {shape}: not (H, W, 3)"
    else:
        return False, "not an image"
    if name.endswith(MASK_FEATURE_SUFFIX) or name.endswith(OBJECT_MASK_SUFFIX):
        return False, f"{what}: an oxe-augment label map"
    if shape[-1] != 3:
        return False, f"{what}: {shape[-1]} channel(s) (depth or label map), not RGB"
    if dtype != "uint8":
        return False, f"{what}: {dtype}, not uint8 RGB (depth?)"
    if is_image and getattr(feature, "_use_colormap", False):
        return False, f"{what}: a segmentation image (use_colormap)"
    if words & _NOT_CAMERA_WORDS:
        return False, f"{what}: the name says {sorted(words & _NOT_CAMERA_WORDS)[0]}, not a camera view"
    if not is_image and (shape[0] is None or shape[1] is None or min(shape[:2]) < 8):
        return False, f"{what}: too small or unsized for an image"
    encoding = (
        f", {feature.encoding_format}" if is_image and feature.encoding_format else (", undeclared encoding" if is_image else "")
    )
    return True, f"{what}{encoding}"


def leaf_features(node, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(name, feature)`` for every non-dict feature under ``node``, nested names ``a/b``."""
    for key, feature in node.items():
        if isinstance(feature, tfds.features.FeaturesDict):
            yield from leaf_features(feature, f"{prefix}{key}/")
        else:
            yield prefix + key, feature


def image_decoders(features) -> dict:
    """TFDS decoders that keep every ``Image`` feature encoded, wherever it is in the tree.

    Copied frames then keep their original bytes. Float ``Image``s are the exception:
    TFDS only writes them from arrays (it re-encodes the same 4-channel PNG).
    """

    def walk(feature):
        if isinstance(feature, tfds.features.Image):
            return None if np.dtype(feature.np_dtype) == np.float32 else tfds.decode.SkipDecoding()
        if isinstance(feature, tfds.features.Sequence):  # includes Dataset (steps)
            return walk(feature.feature)
        if isinstance(feature, tfds.features.FeaturesDict):
            inner = {key: walk(child) for key, child in feature.items()}
            inner = {key: d for key, d in inner.items() if d is not None}
            return inner or None
        return None

    return walk(features) or {}


def decode_episode(features, raw: RawEpisode, decoders: dict) -> Episode:
    """Parse one raw record into an :class:`Episode` (images stay encoded)."""
    example = features.deserialize_example_np(raw.data, decoders=decoders)
    example["steps"] = list(example["steps"])
    if not example["steps"]:
        raise ValueError("episode has no steps")
    return Episode(key=raw.key, split=raw.split, index=raw.index, example=example, source=raw.source)


# ---------------------------------------------------------------------------------------
# Output schema


class DeterministicExampleSerializer(example_serializer.ExampleSerializer):
    """TFDS's serializer, with each ``tf.train.Example``'s feature map in key order.

    The protobuf runtime otherwise writes maps in a hash order seeded per process, so the
    same episodes written by two processes (two runs, or two Beam workers) differ in bytes.
    """

    def serialize_example(self, example):
        return self.get_tf_example(example).SerializeToString(deterministic=True)


@contextlib.contextmanager
def deterministic_serialization() -> Iterator[None]:
    """Within this block TFDS writers serialize with :class:`DeterministicExampleSerializer`.

    TFDS builds its serializer internally (``split_builder``) by looking the class up on
    its module, so the class is swapped there for the duration of the write; Beam then
    pickles our subclass into the writer, and every worker serializes the same way.
    """
    original = example_serializer.ExampleSerializer
    example_serializer.ExampleSerializer = DeterministicExampleSerializer
    try:
        yield
    finally:
        example_serializer.ExampleSerializer = original


def output_features(
    source_features,
    *,
    mask_cameras: dict[str, tuple[int, int]],
    object_cameras: dict[str, tuple[int, int]] | None = None,
):
    """The source's features plus ``episode_metadata/augmentation`` and any mask features.

    Edited as the source's ``features.json`` tree so every source feature (descriptions
    included) is kept exactly; ``mask_cameras`` maps camera -> (H, W) for robot masks to
    add, ``object_cameras`` the same for task-object masks (``<camera>_object_mask``).
    A mask sits beside its camera: ``images/wrist`` gets ``images/wrist_robot_mask``.

    Sources differ at the episode level (``episode_metadata``, RT-1's ``aspects`` and
    ``attributes``, kuka's ``success``, or nothing beside ``steps``): every one of them is
    kept, and ``episode_metadata`` is created when the source has none.
    """
    tree = _feature_json(source_features)
    top = tree["featuresDict"].setdefault("features", {})
    metadata = top.setdefault("episode_metadata", _feature_json(tfds.features.FeaturesDict({})))
    if "featuresDict" not in metadata:
        raise DatasetError(
            "features.json: episode_metadata is not a FeaturesDict, so provenance "
            f"(episode_metadata/{AUGMENTATION_FIELD}) cannot be added to it"
        )
    metadata["featuresDict"].setdefault("features", {})[AUGMENTATION_FIELD] = _feature_json(
        tfds.features.Text(doc="oxe-augment provenance (JSON): source_dataset, source_key, variant, recipe_sha256, tool_version")
    )
    source_observation = source_features["steps"]["observation"]
    observation = top["steps"]["sequence"]["feature"]["featuresDict"]["features"]["observation"]
    added = [
        (c, size, mask_feature_name, "oxe-augment robot label map: 0 background, 1 body, 2 arm, 3 gripper")
        for c, size in mask_cameras.items()
    ]
    added += [
        (c, size, object_mask_feature_name, "oxe-augment task-object label map: 0 none, k = task object k")
        for c, size in (object_cameras or {}).items()
    ]
    for camera, (height, width), feature_name, doc in added:
        path = sibling_path(observation_path(source_observation, camera), feature_name)
        node = observation
        for key in path[:-1]:
            node = node["featuresDict"]["features"][key]
        node["featuresDict"]["features"][path[-1]] = _feature_json(
            tfds.features.Image(shape=(height, width, 1), dtype=np.uint8, encoding_format="png", doc=doc)
        )
    return tfds.features.FeatureConnector.from_proto(json_format.ParseDict(tree, feature_pb2.Feature()))


def _feature_json(feature) -> dict:
    return json_format.MessageToDict(feature.to_proto())


def provenance(source_dataset: str, source_key: str, variant: str, recipe_sha256: str, tool_version: str) -> str:
    """The ``episode_metadata/augmentation`` JSON of one written episode."""
    return json.dumps(
        {
            "source_dataset": source_dataset,
            "source_key": source_key,
            "variant": variant,
            "recipe_sha256": recipe_sha256,
            "tool_version": tool_version,
        },
        sort_keys=True,
    )
