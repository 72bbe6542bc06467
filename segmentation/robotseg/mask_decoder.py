"""SAM 2's mask decoder with the release's robot tokens (``MaskDecoder_Robot_RPG``'s behaviour).

The release inserts, after SAM 2's output tokens (object score, IoU, 4 mask tokens), the
robot *class* token (``robot_token_embedding``, vocabulary ``arm``/``gripper``/``robot``)
and the Robot Prompt Generator's *object* tokens, then the sparse prompt tokens. SAM 2's
decoder appends its sparse prompt embeddings right after its output tokens, so handing it
``[class token, object tokens, sparse prompts]`` as the sparse embeddings gives exactly
the release's token sequence; everything else is ``sam2``'s :class:`MaskDecoder`.
"""

from __future__ import annotations

import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from torch import nn

#: The release's robot vocabulary, in embedding order.
ROBOT_VOCAB = ("arm", "gripper", "robot")


class RobotMaskDecoder(MaskDecoder):
    """:class:`MaskDecoder` plus ``robot_token_embedding`` (3 x transformer_dim)."""

    def __init__(self, **sam2_decoder_args):
        super().__init__(**sam2_decoder_args)
        self.robot_token_embedding = nn.Embedding(len(ROBOT_VOCAB), self.transformer_dim)

    def robot_tokens(self, robot: str, batch: int, object_tokens: torch.Tensor | None) -> torch.Tensor:
        """``(B, 1 [+ K], C)``: the class token of ``robot``, then the RPG object tokens if any."""
        if robot not in ROBOT_VOCAB:
            raise ValueError(f"robot_inputs {robot!r} not in {list(ROBOT_VOCAB)}")
        index = torch.tensor([ROBOT_VOCAB.index(robot)], device=self.robot_token_embedding.weight.device)
        tokens = self.robot_token_embedding(index).unsqueeze(0).expand(batch, -1, -1)
        return tokens if object_tokens is None else torch.cat([tokens, object_tokens], dim=1)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        robot_inputs: str | None,
        robot_prompt_embeddings_fg: torch.Tensor | None,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ):
        """SAM 2's decoder outputs ``(masks, iou_pred, sam_tokens_out, object_score_logits)``, robot tokens included.

        ``robot_inputs=None`` (mask prompts) adds no robot token at all, as in the release.
        """
        if robot_inputs is not None:
            robot = self.robot_tokens(robot_inputs, sparse_prompt_embeddings.shape[0], robot_prompt_embeddings_fg)
            sparse_prompt_embeddings = torch.cat([robot.to(sparse_prompt_embeddings.dtype), sparse_prompt_embeddings], dim=1)
        return super().forward(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings,
            multimask_output=multimask_output,
            repeat_image=repeat_image,
            high_res_features=high_res_features,
        )
