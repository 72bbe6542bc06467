"""The RobotSeg model: ``sam2``'s :class:`SAM2Base` with the release's robot-specific parts.

:class:`RobotSegBase` has the release's module tree (``robotseg/modeling/robotseg_base.py``):
SAM 2.1's modules under their SAM 2 names, plus ``robot_prompt_generator``
(:mod:`segmentation.robotseg.prompt_generator`), the structure branch inside each
``memory_attention`` layer (:mod:`segmentation.robotseg.structure`) and the decoder's
``robot_token_embedding`` (:mod:`segmentation.robotseg.mask_decoder`). Its state dict
has exactly the 585 keys of the released ``robotseg.pt``.

What differs from SAM 2, per frame (everything else is inherited from ``sam2``):

* the memory attention also gets the frame (for its Canny edges) and returns structure maps;
* while building the memory bank, each spatial memory frame's foreground (its stored
  low-res mask, sigmoid, resized to the memory grid, ``>= 0.5``) is collected beside it,
  and the RPG clusters the memory features under it into object tokens;
* the decoder gets the robot class token and those object tokens before the prompts, on
  every frame that names a robot (``robot_inputs``), conditioning frames included.

Build it with :func:`segmentation.robotseg.build.build_robotseg` or, for video,
:func:`segmentation.robotseg.build.build_robotseg_video_predictor`.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE, SAM2Base
from sam2.modeling.sam2_utils import get_1d_sine_pe, select_closest_cond_frames

from segmentation.robotseg.mask_decoder import RobotMaskDecoder


@dataclasses.dataclass
class PointPrompt:
    """Points (and a box as two corner points, labels 2 and 3) in model-input pixels."""

    coords: torch.Tensor  # (B, P, 2) float, x y in [0, image_size)
    labels: torch.Tensor  # (B, P) int: 1 positive, 0 negative, 2/3 box corners


@dataclasses.dataclass
class MemoryContext:
    """What the memory bank gave one frame: the RPG's inputs (all ``None`` on a conditioning frame)."""

    memory: torch.Tensor | None = None  # (N, B, mem_dim): spatial memories, then pointer tokens
    memory_pos: torch.Tensor | None = None
    foreground: torch.Tensor | None = None  # (N, B, 1) bool; pointer tokens count as foreground
    num_obj_ptr_tokens: int = 0


class RobotSegBase(SAM2Base):
    """SAM 2.1 + structure-enhanced memory attention + Robot Prompt Generator (the release's ``RobotSegBase``)."""

    def __init__(self, image_encoder, memory_attention, memory_encoder, robot_prompt_generator, **sam2_args):
        super().__init__(image_encoder, memory_attention, memory_encoder, **sam2_args)
        self.robot_prompt_generator = robot_prompt_generator

    def _build_sam_heads(self):
        """SAM 2's heads, with the decoder swapped for :class:`RobotMaskDecoder` (same settings, same transformer)."""
        super()._build_sam_heads()
        self.sam_mask_decoder = RobotMaskDecoder(
            num_multimask_outputs=3,
            transformer=self.sam_mask_decoder.transformer,
            transformer_dim=self.sam_prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=self.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=self.iou_prediction_use_sigmoid,
            pred_obj_scores=self.pred_obj_scores,
            pred_obj_scores_mlp=self.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=self.use_multimask_token_for_obj_ptr,
            **(self.sam_mask_decoder_extra_args or {}),
        )

    # ------------------------------------------------------------------ heads

    def _forward_sam_heads(
        self,
        backbone_features,
        robot_inputs=None,
        point_inputs=None,
        mask_inputs=None,
        memory=None,
        memory_pos_embed=None,
        mask_fg=None,
        num_obj_ptr_tokens=0,
        high_res_features=None,
        multimask_output=False,
    ):
        """SAM 2's prompt encoder and decoder with the robot tokens; returns SAM 2's 7 outputs.

        ``memory``/``mask_fg`` feed the RPG (``None`` gives its no-memory token);
        ``robot_inputs`` (``arm``/``gripper``/``robot``) picks the class token, ``None`` adds none.
        """
        b = backbone_features.size(0)
        device = backbone_features.device
        if point_inputs is not None:
            coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
        else:  # no clicks: one "not a point" pad, as SAM 2
            coords = torch.zeros(b, 1, 2, device=device)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
        mask_prompt = None
        if mask_inputs is not None:
            mask_prompt = mask_inputs
            if mask_inputs.shape[-2:] != self.sam_prompt_encoder.mask_input_size:
                mask_prompt = F.interpolate(
                    mask_inputs.float(),
                    size=self.sam_prompt_encoder.mask_input_size,
                    align_corners=False,
                    mode="bilinear",
                    antialias=True,
                )
        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_prompt)
        object_tokens = self.robot_prompt_generator(
            memory=memory, memory_pos_embed=memory_pos_embed, mask_fg=mask_fg, num_obj_ptr_tokens=num_obj_ptr_tokens, bs=b
        )
        low_res_multimasks, ious, sam_output_tokens, object_score_logits = self.sam_mask_decoder(
            image_embeddings=backbone_features,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            robot_inputs=robot_inputs,
            robot_prompt_embeddings_fg=object_tokens,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=False,
            high_res_features=high_res_features,
        )
        if self.pred_obj_scores:
            is_obj_appearing = object_score_logits > 0
            low_res_multimasks = torch.where(is_obj_appearing[:, None, None], low_res_multimasks, NO_OBJ_SCORE)
        low_res_multimasks = low_res_multimasks.float()
        high_res_multimasks = F.interpolate(
            low_res_multimasks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        sam_output_token = sam_output_tokens[:, 0]
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=device)
            low_res_masks = low_res_multimasks[rows, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[rows, best].unsqueeze(1)
            if sam_output_tokens.size(1) > 1:
                sam_output_token = sam_output_tokens[rows, best]
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks
        obj_ptr = self.obj_ptr_proj(sam_output_token)
        if self.pred_obj_scores:
            appearing = object_score_logits.sigmoid() if self.soft_no_obj_ptr else is_obj_appearing.float()
            if self.fixed_no_obj_ptr:
                obj_ptr = appearing * obj_ptr
            obj_ptr = obj_ptr + (1 - appearing) * self.no_obj_ptr
        return low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits

    # ------------------------------------------------------------------ memory

    def _prepare_memory_conditioned_features(
        self,
        frame_idx,
        is_init_cond_frame,
        current_raw_image,
        current_vision_feats,
        current_vision_pos_embeds,
        feat_sizes,
        output_dict,
        num_frames,
        track_in_reverse=False,
    ):
        """SAM 2's memory conditioning with the frame's edges; returns ``(pix_feat, structure maps, MemoryContext)``.

        The memory bank is selected exactly as SAM 2.1 selects it (conditioning frames, the
        last ``num_maskmem - 1`` frames, object pointers); each spatial memory also brings its
        foreground for the RPG.
        """
        b = current_vision_feats[-1].size(1)
        c = self.hidden_dim
        h, w = feat_sizes[-1]
        device = current_vision_feats[-1].device
        if self.num_maskmem == 0:
            return current_vision_feats[-1].permute(1, 2, 0).contiguous().view(b, c, h, w), None, MemoryContext()
        if is_init_cond_frame:
            # directly_add_no_mem_embed (SAM 2.1): a conditioning frame sees no memory.
            pix = current_vision_feats[-1] + self.no_mem_embed
            return pix.permute(1, 2, 0).contiguous().view(b, c, h, w), None, MemoryContext()

        memories, positions, foregrounds = [], [], []
        cond_outputs = output_dict["cond_frame_outputs"]
        if not cond_outputs:
            raise RuntimeError(f"frame {frame_idx}: tracking needs a conditioning frame first")
        selected_cond, unselected_cond = select_closest_cond_frames(frame_idx, cond_outputs, self.max_cond_frames_in_attn)
        picked = [(0, out) for out in selected_cond.values()]
        stride = 1 if self.training else self.memory_temporal_stride_for_eval
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos  # frames before the current one
            if t_rel == 1:
                prev = frame_idx + 1 if track_in_reverse else frame_idx - 1
            elif not track_in_reverse:
                prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
            else:
                prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
            out = output_dict["non_cond_frame_outputs"].get(prev)
            if out is None:
                out = unselected_cond.get(prev)
            picked.append((t_pos, out))
        for t_pos, prev in picked:
            if prev is None:
                continue
            features = prev["maskmem_features"].to(device, non_blocking=True)
            # The RPG's foreground: the stored low-res mask at the memory grid (the release uses
            # pred_masks, as high-res masks are not kept at inference).
            probs = torch.sigmoid(prev["pred_masks"].to(device, non_blocking=True))
            probs = F.interpolate(probs, size=features.shape[-2:], mode="bilinear", align_corners=False)
            memories.append(features.flatten(2).permute(2, 0, 1).contiguous())
            foregrounds.append((probs >= 0.5).flatten(2).permute(2, 0, 1).contiguous())
            pos = prev["maskmem_pos_enc"][-1].to(device).flatten(2).permute(2, 0, 1).contiguous()
            positions.append(pos + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])

        num_obj_ptr_tokens = 0
        if self.use_obj_ptrs_in_encoder:
            max_ptrs = min(num_frames, self.max_obj_ptrs_in_encoder)
            if not self.training and self.only_obj_ptrs_in_the_past_for_eval:
                ptr_cond = {t: o for t, o in selected_cond.items() if (t >= frame_idx if track_in_reverse else t <= frame_idx)}
            else:
                ptr_cond = selected_cond
            sign = -1 if track_in_reverse else 1
            pos_and_ptrs = [
                ((frame_idx - t) * sign if self.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t), o["obj_ptr"])
                for t, o in ptr_cond.items()
            ]
            for t_diff in range(1, max_ptrs):
                t = frame_idx + t_diff if track_in_reverse else frame_idx - t_diff
                if t < 0 or (num_frames is not None and t >= num_frames):
                    break
                out = output_dict["non_cond_frame_outputs"].get(t, unselected_cond.get(t))
                if out is not None:
                    pos_and_ptrs.append((t_diff, out["obj_ptr"]))
            if pos_and_ptrs:
                distances, ptr_list = zip(*pos_and_ptrs)
                ptrs = torch.stack(ptr_list, dim=0)  # (P, B, C)
                if self.add_tpos_enc_to_obj_ptrs:
                    tpos_dim = c if self.proj_tpos_enc_in_obj_ptrs else self.mem_dim
                    ptr_pos = torch.tensor(distances).to(device=device, non_blocking=True)
                    ptr_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(ptr_pos / (max_ptrs - 1), dim=tpos_dim))
                    ptr_pos = ptr_pos.unsqueeze(1).expand(-1, b, self.mem_dim)
                else:
                    ptr_pos = ptrs.new_zeros(len(distances), b, self.mem_dim)
                if self.mem_dim < c:  # a pointer becomes C / mem_dim tokens
                    ptrs = ptrs.reshape(-1, b, c // self.mem_dim, self.mem_dim).permute(0, 2, 1, 3).contiguous().flatten(0, 1)
                    ptr_pos = ptr_pos.repeat_interleave(c // self.mem_dim, dim=0)
                memories.append(ptrs)
                positions.append(ptr_pos)
                foregrounds.append(torch.ones(ptrs.size(0), ptrs.size(1), 1, dtype=torch.bool, device=device))
                num_obj_ptr_tokens = ptrs.shape[0]

        memory = torch.cat(memories, dim=0)
        if not torch.is_autocast_enabled(device.type):
            # Spatial memories are stored in bfloat16; with object pointers the concatenation is
            # float32 already, without them (an object tracked before its first prompted frame)
            # it would stay bfloat16 and fail outside autocast.
            memory = memory.to(current_vision_feats[-1].dtype)
        memory_pos = torch.cat(positions, dim=0)
        pix, structures = self.memory_attention(
            raw_image=current_raw_image,
            curr=current_vision_feats,
            curr_pos=current_vision_pos_embeds,
            memory=memory,
            memory_pos=memory_pos,
            num_obj_ptr_tokens=num_obj_ptr_tokens,
        )
        pix = pix.permute(1, 2, 0).contiguous().view(b, c, h, w)
        return pix, structures, MemoryContext(memory, memory_pos, torch.cat(foregrounds, dim=0), num_obj_ptr_tokens)

    # ------------------------------------------------------------------ one frame

    def _track_step(
        self,
        frame_idx,
        is_init_cond_frame,
        current_raw_image,
        current_vision_feats,
        current_vision_pos_embeds,
        feat_sizes,
        robot_inputs,
        point_inputs,
        mask_inputs,
        output_dict,
        num_frames,
        track_in_reverse,
        prev_sam_mask_logits,
    ):
        """One frame: ``(current_out, structure maps, sam_outputs, MemoryContext)``.

        ``structure maps`` is ``(B, L, S, S)``; on frames without memory it is the
        predicted high-res mask repeated per layer, as the release fills it.
        """
        current_out = {"robot_inputs": robot_inputs, "point_inputs": point_inputs, "mask_inputs": mask_inputs}
        high_res_features = None
        if len(current_vision_feats) > 1:
            high_res_features = [
                x.permute(1, 2, 0).contiguous().view(x.size(1), x.size(2), *s)
                for x, s in zip(current_vision_feats[:-1], feat_sizes[:-1])
            ]
        layers = len(self.memory_attention.layers)
        if mask_inputs is not None and self.use_mask_input_as_output_without_sam:
            pix_feat = current_vision_feats[-1].permute(1, 2, 0).contiguous().view(-1, self.hidden_dim, *feat_sizes[-1])
            sam_outputs = self._use_mask_as_output(pix_feat, high_res_features, mask_inputs)
            return current_out, sam_outputs[4].repeat(1, layers, 1, 1), sam_outputs, MemoryContext()
        pix_feat, structures, context = self._prepare_memory_conditioned_features(
            frame_idx=frame_idx,
            is_init_cond_frame=is_init_cond_frame,
            current_raw_image=current_raw_image,
            current_vision_feats=current_vision_feats[-1:],
            current_vision_pos_embeds=current_vision_pos_embeds[-1:],
            feat_sizes=feat_sizes[-1:],
            output_dict=output_dict,
            num_frames=num_frames,
            track_in_reverse=track_in_reverse,
        )
        if prev_sam_mask_logits is not None:
            if point_inputs is None or mask_inputs is not None:
                raise ValueError("previous mask logits go with point inputs only")
            mask_inputs = prev_sam_mask_logits
        sam_outputs = self._forward_sam_heads(
            backbone_features=pix_feat,
            robot_inputs=robot_inputs,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            memory=context.memory,
            memory_pos_embed=context.memory_pos,
            mask_fg=context.foreground,
            num_obj_ptr_tokens=context.num_obj_ptr_tokens,
            high_res_features=high_res_features,
            multimask_output=self._use_multimask(is_init_cond_frame, point_inputs),
        )
        if structures is None:
            structures = sam_outputs[4].repeat(1, layers, 1, 1)
        return current_out, structures, sam_outputs, context

    def track_step(
        self,
        frame_idx,
        is_init_cond_frame,
        current_raw_image,
        current_vision_feats,
        current_vision_pos_embeds,
        feat_sizes,
        robot_inputs,
        point_inputs,
        mask_inputs,
        output_dict,
        num_frames,
        track_in_reverse=False,
        run_mem_encoder=True,
        prev_sam_mask_logits=None,
    ):
        """The release's ``track_step``: SAM 2's outputs plus ``structure_masks`` (and, for training, all candidates)."""
        current_out, structures, sam_outputs, _ = self._track_step(
            frame_idx,
            is_init_cond_frame,
            current_raw_image,
            current_vision_feats,
            current_vision_pos_embeds,
            feat_sizes,
            robot_inputs,
            point_inputs,
            mask_inputs,
            output_dict,
            num_frames,
            track_in_reverse,
            prev_sam_mask_logits,
        )
        low_multi, _, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits = sam_outputs
        current_out["structure_masks"] = structures
        current_out["pred_masks"] = low_res_masks
        current_out["pred_masks_high_res"] = high_res_masks
        current_out["obj_ptr"] = obj_ptr
        if self.training:
            # What a loss needs besides the chosen mask (SAM 2's trainer keeps the same).
            current_out["multistep_pred_multimasks"] = low_multi
            current_out["multistep_pred_ious"] = ious
            current_out["multistep_object_score_logits"] = object_score_logits
        else:
            current_out["object_score_logits"] = object_score_logits
        self._encode_memory_in_output(
            current_vision_feats, feat_sizes, point_inputs, run_mem_encoder, high_res_masks, object_score_logits, current_out
        )
        return current_out
