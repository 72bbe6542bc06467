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
import re
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from google.protobuf import json_format
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core.proto import feature_pb2
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from pipelines.episode import Episode
from segmentation.labels import MASK_FEATURE_SUFFIX, mask_feature_name

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


@dataclasses.dataclass(frozen=True)
class ReadFailure:
    """Episodes that could not be read: one named episode, or a run of lost ones."""

    split: str
    path: str
    first_index: int
    lost: int  # how many episodes are lost (dataset_info.json says how many there were)
    reason: str

    def keys(self) -> list[str]:
        """Keys of the lost episodes."""
        return [episode_key(self.split, self.first_index + i) for i in range(self.lost)]


def episode_key(split: str, index: int) -> str:
    """The key that names an episode everywhere (reports, provenance, eval matching)."""
    return f"{split}/{index:06d}"


@dataclasses.dataclass
class SourceDataset:
    """What we know about an input dataset before reading any episode."""

    dir: str
    name: str
    version: str
    builder: Any  # tfds.core.ReadOnlyBuilder
    shards: dict[str, list[ShardSpec]]
    cameras: list[str]  # Image features under steps/observation (RGB)

    @property
    def features(self) -> tfds.features.FeaturesDict:
        return self.builder.info.features

    @property
    def observation_features(self) -> dict[str, Any]:
        return dict(self.features["steps"]["observation"].items()) if "steps" in self.features else {}

    def episode_count(self, split: str) -> int:
        return sum(s.expected for s in self.shards[split])

    def camera_shape(self, camera: str) -> tuple[int, ...]:
        return tuple(self.observation_features[camera].shape)


def open_dataset(path: str) -> SourceDataset:
    """Open the TFDS version folder at ``path`` (local or ``gs://``)."""
    if not FileSystems.exists(FileSystems.join(path, "dataset_info.json")):
        if not FileSystems.exists(path):
            raise DatasetError(f"{path}: input folder does not exist")
        raise DatasetError(f"{path}: not a TFDS version folder (no dataset_info.json; point at <name>/<version>/)")
    try:
        builder = tfds.builder_from_directory(path)
    except Exception as e:  # tfds raises a variety of errors for malformed folders
        raise DatasetError(f"{path}: cannot be read as a TFDS dataset: {e}") from e
    info = builder.info
    features = info.features
    if "steps" not in features:
        raise DatasetError(f"{path}: not an RLDS dataset (no 'steps' feature)")
    file_format = info.file_format.file_suffix if info.file_format else "tfrecord"
    if "tfrecord" not in file_format:
        raise DatasetError(f"{path}: file format {file_format!r} is not supported (only tfrecord)")
    shards = {split: _split_shards(path, info.name, split, file_format, info.splits[split].shard_lengths) for split in info.splits}
    return SourceDataset(
        dir=path,
        name=info.name,
        version=str(info.version),
        builder=builder,
        shards=shards,
        cameras=discover_cameras(features),
    )


def discover_cameras(features) -> list[str]:
    """Camera names: 3-channel ``Image`` features under ``steps/observation`` (not masks)."""
    observation = features["steps"]["observation"]
    cameras = []
    for name, feature in observation.items():
        if isinstance(feature, tfds.features.Image) and not name.endswith(MASK_FEATURE_SUFFIX):
            if feature.shape[-1] == 3:
                cameras.append(name)
    return sorted(cameras)


_SHARD_SUFFIX = re.compile(r"-(\d+)-of-(\d+)$")


def _split_shards(path: str, name: str, split: str, file_format: str, shard_lengths: list[int]) -> list[ShardSpec]:
    """The shard files of one split in order, with and without the ``-of-N`` suffix."""
    prefix = FileSystems.join(path, f"{name}-{split}.{file_format}")
    matches = FileSystems.match([prefix + "*"])[0].metadata_list
    files = []
    for metadata in matches:
        rest = metadata.path[len(prefix):]
        if rest == "":
            files.append((0, metadata.path))
        elif _SHARD_SUFFIX.fullmatch(rest):
            files.append((int(_SHARD_SUFFIX.fullmatch(rest).group(1)), metadata.path))
    files.sort()
    if not files:
        raise DatasetError(f"{path}: split {split!r} has no shard files matching {prefix}*")
    if len(shard_lengths) != len(files):
        raise DatasetError(
            f"{path}: split {split!r} has {len(files)} shard files but dataset_info.json lists {len(shard_lengths)}"
        )
    specs, first = [], 0
    for (index, file_path), length in zip(files, shard_lengths):
        specs.append(ShardSpec(split, file_path, index, first, int(length)))
        first += int(length)
    return specs


def read_shard(shard: ShardSpec, max_episodes: int | None = None) -> Iterator[RawEpisode | ReadFailure]:
    """Yield the shard's episodes; a damaged tail yields one ``ReadFailure`` and stops."""
    index = shard.first_index
    stop = shard.first_index + shard.expected
    if max_episodes is not None:
        stop = min(stop, max_episodes)
    if index >= stop:
        return
    try:
        handle = FileSystems.open(shard.path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as e:  # noqa: BLE001 - any I/O error loses the whole shard
        yield ReadFailure(shard.split, shard.path, index, stop - index, f"cannot open shard: {e}")
        return
    with handle:
        while index < stop:
            try:
                data = _TFRecordUtil.read_record(handle)
            except ValueError as e:
                yield ReadFailure(shard.split, shard.path, index, stop - index, f"damaged record: {e}"[:300])
                return
            if data is None:
                reason = f"shard ends after {index - shard.first_index} of {shard.expected} episodes (truncated)"
                yield ReadFailure(shard.split, shard.path, index, stop - index, reason)
                return
            yield RawEpisode(episode_key(shard.split, index), shard.split, index, data)
            index += 1


def image_decoders(features) -> dict:
    """TFDS decoders that keep every Image feature under steps/observation encoded."""
    observation = features["steps"]["observation"]
    skip = {name: tfds.decode.SkipDecoding() for name, f in observation.items() if isinstance(f, tfds.features.Image)}
    return {"steps": {"observation": skip}}


def decode_episode(features, raw: RawEpisode, decoders: dict) -> Episode:
    """Parse one raw record into an :class:`Episode` (images stay encoded)."""
    example = features.deserialize_example_np(raw.data, decoders=decoders)
    example["steps"] = list(example["steps"])
    if not example["steps"]:
        raise ValueError("episode has no steps")
    return Episode(key=raw.key, split=raw.split, index=raw.index, example=example)


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


def output_features(source_features, *, mask_cameras: dict[str, tuple[int, int]]):
    """The source's features plus ``episode_metadata/augmentation`` and any mask features.

    Edited as the source's ``features.json`` tree so every source feature (descriptions
    included) is kept exactly; ``mask_cameras`` maps camera -> (H, W) for masks to add.
    """
    tree = _feature_json(source_features)
    top = tree["featuresDict"]["features"]
    if "episode_metadata" not in top:
        top["episode_metadata"] = _feature_json(tfds.features.FeaturesDict({}))
    top["episode_metadata"]["featuresDict"]["features"][AUGMENTATION_FIELD] = _feature_json(
        tfds.features.Text(doc="oxe-augment provenance (JSON): source_dataset, source_key, variant, recipe_sha256, tool_version")
    )
    step = top["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    observation = step["observation"]["featuresDict"]["features"]
    for camera, (height, width) in mask_cameras.items():
        observation[mask_feature_name(camera)] = _feature_json(
            tfds.features.Image(
                shape=(height, width, 1),
                dtype=np.uint8,
                encoding_format="png",
                doc="oxe-augment robot label map: 0 background, 1 body, 2 arm, 3 gripper",
            )
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
