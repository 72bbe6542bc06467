"""The episode as it travels through the pipeline.

An :class:`Episode` carries the decoded RLDS example with its image features still
encoded (``example["steps"]`` is a list of step dicts, as TFDS encodes them), plus what the
stages add: label maps per camera, then backgrounds per (camera, variant). Every stage
returns a new ``Episode`` (``with_masks``, ``with_backgrounds``) rather than mutating the
one it received, as Beam expects of elements.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

from segmentation.labels import mask_feature_name


@dataclasses.dataclass
class Episode:
    key: str  # "<split>/<index:06d>", see rlds_io.episode_key
    split: str
    index: int
    example: dict[str, Any]
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # camera -> (T, H, W) uint8
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

    def encoded_frames(self, camera: str) -> list[bytes]:
        """The camera's frames as stored (JPEG or PNG bytes), in order."""
        return [step["observation"][camera] for step in self.steps]

    def frames(self, camera: str) -> np.ndarray:
        """The camera's frames decoded: ``(T, H, W, 3)`` uint8 RGB, read-only."""
        return self.observation_arrays([camera])[camera]

    def observation_arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        """Per-step observation fields stacked over steps; encoded images are decoded.

        Decoded images are kept (read-only) for later stages; other fields are cheap.
        """
        arrays = {}
        for name in names:
            if name in self._decoded:
                arrays[name] = self._decoded[name]
                continue
            values = [step["observation"][name] for step in self.steps]
            if isinstance(values[0], bytes):
                decoded = np.stack([decode_image(v, f"{self.key} {name}") for v in values])
                decoded.flags.writeable = False
                self._decoded[name] = arrays[name] = decoded
            else:
                arrays[name] = np.stack([np.asarray(v) for v in values])
        return arrays

    def with_masks(self, masks: dict[str, np.ndarray], seconds: float) -> "Episode":
        return dataclasses.replace(self, masks=dict(masks), seconds={**self.seconds, "segment": seconds})

    def with_backgrounds(self, backgrounds: dict[tuple[str, int], np.ndarray], seconds: float) -> "Episode":
        return dataclasses.replace(self, backgrounds=dict(backgrounds), seconds={**self.seconds, "background": seconds})

    def output_example(self, frames: dict[str, list[bytes]], masks: dict[str, list[bytes]], augmentation: str) -> dict[str, Any]:
        """A writable example: the source's fields, encoded ``frames`` and ``masks``
        replacing theirs (cameras not in ``frames`` keep their original bytes), plus
        provenance in ``episode_metadata/augmentation``."""
        example = dict(self.example)
        example["episode_metadata"] = {**self.example.get("episode_metadata", {}), "augmentation": augmentation}
        steps = []
        for t, step in enumerate(self.steps):
            observation = dict(step["observation"])
            for camera, encoded in frames.items():
                observation[camera] = encoded[t]
            for camera, encoded in masks.items():
                observation[mask_feature_name(camera)] = encoded[t]
            steps.append({**step, "observation": observation})
        example["steps"] = steps
        return example


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


def encode_image(image: np.ndarray, encoding_format: str) -> bytes:
    """Encode an RGB ``(H, W, 3)`` or one-channel ``(H, W)`` uint8 image as ``jpeg`` or ``png``.

    Output frames are encoded here, in the worker, with OpenCV: several times faster than
    TFDS's TensorFlow encoder, and the writer stores the bytes as they are. JPEG quality is
    95, TensorFlow's default.
    """
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if encoding_format == "jpeg":
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    elif encoding_format == "png":
        ok, data = cv2.imencode(".png", image)
    else:
        raise ValueError(f"unsupported image encoding {encoding_format!r} (jpeg or png)")
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {encoding_format}")
    return data.tobytes()
