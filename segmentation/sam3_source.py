"""The ``sam3`` mask source: text-prompted robot and task-object masks with SAM 3.

SAM 3 (``transformers``' ``Sam3VideoModel`` + ``Sam3VideoProcessor``) finds and tracks
every instance of a noun phrase through a video. One session per camera clip holds every
prompt: the robot's phrases (``robot_prompts``, each mapped to a part of the label
convention) and the task objects' (``object_prompts`` from the recipe, then the noun
phrases of the episode's instruction, ``segmentation.instructions``). Each frame is then
encoded once and the detector runs once per prompt on those features, so adding a prompt
costs a detector head, not a backbone pass.

Output (:class:`segmentation.sources.ClipMasks`):

* ``robot``: label 3 where a ``gripper`` prompt was found, else 2 where an ``arm`` prompt,
  else 1 where a ``robot`` prompt (the finer part wins, as everywhere in the project);
* ``objects``: ``k`` where object prompt ``k`` (1-based, in prompt order) was found; an
  earlier prompt wins where two overlap, and robot pixels belong to the robot.

Memory: a session keeps every preprocessed frame (3 x 1008 x 1008 floats with the
released model, 12 MB in fp32) and per-object tracker memories for each frame, so long
clips are cut into chunks of ``max_frames`` frames, each its own session. Detections
start over at a chunk boundary; the labels do not change meaning, since they come from
the prompts, not from track identities.

Weights: ``model`` is a local folder written by ``save_pretrained`` (or ``hf download
facebook/sam3 --local-dir DIR``) or a Hugging Face hub id, read from the local cache only
unless ``allow_download: true``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import numpy as np

from segmentation.instructions import object_phrases
from segmentation.labels import TARGETS, label_map_from_targets
from segmentation.sources import CameraClip, ClipMasks, MaskSource, SourceConfigError

#: Where the released weights live; the error for a missing model says how to get them.
RELEASED_MODEL = "facebook/sam3"

#: Default robot phrases. SAM 3 knows these concepts; "robot gripper" also finds the
#: hand of arms whose "robot arm" mask stops at the wrist.
DEFAULT_ROBOT_PROMPTS = {"robot arm": "arm", "robot gripper": "gripper"}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclasses.dataclass
class Sam3Options:
    """``segmentation:`` keys of ``source: sam3``."""

    model: str = RELEASED_MODEL  # a local save_pretrained folder, or a hub id (cache only unless allow_download)
    allow_download: bool = False  # let from_pretrained fetch a hub id that is not cached
    # phrase -> part of the label convention (robot | arm | gripper)
    robot_prompts: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_ROBOT_PROMPTS))
    object_prompts: list[str] = dataclasses.field(default_factory=list)  # task objects named by the recipe
    objects_from_instruction: bool = True  # add the noun phrases of each episode's instruction
    max_objects: int = 8  # object prompts per clip (each costs a detector pass per frame)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    bf16: bool = True  # bfloat16 weights and activations on CUDA (CPU always runs fp32)
    score_threshold: float = 0.5  # detection probability kept (SAM 3's score_threshold_detection)
    new_object_threshold: float = 0.7  # detection probability that starts a new track
    max_frames: int = 64  # frames per SAM 3 session: bounds memory on long episodes


class Sam3Video:
    """A loaded SAM 3 video model and its processor, one method per clip.

    Plain object (weak-referenceable, as Beam needs); behind Beam's ``large_model`` proxy
    only :meth:`segment_video` is called, which returns compact boolean masks.
    """

    def __init__(self, model: Any, processor: Any, device: Any, dtype: Any):
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = dtype

    def segment_video(
        self, frames: np.ndarray, prompts: list[str], max_frames: int, score_threshold: float, new_object_threshold: float
    ) -> dict[str, np.ndarray]:
        """``{prompt: (T, H, W) bool}``: where each prompt was found in ``frames`` ``(T, H, W, 3)`` uint8.

        Every prompt shares one session per chunk of ``max_frames`` frames (one image-encoder
        pass per frame for all prompts). The thresholds are detection probabilities: kept,
        and enough to start a new track.
        """
        # The model reads its thresholds from these attributes on every frame.
        self.model.score_threshold_detection = score_threshold
        self.model.new_det_thresh = new_object_threshold
        if not hasattr(frames, "window"):  # a Frames decodes one chunk at a time below
            frames = np.asarray(frames)
        found = {prompt: np.zeros(frames.shape[:3], dtype=bool) for prompt in prompts}
        if not prompts:
            return found
        for start in range(0, len(frames), max_frames):
            self._segment_chunk(frames[start : start + max_frames], prompts, found, start)
        return found

    def _segment_chunk(self, frames: np.ndarray, prompts: list[str], found: dict[str, np.ndarray], offset: int) -> None:
        import torch

        # Decoded episode frames are read-only; torch.from_numpy warns on those.
        session = self.processor.init_video_session(
            video=np.array(frames), inference_device=self.device, processing_device=self.device, dtype=self.dtype
        )
        self.processor.add_text_prompt(session, prompts)
        with torch.inference_mode():
            for output in self.model.propagate_in_video_iterator(session):
                result = self.processor.postprocess_outputs(session, output)
                index = {int(obj_id): i for i, obj_id in enumerate(result["object_ids"].tolist())}
                masks = result["masks"]
                for prompt, obj_ids in result["prompt_to_obj_ids"].items():
                    rows = [index[o] for o in obj_ids if o in index]
                    if rows and prompt in found:
                        found[prompt][offset + output.frame_idx] |= masks[rows].any(dim=0).cpu().numpy()


class Sam3MaskSource(MaskSource):
    """SAM 3 with text prompts for the robot and the task objects (see the module docstring)."""

    name = "sam3"
    Options = Sam3Options

    def check(self, features, cameras) -> None:
        from segmentation.robotseg.source import check_device

        o = self.options
        if not o.robot_prompts:
            raise SourceConfigError("segmentation.robot_prompts: needs at least one phrase for the robot, e.g. {robot arm: arm}")
        for phrase, target in o.robot_prompts.items():
            if not phrase.strip():
                raise SourceConfigError("segmentation.robot_prompts: empty phrase")
            if target not in TARGETS:
                raise SourceConfigError(
                    f"segmentation.robot_prompts.{phrase}: unknown part {target!r}; allowed: {', '.join(TARGETS)}"
                )
        if any(not p.strip() for p in o.object_prompts):
            raise SourceConfigError("segmentation.object_prompts: empty phrase")
        if not 1 <= o.max_objects <= 255:
            raise SourceConfigError("segmentation.max_objects: must be 1..255 (object labels are uint8)")
        if len(o.object_prompts) > o.max_objects:
            raise SourceConfigError(
                f"segmentation.object_prompts: {len(o.object_prompts)} phrases, more than segmentation.max_objects={o.max_objects}"
            )
        for key in ("score_threshold", "new_object_threshold"):
            if not 0.0 <= getattr(o, key) <= 1.0:
                raise SourceConfigError(f"segmentation.{key}: must be within 0..1, got {getattr(o, key)}")
        if o.max_frames < 1:
            raise SourceConfigError("segmentation.max_frames: must be >= 1")
        check_device(o.device)
        check_model_location(o.model, o.allow_download)

    def object_cameras(self, features, cameras) -> list[str]:
        o = self.options
        return list(cameras) if (o.object_prompts or o.objects_from_instruction) else []

    def load_model(self) -> Sam3Video:
        import torch
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        from segmentation.robotseg.source import resolve_device

        o = self.options
        device = resolve_device(o.device)
        dtype = torch.bfloat16 if o.bf16 and device.type == "cuda" else torch.float32
        location = os.path.expanduser(o.model)
        local_only = not o.allow_download
        model = Sam3VideoModel.from_pretrained(location, local_files_only=local_only).to(device, dtype).eval()
        processor = Sam3VideoProcessor.from_pretrained(location, local_files_only=local_only)
        return Sam3Video(model, processor, device, dtype)

    def object_prompts(self, instruction: str) -> list[str]:
        """The clip's object phrases: the recipe's, then the instruction's, at most ``max_objects``."""
        o = self.options
        prompts = [p.strip() for p in o.object_prompts]
        if o.objects_from_instruction:
            prompts += object_phrases(instruction)
        robot = {p.strip() for p in o.robot_prompts}
        unique = list(dict.fromkeys(p for p in prompts if p not in robot))
        return unique[: o.max_objects]

    def segment(self, model: Sam3Video, clip: CameraClip) -> np.ndarray:
        return self.segment_clip(model, clip).robot

    def segment_clip(self, model: Sam3Video, clip: CameraClip) -> ClipMasks:
        o = self.options
        robot_prompts = list(dict.fromkeys(p.strip() for p in o.robot_prompts))
        objects = self.object_prompts(clip.instruction)
        try:
            found = model.segment_video(
                clip.frames, robot_prompts + objects, o.max_frames, o.score_threshold, o.new_object_threshold
            )
        except Exception as e:
            raise RuntimeError(
                f"episode {clip.episode_key}, camera {clip.camera}: SAM 3 failed on prompts {robot_prompts + objects}: {e}"
            ) from e
        robot = robot_label_map(found, {p.strip(): t for p, t in o.robot_prompts.items()}, clip.frames.shape[:3])
        if not self.object_cameras({}, [clip.camera]):
            return ClipMasks(robot=robot)
        return ClipMasks(robot=robot, objects=object_label_map(found, objects, robot), object_names=tuple(objects))


def robot_label_map(found: dict[str, np.ndarray], robot_prompts: dict[str, str], shape: tuple[int, ...]) -> np.ndarray:
    """``(T, H, W)`` uint8 label map from the robot prompts' masks (``{phrase: part}``)."""
    parts = {target: np.zeros(shape, dtype=bool) for target in TARGETS}
    for phrase, target in robot_prompts.items():
        parts[target] |= found[phrase]
    whole = parts["robot"] | parts["arm"] | parts["gripper"]
    return label_map_from_targets(whole, parts["arm"], parts["gripper"])


def object_label_map(found: dict[str, np.ndarray], objects: list[str], robot: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` uint8: ``k`` where object prompt ``k`` (1-based) was found.

    An earlier prompt wins where two overlap (the recipe's come first); robot pixels stay 0.
    """
    labels = np.zeros(robot.shape, dtype=np.uint8)
    for k in range(len(objects), 0, -1):
        labels[found[objects[k - 1]]] = k
    labels[robot > 0] = 0
    return labels


def check_model_location(model: str, allow_download: bool) -> None:
    """Raise :class:`SourceConfigError` naming ``segmentation.model`` unless the weights can be loaded.

    A local folder needs ``config.json`` (as ``save_pretrained`` writes it); a hub id must be
    in the Hugging Face cache, unless downloads are allowed.
    """
    how = (
        f"get the weights with `hf download {RELEASED_MODEL} --local-dir /models/sam3` (a gated repository: "
        f"accept the licence at https://huggingface.co/{RELEASED_MODEL} and run `hf auth login` first) and set "
        f"segmentation.model: /models/sam3, or set segmentation.allow_download: true"
    )
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        config = os.path.join(path, "config.json")
        if not os.path.isfile(config):
            raise SourceConfigError(f"segmentation.model: {path} has no config.json, so it is not a saved SAM 3 model; {how}")
        try:
            with open(config, encoding="utf-8") as f:
                model_type = json.load(f).get("model_type", "")
        except (OSError, ValueError) as e:
            raise SourceConfigError(f"segmentation.model: cannot read {config}: {e}") from None
        # The released repository serves every SAM 3 class; a SAM 2 or other folder is a mix-up.
        if not model_type.startswith("sam3"):
            raise SourceConfigError(
                f"segmentation.model: {config} describes a {model_type!r} model; source=sam3 needs a SAM 3 "
                f"checkpoint (the {RELEASED_MODEL} repository); {how}"
            )
        return
    if not _HUB_ID.match(model):
        raise SourceConfigError(
            f"segmentation.model: {path} is not a folder (nor a Hugging Face id like {RELEASED_MODEL}); {how}"
        )
    if allow_download:
        return
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    if not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise SourceConfigError(
            f"segmentation.model: {model} is not in the Hugging Face cache ({HF_HUB_CACHE}) and "
            f"segmentation.allow_download is false; {how}"
        )
