"""The release's video predictor API on ``sam2``'s :class:`SAM2VideoPredictor` and :class:`RobotSegBase`.

Keyword for keyword and in the release's argument order (``robotseg/robotseg_video_predictor.py``)::

    predictor = build_robotseg_video_predictor("configs/robotseg-infer.yaml", "robotseg.pt", device="cuda")
    state = predictor.init_state(video_path="frames/")            # JPEG folder, .mp4, or (T, H, W, 3) uint8 frames
    predictor.add_new_robot(inference_state=state, frame_idx=0, obj_id=0, robot="robot")
    for frame_idx, obj_ids, logits in predictor.propagate_in_video(inference_state=state, robot="robot"):
        masks = logits > 0.0                                       # (objects, 1, H, W) at the video's size

``add_new_points_or_box(state, frame_idx, obj_id, robots=..., points=..., labels=..., box=...)``,
``add_new_points`` (its alias), ``add_new_mask``, ``propagate_in_video_preflight``,
``clear_all_prompts_in_frame``, ``reset_state`` and ``remove_object`` behave as the
release's; ``init_state`` returns the release's state dict. The release's ``test/demo.py``
and ``test/inference_auto_semi_vrs.py`` call sequences run unchanged (tests cover the demo's).

Our additions: ``video_path`` may also be in-memory frames (preprocessed frame by frame
when the model asks for them, the same PIL resize as the folder loader), and hole
filling runs on CPU (OpenCV connected components) instead of needing the release's
CUDA extension, which the release silently skips without it
(:func:`segmentation.robotseg.postprocess.fill_holes_in_mask_scores`). The recipe source
and ``eval`` run this same predictor (:mod:`segmentation.robotseg.video`).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sam2.sam2_video_predictor import SAM2VideoPredictor
from sam2.utils.misc import concat_points, load_video_frames

from segmentation.robotseg.model import RobotSegBase
from segmentation.robotseg.postprocess import fill_holes_in_mask_scores

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class ArrayVideoFrames:
    """In-memory ``(T, H, W, 3)`` uint8 RGB frames, each preprocessed when asked for.

    Preprocessing is the release's folder loader's, step for step: PIL resize to
    ``image_size`` squared (bicubic, aspect ratio not kept), ``/ 255`` in float64, float32,
    ImageNet normalisation. Only the frames the model visits are ever converted, so a long
    episode does not hold ``T`` normalised 1024 px frames at once.
    """

    def __init__(self, frames: np.ndarray, image_size: int, device: torch.device):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"in-memory frames must be (T, H, W, 3) uint8 with T >= 1, got {frames.shape} {frames.dtype}")
        self.frames = frames
        self.image_size = image_size
        self.device = device
        self.video_height, self.video_width = frames.shape[1:3]
        self.mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        size = self.image_size
        resized = np.array(Image.fromarray(self.frames[index]).resize((size, size))) / 255.0
        image = torch.from_numpy(resized).permute(2, 0, 1).float()
        return ((image - self.mean) / self.std).to(self.device)


class RobotSegVideoPredictor(SAM2VideoPredictor, RobotSegBase):
    """The release's ``RobotSegVideoPredictor``: SAM 2's video predictor driving :class:`RobotSegBase`.

    Methods that only manage the state (consolidation, preflight, memory re-encoding,
    output resizing) are ``sam2``'s; those that pass the robot to the model are here.
    """

    # ------------------------------------------------------------------ state

    @torch.inference_mode()
    def init_state(self, video_path, offload_video_to_cpu=False, offload_state_to_cpu=False, async_loading_frames=False):
        """The release's inference state for ``video_path`` (a JPEG folder, an .mp4, or frames ``(T, H, W, 3)`` uint8)."""
        device = self.device
        if isinstance(video_path, (str, os.PathLike)):
            images, video_height, video_width = load_video_frames(
                video_path=os.fspath(video_path),
                image_size=self.image_size,
                offload_video_to_cpu=offload_video_to_cpu,
                async_loading_frames=async_loading_frames,
                compute_device=device,
            )
        else:
            images = ArrayVideoFrames(video_path, self.image_size, torch.device("cpu") if offload_video_to_cpu else device)
            video_height, video_width = images.video_height, images.video_width
        state = {
            "images": images,
            "num_frames": len(images),
            "offload_video_to_cpu": offload_video_to_cpu,
            "offload_state_to_cpu": offload_state_to_cpu,
            "video_height": video_height,
            "video_width": video_width,
            "device": device,
            "storage_device": torch.device("cpu") if offload_state_to_cpu else device,
            "robot_inputs_per_obj": {},
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        self._get_image_feature(state, frame_idx=0, batch_size=1)  # warm up and cache frame 0, as the release
        return state

    def _obj_id_to_idx(self, inference_state, obj_id):
        obj_idx = super()._obj_id_to_idx(inference_state, obj_id)
        inference_state["robot_inputs_per_obj"].setdefault(obj_idx, {})
        return obj_idx

    # ------------------------------------------------------------------ prompts

    def _add_frame_prompt(self, inference_state, frame_idx, obj_id, robot, point_inputs, mask_inputs, reuse_previous_logits):
        """Run one prompted frame for one object and return ``(frame_idx, obj_ids, video-res logits)``.

        The common part of ``add_new_points_or_box``, ``add_new_mask`` and ``add_new_robot``:
        a frame not tracked yet becomes a conditioning frame (segmented without memory),
        a tracked one is corrected; memory is encoded later, by ``propagate_in_video``.
        """
        obj_idx = self._obj_id_to_idx(inference_state, obj_id)
        points = inference_state["point_inputs_per_obj"][obj_idx]
        masks = inference_state["mask_inputs_per_obj"][obj_idx]
        if point_inputs is None:
            points.pop(frame_idx, None)
        else:
            points[frame_idx] = point_inputs
        if mask_inputs is None:
            masks.pop(frame_idx, None)
        else:
            masks[frame_idx] = mask_inputs
        tracked = inference_state["frames_tracked_per_obj"][obj_idx]
        is_init_cond_frame = frame_idx not in tracked
        reverse = False if is_init_cond_frame else tracked[frame_idx]["reverse"]
        outputs = inference_state["output_dict_per_obj"][obj_idx]
        temp_outputs = inference_state["temp_output_dict_per_obj"][obj_idx]
        is_cond = is_init_cond_frame or self.add_all_frames_to_correct_as_cond
        key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        previous_logits = None
        if reuse_previous_logits:
            previous = temp_outputs[key].get(frame_idx)
            if previous is None:
                previous = outputs["cond_frame_outputs"].get(frame_idx) or outputs["non_cond_frame_outputs"].get(frame_idx)
            if previous is not None and previous["pred_masks"] is not None:
                logits = previous["pred_masks"].to(inference_state["device"], non_blocking=True)
                previous_logits = torch.clamp(logits, -32.0, 32.0)
        current_out, _ = self._run_single_frame_inference(
            inference_state=inference_state,
            output_dict=outputs,
            frame_idx=frame_idx,
            batch_size=1,
            is_init_cond_frame=is_init_cond_frame,
            robot_inputs=robot,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            reverse=reverse,
            run_mem_encoder=False,
            prev_sam_mask_logits=previous_logits,
        )
        if mask_inputs is not None:
            current_out["frozen"] = True  # propagation keeps a given mask as it is
        temp_outputs[key][frame_idx] = current_out
        consolidated = self._consolidate_temp_output_across_obj(
            inference_state, frame_idx, is_cond=is_cond, consolidate_at_video_res=True
        )
        _, video_res_masks = self._get_orig_video_res_output(inference_state, consolidated["pred_masks_video_res"])
        return frame_idx, inference_state["obj_ids"], video_res_masks

    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state,
        frame_idx,
        obj_id,
        robots=None,
        points=None,
        labels=None,
        clear_old_points=True,
        normalize_coords=True,
        box=None,
    ):
        """Clicks and/or a box on a frame (video pixels), with the robot class ``robots`` (``None``: no robot token)."""
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        points = torch.zeros(0, 2) if points is None else torch.as_tensor(points, dtype=torch.float32)
        labels = torch.zeros(0, dtype=torch.int32) if labels is None else torch.as_tensor(labels, dtype=torch.int32)
        if points.dim() == 2:
            points = points.unsqueeze(0)
        if labels.dim() == 1:
            labels = labels.unsqueeze(0)
        if box is not None:
            if not clear_old_points:
                raise ValueError(
                    "cannot add box without clearing old points, since box prompt must be provided before any point "
                    "prompt (please use clear_old_points=True instead)"
                )
            corners = torch.as_tensor(box, dtype=torch.float32).to(points.device).reshape(1, 2, 2)
            points = torch.cat([corners, points], dim=1)  # a box is two points labelled 2 and 3, first
            labels = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32, device=labels.device), labels], dim=1)
        if normalize_coords:
            size = torch.tensor([inference_state["video_width"], inference_state["video_height"]])
            points = points / size.to(points.device)
        points = (points * self.image_size).to(inference_state["device"])
        labels = labels.to(inference_state["device"])
        obj_idx = self._obj_id_to_idx(inference_state, obj_id)
        previous = None if clear_old_points else inference_state["point_inputs_per_obj"][obj_idx].get(frame_idx)
        point_inputs = concat_points(previous, points, labels)
        return self._add_frame_prompt(inference_state, frame_idx, obj_id, robots, point_inputs, None, True)

    def add_new_points(self, *args, **kwargs):
        """Deprecated alias of :meth:`add_new_points_or_box` (as in the release)."""
        return self.add_new_points_or_box(*args, **kwargs)

    @torch.inference_mode()
    def add_new_mask(self, inference_state, frame_idx, obj_id, mask):
        """A mask ``(H, W)`` for a frame; it is used as given (no robot token) and kept through propagation."""
        mask = torch.as_tensor(mask, dtype=torch.bool) if not isinstance(mask, torch.Tensor) else mask
        if mask.dim() != 2:
            raise ValueError(f"mask must be (H, W), got {tuple(mask.shape)}")
        mask_inputs = mask[None, None].float().to(inference_state["device"])
        if tuple(mask.shape) != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            mask_inputs = F.interpolate(mask_inputs, size=size, align_corners=False, mode="bilinear", antialias=True)
            mask_inputs = (mask_inputs >= 0.5).float()
        return self._add_frame_prompt(inference_state, frame_idx, obj_id, None, None, mask_inputs, False)

    @torch.inference_mode()
    def add_new_robot(self, inference_state, frame_idx, obj_id, robot):
        """Automatic mode: segment ``robot`` (``arm``, ``gripper`` or ``robot``) on a frame without clicks."""
        return self._add_frame_prompt(inference_state, frame_idx, obj_id, robot, None, None, False)

    # ------------------------------------------------------------------ tracking

    @torch.inference_mode()
    def propagate_in_video(self, inference_state, robot, start_frame_idx=None, max_frame_num_to_track=None, reverse=False):
        """Yield ``(frame_idx, obj_ids, video-res logits)`` for each frame, every frame decoded with ``robot``'s tokens.

        Forward from the first prompted frame by default, or backward with ``reverse=True``.
        Prompted frames and frames holding a given mask are returned as they are.
        """
        self.propagate_in_video_preflight(inference_state)
        obj_ids = inference_state["obj_ids"]
        num_frames = inference_state["num_frames"]
        num_objects = self._get_obj_num(inference_state)
        if start_frame_idx is None:
            start_frame_idx = min(t for out in inference_state["output_dict_per_obj"].values() for t in out["cond_frame_outputs"])
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else []
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in order:
            per_object = []
            for obj_idx in range(num_objects):
                outputs = inference_state["output_dict_per_obj"][obj_idx]
                given = outputs["cond_frame_outputs"].get(frame_idx)
                if given is None:
                    earlier = outputs["non_cond_frame_outputs"].get(frame_idx)
                    given = earlier if earlier is not None and earlier.get("frozen", False) else None
                    if given is None:
                        current_out, logits = self._run_single_frame_inference(
                            inference_state=inference_state,
                            output_dict=outputs,
                            frame_idx=frame_idx,
                            batch_size=1,
                            is_init_cond_frame=False,
                            robot_inputs=robot,
                            point_inputs=None,
                            mask_inputs=None,
                            reverse=reverse,
                            run_mem_encoder=True,
                        )
                        outputs["non_cond_frame_outputs"][frame_idx] = current_out
                elif self.clear_non_cond_mem_around_input:
                    self._clear_obj_non_cond_mem_around_input(inference_state, frame_idx, obj_idx)
                if given is not None:
                    logits = given["pred_masks"].to(inference_state["device"], non_blocking=True)
                inference_state["frames_tracked_per_obj"][obj_idx][frame_idx] = {"reverse": reverse}
                per_object.append(logits)
            all_logits = torch.cat(per_object, dim=0) if len(per_object) > 1 else per_object[0]
            _, video_res_masks = self._get_orig_video_res_output(inference_state, all_logits)
            yield frame_idx, obj_ids, video_res_masks

    def _run_single_frame_inference(
        self,
        inference_state,
        output_dict,
        frame_idx,
        batch_size,
        is_init_cond_frame,
        robot_inputs,
        point_inputs,
        mask_inputs,
        reverse,
        run_mem_encoder,
        prev_sam_mask_logits=None,
    ):
        """One frame through :meth:`track_step` with its raw frame and robot; the compact output SAM 2 stores."""
        raw_image, _, vision_feats, vision_pos, feat_sizes = self._get_image_feature(inference_state, frame_idx, batch_size)
        if point_inputs is not None and mask_inputs is not None:
            raise ValueError("points and a mask cannot prompt the same frame")
        out = self.track_step(
            frame_idx=frame_idx,
            is_init_cond_frame=is_init_cond_frame,
            current_raw_image=raw_image,
            current_vision_feats=vision_feats,
            current_vision_pos_embeds=vision_pos,
            feat_sizes=feat_sizes,
            robot_inputs=robot_inputs,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            output_dict=output_dict,
            num_frames=inference_state["num_frames"],
            track_in_reverse=reverse,
            run_mem_encoder=run_mem_encoder,
            prev_sam_mask_logits=prev_sam_mask_logits,
        )
        storage = inference_state["storage_device"]
        features = out["maskmem_features"]
        if features is not None:  # stored in bfloat16, as SAM 2 and the release do
            features = features.to(torch.bfloat16).to(storage, non_blocking=True)
        logits = out["pred_masks"]
        if self.fill_hole_area > 0:
            logits = fill_holes_in_mask_scores(logits, self.fill_hole_area)
        compact = {
            "maskmem_features": features,
            "maskmem_pos_enc": self._get_maskmem_pos_enc(inference_state, out),
            "pred_masks": logits.to(storage, non_blocking=True),
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
        }
        return compact, logits

    def segment_video(self, frames, targets=("robot",), prompts=None, options=None, seed: int | None = None):
        """Label maps for in-memory ``frames``: :func:`segmentation.robotseg.video.segment_video` on this predictor.

        One method call per clip, so the predictor also works behind Beam's ``large_model``
        proxy. ``seed`` seeds the global RNG first (the prompt generator draws from it).
        """
        from segmentation.robotseg.video import segment_video

        if seed is not None:
            torch.manual_seed(seed)
        return segment_video(self, frames, targets, prompts, options)

    # ------------------------------------------------------------------ clearing

    def _clear_obj_non_cond_mem_around_input(self, inference_state, frame_idx, obj_idx):
        """Drop one object's tracked (non-conditioning) memories within ``num_maskmem`` strides of a prompted frame.

        Used when ``clear_non_cond_mem_around_input`` is set; the release and ``sam2`` 1.1.0
        call this method but do not define it.
        """
        r = self.memory_temporal_stride_for_eval
        tracked = inference_state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"]
        for t in range(frame_idx - r * self.num_maskmem, frame_idx + r * self.num_maskmem + 1):
            tracked.pop(t, None)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(self, inference_state, frame_idx, obj_id, need_output=True):
        """Remove one object's prompts on a frame (its output becomes a tracked, non-conditioning one)."""
        obj_idx = self._obj_id_to_idx(inference_state, obj_id)
        inference_state["robot_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        return super().clear_all_prompts_in_frame(inference_state, frame_idx, obj_id, need_output)

    def _reset_tracking_results(self, inference_state):
        for robots in inference_state["robot_inputs_per_obj"].values():
            robots.clear()
        super()._reset_tracking_results(inference_state)

    @torch.inference_mode()
    def reset_state(self, inference_state):
        """Remove every object, prompt and result."""
        super().reset_state(inference_state)
        inference_state["robot_inputs_per_obj"].clear()

    @torch.inference_mode()
    def remove_object(self, inference_state, obj_id, strict=False, need_output=True):
        """Remove an object id; returns ``(obj_ids, updated frames)`` as the release."""
        old_idx = inference_state["obj_id_to_idx"].get(obj_id)
        robots = dict(inference_state["robot_inputs_per_obj"])
        result = super().remove_object(inference_state, obj_id, strict=strict, need_output=need_output)
        if old_idx is not None and inference_state["obj_ids"]:
            remaining = [i for i in sorted(robots) if i != old_idx]
            inference_state["robot_inputs_per_obj"] = {new: robots[old] for new, old in enumerate(remaining)}
        return result
