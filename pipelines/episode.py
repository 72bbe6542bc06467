"""The episode as it travels through the pipeline.

An :class:`Episode` carries the decoded RLDS example with its image features still
encoded (``example["steps"]`` is a list of step dicts, as TFDS encodes them), plus what the
stages add: label maps per camera (PNG per frame), then backgrounds per (camera, variant).
Frames are decoded only by the stage that reads them, a window at a time
(``segmentation.frames.Frames``), so memory does not grow with the episode's length. Every stage
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
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from segmentation.frames import Frames, decode_image, encode_image, is_encoded_image  # noqa: F401 - used by pipelines
from segmentation.labels import mask_feature_name, object_mask_feature_name


@dataclasses.dataclass
class Episode:
    key: str  # "<split>/<index:06d>", see rlds_io.episode_key
    split: str
    index: int
    example: dict[str, Any]
    # The shard file it was read from: every failure record names it, whatever the stage.
    source: str = ""
    # camera -> (T, H, W) uint8 label maps, held as PNG per frame (segmentation.frames.Frames):
    # the robot's, and the task objects' (0 none, k object k) where the source found any.
    masks: dict[str, Frames] = dataclasses.field(default_factory=dict)
    objects: dict[str, Frames] = dataclasses.field(default_factory=dict)
    # (camera, variant) -> (H, W, 3) uint8, or a (T, H, W, 3) clip (``original``) that may be a Frames.
    backgrounds: dict[tuple[str, int], Any] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # time per stage
    # What a stage did differently for this episode without failing it (a background
    # source's fallback), for report.json.
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.example["steps"]

    @property
    def num_frames(self) -> int:
        return len(self.steps)

    def encoded_frames(self, camera: str) -> list[Any]:
        """The camera's frames as stored (JPEG or PNG bytes, or arrays for a ``Tensor`` camera), in order."""
        return [observation_value(step["observation"], camera) for step in self.steps]

    def frames(self, camera: str) -> Frames:
        """The camera's frames, decoded on access (``(T, H, W, 3)`` uint8 RGB as an array-like).

        Nothing is decoded here, and nothing decoded is kept: every stage decodes the window
        it works on, so a worker's memory does not grow with the episode's length.
        """
        return Frames(self.encoded_frames(camera), f"episode {self.key}, camera {camera}")

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

    def observation_view(self, names: list[str]) -> "ObservationView":
        """Per-step observation fields by name, stacked over steps on access; encoded images
        stay encoded (a :class:`Frames`), so a source that reads one stored mask decodes only it."""
        return ObservationView(self, names)

    def with_masks(self, masks: dict[str, np.ndarray], objects: dict[str, np.ndarray], seconds: float) -> "Episode":
        """A copy with the robot label maps and the task-object label maps of each camera."""
        return dataclasses.replace(self, masks=dict(masks), objects=dict(objects), seconds={**self.seconds, "segment": seconds})

    def with_backgrounds(
        self, backgrounds: dict[tuple[str, int], np.ndarray], seconds: float, notes: list[str] = ()
    ) -> "Episode":
        return dataclasses.replace(
            self,
            backgrounds=dict(backgrounds),
            seconds={**self.seconds, "background": seconds},
            notes=[*self.notes, *notes],
        )

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


class ObservationView(Mapping):
    """Some of an episode's per-step observation fields, read on access.

    ``view[name]`` is a :class:`Frames` for an encoded image field (decoded only where it is
    read) and a stacked array for any other field (state, strings).
    """

    def __init__(self, episode: Episode, names: list[str]):
        self._episode = episode
        self._names = list(names)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        values = [observation_value(step["observation"], name) for step in self._episode.steps]
        if values and is_encoded_image(values[0]):
            return Frames(values, f"episode {self._episode.key}, {name}")
        return np.stack([np.asarray(v) for v in values]) if values else np.zeros((0,))

    def __contains__(self, name: object) -> bool:
        return name in self._names  # without reading the field

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
