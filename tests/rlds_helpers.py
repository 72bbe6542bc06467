"""Reading RLDS shards back in tests, independently of the pipeline's reader."""

from __future__ import annotations

import glob
import json
import os

import tensorflow as tf
import tensorflow_datasets as tfds


def raw_examples(dataset_dir, split: str) -> list[dict]:
    """Every episode of ``split`` parsed with TensorFlow itself, images left encoded."""
    builder = tfds.builder_from_directory(str(dataset_dir))
    features = builder.info.features
    observation = features["steps"]["observation"]
    skip = {name: tfds.decode.SkipDecoding() for name, f in observation.items() if isinstance(f, tfds.features.Image)}
    decoders = {"steps": {"observation": skip}}
    files = sorted(glob.glob(os.path.join(str(dataset_dir), f"{builder.info.name}-{split}.tfrecord*")))
    examples = []
    for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
        example = features.deserialize_example_np(record, decoders=decoders)
        example["steps"] = list(example["steps"])
        examples.append(example)
    return examples


def provenance(example: dict) -> dict:
    return json.loads(example["episode_metadata"]["augmentation"])
