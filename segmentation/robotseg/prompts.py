"""Click and box prompts for video segmentation, and the sidecar JSON file that stores them.

A prompt file gives prompts per episode, camera and frame, in pixel coordinates of the
stored frame (x to the right, y down)::

    {
      "<episode_key>": {
        "<camera>": {
          "<frame_index>": {"points": [[x, y], ...], "labels": [1, ...],
                            "box": [x0, y0, x1, y1], "target": "robot"},
          "<frame_index>": [ {...prompt for "arm"...}, {...prompt for "gripper"...} ]
        }
      }
    }

Per frame: one prompt object or a list of them (at most one per target). ``labels``
(1 = on the target, 0 = not on it) defaults to all 1; ``box`` and ``points`` are each
optional but one of them is required; ``target`` is ``robot`` (default), ``arm`` or
``gripper``. Episode keys are the pipeline's episode keys (``CameraClip.episode_key``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from segmentation.labels import TARGETS


class PromptFileError(ValueError):
    """A prompt file is missing, not JSON, or has an invalid entry (the message names it)."""


@dataclasses.dataclass(frozen=True)
class FramePrompt:
    """Clicks and/or a box for one target on one frame, in the frame's own pixels."""

    frame: int
    target: str = "robot"
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; expected one of {TARGETS}")
        if len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} points but {len(self.labels)} labels")
        if not self.points and self.box is None:
            raise ValueError("a prompt needs points or a box")
        if any(label not in (0, 1) for label in self.labels):
            raise ValueError(f"point labels must be 0 or 1, got {list(self.labels)}")


@dataclasses.dataclass
class PromptFile:
    """A parsed prompt file: ``episodes[episode_key][camera]`` is that clip's prompts."""

    path: str
    episodes: dict[str, dict[str, list[FramePrompt]]]

    def clip_prompts(self, episode_key: str, camera: str) -> list[FramePrompt]:
        """The prompts of one camera of one episode (empty if the file has none)."""
        return list(self.episodes.get(episode_key, {}).get(camera, []))


def _prompt_from_json(raw: Any, frame: int, where: str) -> FramePrompt:
    if not isinstance(raw, dict):
        raise PromptFileError(f"{where}: expected an object with points/labels/box/target, got {raw!r}")
    unknown = sorted(set(raw) - {"points", "labels", "box", "target"})
    if unknown:
        raise PromptFileError(f"{where}: unknown key {unknown[0]!r}; allowed: box, labels, points, target")
    try:
        points = tuple((float(x), float(y)) for x, y in raw.get("points", []))
        labels = tuple(int(v) for v in raw.get("labels", [1] * len(points)))
        box = raw.get("box")
        if box is not None:
            if len(box) != 4:
                raise ValueError(f"box needs 4 numbers [x0, y0, x1, y1], got {box!r}")
            box = tuple(float(v) for v in box)
        return FramePrompt(frame, str(raw.get("target", "robot")), points, labels, box)
    except (TypeError, ValueError) as e:
        raise PromptFileError(f"{where}: {e}") from None


def load_prompt_file(path: str | os.PathLike) -> PromptFile:
    """Read and validate a prompt file; errors name the file, episode, camera and frame."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise PromptFileError(f"prompt file {path}: cannot be read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise PromptFileError(f"prompt file {path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise PromptFileError(f"prompt file {path}: expected an object keyed by episode")
    episodes: dict[str, dict[str, list[FramePrompt]]] = {}
    for episode, cameras in raw.items():
        if not isinstance(cameras, dict):
            raise PromptFileError(f"prompt file {path}, episode {episode}: expected an object keyed by camera")
        episodes[episode] = {}
        for camera, frames in cameras.items():
            if not isinstance(frames, dict):
                raise PromptFileError(
                    f"prompt file {path}, episode {episode}, camera {camera}: expected an object keyed by frame index"
                )
            prompts = []
            for frame_key, entries in frames.items():
                where = f"prompt file {path}, episode {episode}, camera {camera}, frame {frame_key}"
                try:
                    frame = int(frame_key)
                except ValueError:
                    raise PromptFileError(f"{where}: frame keys must be integers") from None
                if frame < 0:
                    raise PromptFileError(f"{where}: frame index must be >= 0")
                entries = entries if isinstance(entries, list) else [entries]
                frame_prompts = [_prompt_from_json(entry, frame, where) for entry in entries]
                targets = [p.target for p in frame_prompts]
                if len(set(targets)) != len(targets):
                    raise PromptFileError(f"{where}: more than one prompt for the same target")
                prompts.extend(frame_prompts)
            episodes[episode][camera] = sorted(prompts, key=lambda p: (p.frame, p.target))
    return PromptFile(path, episodes)
