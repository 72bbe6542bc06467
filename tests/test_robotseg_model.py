"""RobotSeg's robot-specific modules (structure branch, prompt generator, decoder tokens) and the tiny model's tree."""

from __future__ import annotations

import json
import re

import pytest
import torch
from sam2.modeling.memory_attention import MemoryAttentionLayer
from sam2.modeling.sam.transformer import RoPEAttention

from segmentation.robotseg import build_robotseg_video_predictor
from segmentation.robotseg.mask_decoder import ROBOT_VOCAB
from segmentation.robotseg.prompt_generator import RobotPromptGenerator
from segmentation.robotseg.structure import StructureMemoryAttentionLayer, edge_map, gray_for_edges
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pattern(key: str) -> str:
    return re.sub(r"\.\d+\.", ".N.", key)


def test_tiny_model_has_the_release_module_tree_at_small_sizes():
    release = json.loads((REPO.parent / "shared" / "robotseg_release" / "keys.json").read_text())["keys"]
    tiny = build_robotseg_video_predictor("tiny", device="cpu").state_dict()
    assert {pattern(k) for k in tiny} == {pattern(k) for k in release}
    assert tiny["sam_mask_decoder.robot_token_embedding.weight"].shape == (3, 64)


def _rope(d=32, kv=None):
    return RoPEAttention(
        embedding_dim=d,
        num_heads=1,
        downsample_rate=1,
        dropout=0.0,
        kv_in_dim=kv,
        feat_sizes=(4, 4),
        rope_k_repeat=kv is not None,
    )


def _layers():
    torch.manual_seed(0)
    args = dict(
        activation="relu",
        d_model=32,
        dim_feedforward=64,
        dropout=0.0,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
    )
    ours = StructureMemoryAttentionLayer(
        cross_attention_structure=_rope(32, 8), self_attention=_rope(), cross_attention=_rope(32, 8), **args
    )
    sam2 = MemoryAttentionLayer(self_attention=_rope(), cross_attention=_rope(32, 8), **args)
    sam2.load_state_dict({k: v for k, v in ours.state_dict().items() if k in sam2.state_dict()})
    return ours.eval(), sam2.eval()


def test_the_temporal_branch_is_sam2s_layer_and_the_gate_multiplies_it():
    ours, sam2 = _layers()
    tokens, memory, pos = torch.randn(1, 16, 32), torch.randn(1, 20, 8), torch.randn(1, 20, 8)
    edges = torch.zeros(1, 1, 64, 64)
    edges[..., 30:34, :] = 1
    with torch.no_grad():
        plain = sam2(tokens, memory, pos=pos, num_k_exclude_rope=4)
        assert torch.equal(ours(tokens, memory, pos=pos, num_k_exclude_rope=4, edges=None)[0], plain)
        gated, structure = ours(tokens, memory, pos=pos, num_k_exclude_rope=4, edges=edges)
        assert structure.shape == (1, 1, 64, 64)  # x16 the 4 x 4 grid
        gate = torch.nn.functional.interpolate(torch.sigmoid(structure), size=(4, 4), mode="bilinear", align_corners=False)
        expected = plain.transpose(1, 2).reshape(1, 32, 4, 4) * (1 + ours.structure_strength * gate)
        torch.testing.assert_close(gated, expected.flatten(2).transpose(1, 2))
        ours.structure_strength.fill_(0.0)
        torch.testing.assert_close(ours(tokens, memory, pos=pos, num_k_exclude_rope=4, edges=edges)[0], plain)


def test_edges_come_from_the_normalised_frame_as_the_release_reads_it():
    frame = torch.zeros(1, 3, 32, 32)
    frame[..., 16:] = 2.0  # normalised frames exceed 1.5: divided by 255, as in the release
    gray = gray_for_edges(frame)
    assert torch.allclose(gray[..., 16:], torch.full_like(gray[..., 16:], 2.0 / 255))
    step = torch.zeros(1, 3, 32, 32)
    step[..., 16:] = 1.0
    edges = edge_map(step)
    assert edges[0, 0, :, 14:18].any() and not edges[0, 0, :, :10].any() and set(edges.unique().tolist()) <= {0.0, 1.0}


def test_prompt_generator_tokens_per_memory_frame_and_its_seeded_sampling():
    rpg = RobotPromptGenerator(embed_dim=16, object_token_num=3, grid_size=4)
    assert torch.equal(rpg(None, None, None, bs=2), rpg.no_memory_prompt_embeddings_fg.weight.expand(2, 3, 16))
    memory = torch.randn(2 * 16 + 8, 1, 4)  # two 4x4 frames of 4-d memory, then 8 pointer tokens
    fg = torch.zeros(40, 1, 1, dtype=torch.bool)
    fg[:10] = True  # frame 0 has foreground, frame 1 none
    fg[32:] = True
    torch.manual_seed(0)
    tokens = rpg(memory, None, fg, num_obj_ptr_tokens=8)
    assert tokens.shape == (1, 6, 16)
    assert torch.equal(tokens[0, 3:], rpg.no_memory_prompt_embeddings_fg.weight.expand(3, 16))  # empty frame
    norms = tokens[0, :3].view(3, 4, 4).norm(dim=-1)  # four L2-normalised micro prototypes per token
    torch.testing.assert_close(norms, torch.ones(3, 4))
    torch.manual_seed(0)
    assert torch.equal(rpg(memory, None, fg, num_obj_ptr_tokens=8), tokens)
    with pytest.raises(ValueError, match="multiple of 16"):
        rpg(memory[:30], None, fg[:30], num_obj_ptr_tokens=8)


def test_decoder_adds_the_class_token_of_the_robot_only_when_one_is_named():
    model = build_robotseg_video_predictor("tiny", device="cpu")
    decoder = model.sam_mask_decoder
    assert ROBOT_VOCAB == ("arm", "gripper", "robot")
    objects = torch.randn(1, 3, 64)
    tokens = decoder.robot_tokens("gripper", 1, objects)
    assert torch.equal(tokens[0, 0], decoder.robot_token_embedding.weight[1]) and torch.equal(tokens[:, 1:], objects)
    with pytest.raises(ValueError, match="not in"):
        decoder.robot_tokens("wheel", 1, None)
