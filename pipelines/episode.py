"""The episode as it travels through the pipeline.

An :class:`Episode` carries the decoded RLDS example with its image features still
encoded (``example["steps"]`` is a list of step dicts, as TFDS encodes them), plus what the
stages add: label maps per camera, then backgrounds per (camera, variant). Every stage
returns a new ``Episode`` (``with_masks``, ``with_backgrounds``) rather than mutating the
one it received, as Beam expects of elements.

Observation fields are named by their path under ``steps/observation`` joined with
``/``: ``image``, or ``images/wrist`` for a camera inside a nested dict. Some datasets
also put ``/`` inside one key (kuka's ``clip_function_input/workspace_bounds``); both
resolve, because a TFRecord cannot hold a nested key and a literal key with the same
flattened name (:func:`observation_path`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

from segmentation.labels import mask_feature_name, object_mask_feature_name


@dataclasses.dataclass
class Episode:
    key: str  # "<split>/<index:06d>", see rlds_io.episode_key
    split: str
    index: int
    example: dict[str, Any]
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # camera -> (T, H, W) uint8
    objects: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # camera -> (T, H, W) uint8, 0 none, k object k
    backgrounds: dict[tuple[str, int], np.ndarray] = dataclasses.field(default_factory=dict)  # (camera, variant)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # time per stage
    # Decoded images by feature name. Segmenting, drawing backgrounds and compositing all
    # need the same pixels; decoding once saves most of the pipeline's JPEG work. Shared
    # by the copies ``with_masks``/``with_backgrounds`` make, never pickled.
    _decoded: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_decoded"] = {}  # between workers, ship the encoded bytes only
        return state

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.example["steps"]

    @property
    def num_frames(self) -> int:
        return len(self.steps)

    def encoded_frames(self, camera: str) -> list[Any]:
        """The camera's frames as stored (JPEG or PNG bytes, or arrays for a ``Tensor`` camera), in order."""
        return [observation_value(step["observation"], camera) for step in self.steps]

    def frames(self, camera: str) -> np.ndarray:
        """The camera's frames decoded: ``(T, H, W, 3)`` uint8 RGB, read-only."""
        return self.observation_arrays([camera])[camera]

    def observation_names(self) -> list[str]:
        """Every per-step observation field, nested ones as ``parent/child`` paths."""
        names: list[str] = []

        def walk(node: dict, prefix: str) -> None:
            for key, value in node.items():
                if isinstance(value, dict):
                    walk(value, f"{prefix}{key}/")
                else:
                    names.append(prefix + key)

        if self.steps:
            walk(self.steps[0]["observation"], "")
        return names

    def observation_arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        """Per-step observation fields stacked over steps; encoded images are decoded.

        Decoded images are kept (read-only) for later stages; other fields are cheap.
        """
        arrays = {}
        for name in names:
            if name in self._decoded:
                arrays[name] = self._decoded[name]
                continue
            values = [observation_value(step["observation"], name) for step in self.steps]
            if isinstance(values[0], bytes) and is_encoded_image(values[0]):
                decoded = np.stack([decode_image(v, f"{self.key} {name}") for v in values])
            else:  # arrays, and strings (an instruction is bytes too)
                decoded = np.stack([np.asarray(v) for v in values])
            # Read-only: every stage and variant shares these arrays.
            decoded.flags.writeable = False
            self._decoded[name] = arrays[name] = decoded
        return arrays

    def with_masks(self, masks: dict[str, np.ndarray], objects: dict[str, np.ndarray], seconds: float) -> "Episode":
        """A copy with the robot label maps and the task-object label maps of each camera."""
        return dataclasses.replace(self, masks=dict(masks), objects=dict(objects), seconds={**self.seconds, "segment": seconds})

    def with_backgrounds(self, backgrounds: dict[tuple[str, int], np.ndarray], seconds: float) -> "Episode":
        return dataclasses.replace(self, backgrounds=dict(backgrounds), seconds={**self.seconds, "background": seconds})

    def output_example(
        self,
        frames: dict[str, list[bytes]],
        masks: dict[str, list[bytes]],
        augmentation: str,
        objects: dict[str, list[bytes]] | None = None,
    ) -> dict[str, Any]:
        """A writable example: the source's fields, encoded ``frames``, ``masks`` and
        ``objects`` (object label maps) replacing theirs (cameras not in ``frames`` keep
        their original bytes), plus provenance in ``episode_metadata/augmentation``."""
        example = dict(self.example)
        example["episode_metadata"] = {**self.example.get("episode_metadata", {}), "augmentation": augmentation}
        steps = []
        for t, step in enumerate(self.steps):
            observation = step["observation"]
            for camera, encoded in frames.items():
                observation = with_observation_value(observation, observation_path(observation, camera), encoded[t])
            for camera, encoded in masks.items():
                path = sibling_path(observation_path(observation, camera), mask_feature_name)
                observation = with_observation_value(observation, path, encoded[t])
            for camera, encoded in (objects or {}).items():
                path = sibling_path(observation_path(observation, camera), object_mask_feature_name)
                observation = with_observation_value(observation, path, encoded[t])
            steps.append({**step, "observation": observation})
        example["steps"] = steps
        return example


def observation_path(tree: Any, name: str) -> tuple[str, ...]:
    """The keys that lead to observation field ``name`` in ``tree`` (a step's observation
    dict, or the ``FeaturesDict`` that declares it).

    ``name`` is a literal key first (``clip_function_input/workspace_bounds``), else a
    ``/``-joined path into nested dicts (``images/wrist``). A name that is not there yet
    (a mask to add) resolves through the nested dicts that do exist, so
    ``images/wrist_robot_mask`` lands beside ``images/wrist``.
    """
    if name in tree.keys() or "/" not in name:
        return (name,)
    parts = name.split("/")
    for i in range(1, len(parts)):
        head = "/".join(parts[:i])
        if head in tree.keys() and hasattr(tree[head], "keys"):
            return (head, *observation_path(tree[head], "/".join(parts[i:])))
    return (name,)


def observation_value(observation: dict, name: str) -> Any:
    """Field ``name`` of one step's observation (see :func:`observation_path`)."""
    value: Any = observation
    for key in observation_path(observation, name):
        value = value[key]
    return value


def with_observation_value(observation: dict, path: tuple[str, ...], value: Any) -> dict:
    """A copy of ``observation`` with ``value`` at ``path``; the source's dicts are not changed."""
    head, rest = path[0], path[1:]
    copy = dict(observation)
    copy[head] = with_observation_value(observation.get(head, {}), rest, value) if rest else value
    return copy


def sibling_path(camera_path: tuple[str, ...], feature_name) -> tuple[str, ...]:
    """Where a feature derived from a camera lives: beside it, in the same dict.

    ``feature_name`` maps the camera's own key to the new one (``mask_feature_name``):
    the mask of ``images/wrist`` is ``images/wrist_robot_mask``.
    """
    return (*camera_path[:-1], feature_name(camera_path[-1]))


# What TFDS's decode_image reads: JPEG, PNG, GIF, BMP.
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM")


def is_encoded_image(data: bytes) -> bool:
    """Whether ``data`` starts like an encoded image (else it is, say, an instruction string)."""
    return data.startswith(_IMAGE_MAGIC)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode JPEG/PNG bytes: RGB ``(H, W, 3)`` or one-channel ``(H, W)`` uint8."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{where}: undecodable image ({len(data)} bytes)")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return image


def encode_image(image: np.ndarray, encoding_format: str) -> bytes | np.ndarray:
    """Encode an RGB ``(H, W, 3)`` or one-channel ``(H, W)`` uint8 image as ``jpeg`` or ``png``.

    ``tensor`` is the format of a camera stored as a uint8 ``Tensor`` feature rather than an
    ``Image``: its frames are written as arrays, so the array is returned as it is.

    Output frames are encoded here, in the worker, with OpenCV: several times faster than
    TFDS's TensorFlow encoder, and the writer stores the bytes as they are. JPEG quality is
    95, TensorFlow's default.
    """
    if encoding_format == "tensor":
        return np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if encoding_format == "jpeg":
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    elif encoding_format == "png":
        ok, data = cv2.imencode(".png", image)
    else:
        raise ValueError(f"unsupported image encoding {encoding_format!r} (jpeg, png or tensor)")
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {encoding_format}")
    return data.tobytes()
