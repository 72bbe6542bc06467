"""Small synthetic RLDS datasets with the feature trees of published Open X-Embodiment sets.

Each :class:`Schema` copies one feature tree from ``../shared/OXE_SCHEMAS.md`` exactly
(names, dtypes, shapes, encodings, episode-level dicts); only image sizes (and the
depth maps and flows that share them) are scaled down. :func:`write_dataset` writes a
few episodes with TFDS's own writer (a ``GeneratorBasedBuilder``) under the schema's
file-name template, optionally with a drawn robot mask per camera
(``<camera>_robot_mask``), so that an augmentation recipe can run with
``segmentation.source: dataset``.

Every RGB frame shows a dark "robot" box on a coloured background; the box is where the
mask says the robot is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
from typing import Any, Callable

import cv2
import numpy as np
import tensorflow_datasets as tfds

from pipelines.rlds_io import deterministic_serialization
from segmentation.labels import ARM, mask_feature_name

F = tfds.features
f32, f64, i32, i64, u8, u16 = np.float32, np.float64, np.int32, np.int64, np.uint8, np.uint16

DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
INDEX_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}"


def Img(h: int, w: int, c: int = 3, dtype=u8, enc: str | None = None) -> F.Image:
    return F.Image(shape=(h, w, c), dtype=dtype, encoding_format=enc)


def T(*shape: int, dtype=f32, encoding: str = "none") -> F.Tensor:
    return F.Tensor(shape=tuple(shape), dtype=dtype, encoding=encoding)


def S(dtype=f32) -> F.Scalar:
    return F.Scalar(dtype=dtype)


def STR() -> F.Tensor:
    return F.Tensor(shape=(), dtype=np.str_)


def TXT() -> F.Text:
    return F.Text()


def BOOL3() -> dict:
    return {"is_first": S(np.bool_), "is_last": S(np.bool_), "is_terminal": S(np.bool_)}


def RT1_ACTION() -> dict:
    """The six-key dict action of fractal and kuka."""
    return {
        "base_displacement_vector": T(2),
        "base_displacement_vertical_rotation": T(1),
        "gripper_closedness_action": T(1),
        "rotation_delta": T(3),
        "terminate_episode": T(3, dtype=i32),
        "world_vector": T(3),
    }


@dataclasses.dataclass(frozen=True)
class Schema:
    name: str
    version: str
    tree: Callable[[], dict]  # the FeaturesDict contents (a fresh dict per call)
    cameras: tuple[str, ...]  # what inspect must call a camera
    not_cameras: tuple[str, ...] = ()  # image-like fields inspect must reject
    splits: tuple[tuple[str, int], ...] = (("train", 2),)  # split -> episodes
    steps: tuple[int, ...] = (3, 2)  # steps of episode i: steps[i % len]
    template: str = DEFAULT_TEMPLATE
    shards: int = 1  # shards per split
    undeclared_jpeg: bool = False  # feed JPEG bytes to Images without a declared encoding

    def features(self, with_masks: bool = False) -> F.FeaturesDict:
        tree = self.tree()
        if with_masks:
            observation = tree["steps"]["observation"]
            for camera in self.cameras:
                *parents, leaf = camera.split("/")
                node = observation
                for parent in parents:
                    node = node[parent]
                height, width = node[leaf].shape[:2]
                node[mask_feature_name(leaf)] = Img(height, width, 1, enc="png")
        tree["steps"] = F.Dataset(tree["steps"])
        return F.FeaturesDict(tree)


# ---------------------------------------------------------------------------------------
# The feature trees (OXE_SCHEMAS.md section 1; sizes scaled down)


def _fractal() -> dict:
    return {
        "aspects": {k: S(np.bool_) for k in ("already_success", "feasible", "has_aspects", "success", "undesirable")},
        "attributes": {
            **{k: S(i64) for k in ("collection_mode", "data_type", "env", "location", "objects_family", "task_family")},
            **{f"{k}_name": STR() for k in ("collection_mode", "data_type", "env", "location", "objects_family", "task_family")},
        },
        "steps": {
            "action": RT1_ACTION(),
            "observation": {
                "image": Img(16, 20, enc="jpeg"),
                "natural_language_embedding": T(512),
                "natural_language_instruction": STR(),
                "base_pose_tool_reached": T(7),
                "gripper_closed": T(1),
                "gripper_closedness_commanded": T(1),
                "height_to_bottom": T(1),
                "orientation_box": T(2, 3),
                "orientation_start": T(4),
                "robot_orientation_positions_box": T(3, 3),
                "rotation_delta_to_go": T(3),
                "src_rotation": T(4),
                "vector_to_go": T(3),
                "workspace_bounds": T(3, 3),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _kuka() -> dict:
    return {
        "success": S(np.bool_),
        "steps": {
            "action": RT1_ACTION(),
            "observation": {
                "image": Img(16, 20, enc="jpeg"),
                "natural_language_embedding": T(512),
                "natural_language_instruction": STR(),
                # Keys with "/" inside, and zlib-compressed tensors (OXE_SCHEMAS.md, kuka).
                "clip_function_input/base_pose_tool_reached": T(7, encoding="zlib"),
                "clip_function_input/workspace_bounds": T(3, 3),
                "gripper_closed": T(1, encoding="zlib"),
                "height_to_bottom": T(1),
                "task_id": T(1),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _bridge_oxe() -> dict:
    return {
        "steps": {
            "action": {"open_gripper": S(np.bool_), "rotation_delta": T(3), "terminate_episode": S(f32), "world_vector": T(3)},
            "observation": {
                "image": Img(24, 32),
                "natural_language_embedding": T(512),
                "natural_language_instruction": STR(),
                "state": T(7),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _bridge_dataset() -> dict:
    return {
        "episode_metadata": {
            "file_path": TXT(),
            "episode_id": S(i32),
            **{f"has_image_{k}": S(np.bool_) for k in range(4)},
            "has_depth_0": S(np.bool_),
            "has_language": S(np.bool_),
        },
        "steps": {
            "observation": {
                **{f"image_{k}": Img(16, 20, enc="jpeg") for k in range(4)},
                "depth_0": Img(16, 20, 1, enc="jpeg"),
                "state": T(7),
            },
            "action": T(7),
            "discount": S(f32),
            "reward": S(f32),
            **BOOL3(),
            "language_instruction": TXT(),
            "language_embedding": T(512),
        },
    }


def _language_table() -> dict:
    return {
        "episode_id": STR(),
        "steps": {
            "action": T(2),
            "observation": {
                "rgb": Img(18, 32, enc="jpeg"),
                "effector_translation": T(2),
                "effector_target_translation": T(2),
                "instruction": T(512, dtype=i32),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _taco_play() -> dict:
    return {
        "steps": {
            "action": {"actions": T(7), "rel_actions_gripper": T(7), "rel_actions_world": T(7), "terminate_episode": S(f32)},
            "observation": {
                "rgb_static": Img(15, 20),
                "rgb_gripper": Img(12, 12),
                "depth_static": T(15, 20),
                "depth_gripper": T(12, 12),
                "robot_obs": T(15),
                "natural_language_embedding": T(512),
                "natural_language_instruction": STR(),
                "structured_language_instruction": STR(),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _jaco_play() -> dict:
    return {
        "steps": {
            "action": {"gripper_closedness_action": T(1), "terminate_episode": T(3, dtype=i32), "world_vector": T(3)},
            "observation": {
                "image": Img(16, 16),
                "image_wrist": Img(16, 16),
                "end_effector_cartesian_pos": T(7),
                "end_effector_cartesian_velocity": T(6),
                "joint_pos": T(8),
                "natural_language_embedding": T(512),
                "natural_language_instruction": STR(),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _berkeley_autolab_ur5() -> dict:
    return {
        "steps": {
            "action": {
                "gripper_closedness_action": S(f32),
                "rotation_delta": T(3),
                "terminate_episode": S(f32),
                "world_vector": T(3),
            },
            "observation": {
                "image": Img(24, 32),
                "hand_image": Img(24, 32),
                "image_with_depth": Img(24, 32, 1, dtype=f32),
                "robot_state": T(15),
                "natural_language_embedding": T(512),
                "natural_language_instruction": STR(),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _toto() -> dict:
    return {
        "steps": {
            "action": {"open_gripper": S(np.bool_), "rotation_delta": T(3), "terminate_episode": S(f32), "world_vector": T(3)},
            "observation": {
                "image": Img(24, 32),
                "state": T(7),
                "natural_language_embedding": T(512),
                "natural_language_instruction": STR(),
            },
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _droid() -> dict:
    return {
        "episode_metadata": {"file_path": TXT(), "recording_folderpath": TXT()},
        "steps": {
            "observation": {
                "exterior_image_1_left": Img(18, 32, enc="jpeg"),
                "exterior_image_2_left": Img(18, 32, enc="jpeg"),
                "wrist_image_left": Img(18, 32, enc="jpeg"),
                "cartesian_position": T(6, dtype=f64),
                "gripper_position": T(1, dtype=f64),
                "joint_position": T(7, dtype=f64),
            },
            "action": T(7, dtype=f64),
            "action_dict": {
                "cartesian_position": T(6, dtype=f64),
                "cartesian_velocity": T(6, dtype=f64),
                "gripper_position": T(1, dtype=f64),
                "gripper_velocity": T(1, dtype=f64),
                "joint_position": T(7, dtype=f64),
                "joint_velocity": T(7, dtype=f64),
            },
            "language_instruction": TXT(),
            "language_instruction_2": TXT(),
            "language_instruction_3": TXT(),
            "discount": S(f32),
            "reward": S(f32),
            **BOOL3(),
        },
    }


def _nyu_franka_play() -> dict:
    return {
        "episode_metadata": {"file_path": TXT()},
        "steps": {
            "observation": {
                "image": Img(16, 16, enc="png"),
                "image_additional_view": Img(16, 16, enc="png"),
                "depth": T(16, 16, 1, dtype=i32),
                "depth_additional_view": T(16, 16, 1, dtype=i32),
                "state": T(13),
            },
            "action": T(15),
            "discount": S(f32),
            "reward": S(f32),
            **BOOL3(),
            "language_instruction": TXT(),
            "language_embedding": T(512),
        },
    }


def _stanford_kuka_multimodal() -> dict:
    return {
        "episode_metadata": {},  # published as an empty dict
        "steps": {
            "observation": {
                "image": Img(16, 16, enc="png"),
                "depth_image": T(16, 16, 1),
                "optical_flow": T(16, 16, 2),
                "ee_forces_continuous": T(50, 6),
                "state": T(8),
            },
            "action": T(4),
            "discount": S(f32),
            "reward": S(f32),
            **BOOL3(),
            "language_instruction": TXT(),
            "language_embedding": T(512),
        },
    }


def _maniskill() -> dict:
    return {
        "episode_metadata": {"episode_id": TXT(), "file_path": TXT()},
        "steps": {
            "observation": {
                "image": Img(16, 16, enc="png"),
                "wrist_image": Img(16, 16, enc="png"),
                "depth": Img(16, 16, 1, dtype=u16, enc="png"),
                "wrist_depth": Img(16, 16, 1, dtype=u16, enc="png"),
                "state": T(18),
                "tcp_pose": T(7),
                "base_pose": T(7),
                "main_camera_cam2world_gl": T(4, 4),
                "main_camera_extrinsic_cv": T(4, 4),
                "main_camera_intrinsic_cv": T(3, 3),
                "target_object_or_part_initial_pose_valid": T(7, dtype=u8),
            },
            "action": T(7),
            "discount": S(f32),
            "reward": S(f32),
            **BOOL3(),
            "language_instruction": TXT(),
            "language_embedding": T(512),
        },
    }


def _nested_cameras() -> dict:
    """Not a published set: what the published ones don't show but TFDS allows. Cameras in a
    nested dict, of different sizes, one stored as a uint8 Tensor; a 3-channel segmentation
    image; single-step episodes and empty language."""
    return {
        "steps": {
            "observation": {
                "images": {
                    "wrist": Img(12, 12, enc="png"),
                    "top": Img(16, 24, enc="jpeg"),
                    "depth": Img(12, 12, 1, dtype=u16, enc="png"),
                },
                "front_rgb_array": T(14, 18, 3, dtype=u8),
                "segmentation": Img(12, 12, enc="png"),
                "state": T(4),
            },
            "action": T(4),
            "reward": S(f32),
            **BOOL3(),
            "language_instruction": TXT(),
        },
    }


SCHEMAS: list[Schema] = [
    Schema("fractal20220817_data", "0.1.0", _fractal, ("image",), shards=2, splits=(("train", 3),)),
    Schema("kuka", "0.1.0", _kuka, ("image",), template=INDEX_TEMPLATE),
    Schema("bridge", "0.1.0", _bridge_oxe, ("image",), splits=(("train", 2), ("test", 1)), undeclared_jpeg=True),
    Schema(
        "bridge_dataset",
        "1.0.0",
        _bridge_dataset,
        ("image_0", "image_1", "image_2", "image_3"),
        ("depth_0",),
        splits=(("train", 2), ("val", 1)),
    ),
    Schema("language_table", "0.1.0", _language_table, ("rgb",), template="{SPLIT}-{DATASET}.{FILEFORMAT}@{SHARD_INDEX}"),
    Schema(
        "taco_play",
        "0.1.0",
        _taco_play,
        ("rgb_gripper", "rgb_static"),
        ("depth_gripper", "depth_static"),
        splits=(("train", 2), ("test", 1)),
    ),
    Schema("jaco_play", "0.1.0", _jaco_play, ("image", "image_wrist"), undeclared_jpeg=True),
    Schema("berkeley_autolab_ur5", "0.1.0", _berkeley_autolab_ur5, ("hand_image", "image"), ("image_with_depth",)),
    Schema("toto", "0.1.0", _toto, ("image",), template=INDEX_TEMPLATE, shards=2, splits=(("train", 3),)),
    Schema(
        "droid",
        "1.0.1",
        _droid,
        ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"),
        template="{DATASET}.{SPLIT}.{SHARD_X_OF_Y}.{FILEFORMAT}",
    ),
    Schema(
        "nyu_franka_play_dataset_converted_externally_to_rlds",
        "0.1.0",
        _nyu_franka_play,
        ("image", "image_additional_view"),
        ("depth", "depth_additional_view"),
        splits=(("train", 2), ("val", 1)),
    ),
    Schema(
        "stanford_kuka_multimodal_dataset_converted_externally_to_rlds",
        "0.1.0",
        _stanford_kuka_multimodal,
        ("image",),
        ("depth_image", "optical_flow"),
    ),
    Schema(
        "maniskill_dataset_converted_externally_to_rlds", "0.1.0", _maniskill, ("image", "wrist_image"), ("depth", "wrist_depth")
    ),
    Schema(
        "nested_cameras",
        "1.0.0",
        _nested_cameras,
        ("front_rgb_array", "images/top", "images/wrist"),
        ("images/depth", "segmentation"),
        steps=(1, 2),
        template=INDEX_TEMPLATE,
    ),
]

BY_NAME = {schema.name: schema for schema in SCHEMAS}


# ---------------------------------------------------------------------------------------
# Values


def robot_box(height: int, width: int, t: int) -> tuple[int, int, int, int]:
    """Where the drawn robot is in a frame: ``(y0, y1, x0, x1)``, moving with the step."""
    y0 = height // 4
    x0 = (width // 5 + t) % max(width // 2, 1)
    return y0, y0 + height // 2, x0, x0 + max(width // 3, 2)


def frame(height: int, width: int, episode: int, t: int) -> np.ndarray:
    """An RGB frame: a colour gradient with the dark robot box on it."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 9 + 40 * episode) % 256, (y * 11 + 70) % 256, np.full_like(x, 150 + 20 * episode)], -1)
    image = image.astype(np.uint8)
    y0, y1, x0, x1 = robot_box(height, width, t)
    image[y0:y1, x0:x1] = (30, 30, 40)
    return image


def _value(feature, rng: np.random.Generator, name: str, episode: int, t: int, steps: int, undeclared_jpeg: bool) -> Any:
    if isinstance(feature, F.Image):
        height, width, channels = feature.shape
        dtype = np.dtype(feature.np_dtype)
        if name.endswith("_robot_mask"):
            mask = np.zeros((height, width, 1), np.uint8)
            y0, y1, x0, x1 = robot_box(height, width, t)
            mask[y0:y1, x0:x1] = ARM
            return mask
        if channels == 3 and dtype == np.uint8:
            image = frame(height, width, episode, t)
            if feature.encoding_format is None and undeclared_jpeg:
                return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
            return image
        if dtype == np.float32:
            return rng.random((height, width, channels), dtype=np.float32)
        return rng.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype, endpoint=True)
    if isinstance(feature, F.Text):
        # Every other episode has no language, as in Bridge's has_language=False episodes.
        return "" if episode % 2 else f"put the block {episode} in the bowl"
    dtype = np.dtype(feature.np_dtype)
    shape = tuple(feature.shape)
    if dtype.kind in "USO":
        return f"{name} {episode}".encode() if not (episode % 2 and "instruction" in name) else b""
    if dtype == np.bool_:
        if name == "is_first":
            return t == 0
        if name in ("is_last", "is_terminal"):
            return t == steps - 1
        return bool(rng.integers(0, 2))
    if shape[-3:-1] and len(shape) == 3 and shape[-1] == 3 and dtype == np.uint8:
        return frame(shape[0], shape[1], episode, t)  # a Tensor camera
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        high = min(np.iinfo(dtype).max, 1_000_000)
        return rng.integers(0, high, shape, dtype=dtype, endpoint=True)
    raise TypeError(f"no synthetic value for {name}: {feature}")


def _fill(node, rng, episode: int, t: int, steps: int, undeclared_jpeg: bool) -> dict:
    values = {}
    for key, feature in node.items():
        if isinstance(feature, F.FeaturesDict):
            values[key] = _fill(feature, rng, episode, t, steps, undeclared_jpeg)
        else:
            values[key] = _value(feature, rng, key, episode, t, steps, undeclared_jpeg)
    return values


def episode_example(schema: Schema, features: F.FeaturesDict, episode: int) -> dict:
    """Episode ``episode`` of ``schema``'s dataset as TFDS example values."""
    rng = np.random.default_rng([len(schema.name), episode])
    steps = schema.steps[episode % len(schema.steps)]
    step_features = features["steps"].feature
    example = {
        key: _fill(feature, rng, episode, 0, steps, schema.undeclared_jpeg)
        if isinstance(feature, F.FeaturesDict)
        else _value(feature, rng, key, episode, 0, steps, schema.undeclared_jpeg)
        for key, feature in features.items()
        if key != "steps"
    }
    example["steps"] = [_fill(step_features, rng, episode, t, steps, schema.undeclared_jpeg) for t in range(steps)]
    return example


def write_dataset(schema: Schema, data_dir: pathlib.Path, *, with_masks: bool = False) -> pathlib.Path:
    """Write ``schema``'s dataset under ``data_dir``; returns its version folder."""
    features = schema.features(with_masks)

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = schema.name
        VERSION = tfds.core.Version(schema.version)
        RELEASE_NOTES = {schema.version: "synthetic, oxe-augment conformance tests"}

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            splits, start = {}, 0
            for split, count in schema.splits:
                splits[split] = self._generate_examples(range(start, start + count))
                start += count  # episodes differ across splits
            return splits

        def _generate_examples(self, episodes):
            for position, episode in enumerate(episodes):
                yield position, episode_example(schema, features, episode)

        def _get_filename_template(self, split_name):
            # The schema's file naming, recorded in dataset_info.json as filepathTemplate.
            return super()._get_filename_template(split_name).replace(template=schema.template)

    builder = Builder(data_dir=str(data_dir))
    config = tfds.download.DownloadConfig(
        num_shards=schema.shards, try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP
    )
    with contextlib.redirect_stdout(io.StringIO()), deterministic_serialization():
        builder.download_and_prepare(download_config=config)
    return pathlib.Path(data_dir) / schema.name / schema.version
