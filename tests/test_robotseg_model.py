"""RobotSeg's architecture: size, SAM 2.1 compatibility, SEMA, the Robot Prompt Generator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttentionLayer

from segmentation.robotseg import build_robotseg
from segmentation.robotseg.checkpoint import ROBOTSEG_ONLY_KEYS, load_checkpoint
from segmentation.robotseg.memory import MemoryBank
from segmentation.robotseg.prompt_generator import cosine_kmeans_pass, farthest_point_seeds, two_level_tokens
from segmentation.robotseg.sema import edge_map

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def full_model():
    torch.manual_seed(0)
    return build_robotseg("robotseg_hiera_t")


@pytest.fixture(scope="module")
def sam2_state():
    from sam2.build_sam import build_sam2

    torch.manual_seed(1)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu").state_dict()


def test_default_config_has_the_published_parameter_count(full_model):
    count = sum(p.numel() for p in full_model.parameters())
    assert abs(count - 41.3e6) <= 0.5e6, count


def test_every_sam21_hiera_t_key_exists_with_its_shape(full_model, sam2_state):
    ours = full_model.state_dict()
    assert [k for k in sam2_state if k not in ours] == []
    assert [k for k in sam2_state if ours[k].shape != sam2_state[k].shape] == []
    # What ours adds is exactly SEMA's structure branch and RPG.
    extra = [k for k in ours if k not in sam2_state]
    assert extra and all(ROBOTSEG_ONLY_KEYS.match(k) for k in extra)


def test_sam21_state_dict_initialises_the_sam2_part(full_model, sam2_state):
    report = load_checkpoint(full_model, {"model": sam2_state})
    assert report.missing_sam2 == []
    assert report.unexpected == [] and report.shape_mismatched == []
    assert all(ROBOTSEG_ONLY_KEYS.match(k) for k in report.missing)
    loaded = full_model.state_dict()
    for key in (
        "image_encoder.trunk.pos_embed",
        "memory_attention.layers.3.cross_attn_image.k_proj.weight",
        "sam_mask_decoder.iou_token.weight",
    ):
        assert torch.equal(loaded[key], sam2_state[key])


def _memory_inputs(model, batch=1, memory_frames=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    n = cfg.token_grid**2
    tgt = torch.randn(batch, n, cfg.d_model, generator=g)
    pos = torch.randn(batch, n, cfg.d_model, generator=g)
    memory = torch.randn(batch, memory_frames * n, cfg.mem_dim, generator=g)
    memory_pos = torch.randn(batch, memory_frames * n, cfg.mem_dim, generator=g)
    edges = torch.rand(batch, n, 1, generator=g)
    return tgt, pos, memory, memory_pos, edges


def test_sema_temporal_branch_is_sam2s_layer_and_fusion_follows_the_formula():
    torch.manual_seed(0)
    model = build_robotseg("tiny")
    layer = model.memory_attention.layers[0]
    sam2_layer = MemoryAttentionLayer(
        activation="relu",
        cross_attention=layer.cross_attn_image,
        d_model=model.config.d_model,
        dim_feedforward=model.config.memory_feedforward,
        dropout=0.0,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attention=layer.self_attn,
    )
    sam2_layer.load_state_dict(
        {k: v for k, v in layer.state_dict().items() if not ROBOTSEG_ONLY_KEYS.match("memory_attention.layers.0." + k)}
    )
    sam2_layer.eval()
    tgt, pos, memory, memory_pos, edges = _memory_inputs(model)
    with torch.no_grad():
        temporal = sam2_layer(tgt, memory, pos=memory_pos, query_pos=pos)
        fused, structure = layer(tgt, memory, memory_pos, pos, edges)
        gate = torch.sigmoid(structure).flatten(2).transpose(1, 2)
        assert torch.allclose(fused, temporal * (1 + layer.alpha * gate), atol=1e-5)
        layer.alpha.fill_(0.0)
        fused_without_structure, _ = layer(tgt, memory, memory_pos, pos, edges)
    assert torch.allclose(fused_without_structure, temporal, atol=1e-6)
    assert structure.shape == (1, 1, model.config.token_grid, model.config.token_grid)


def test_structure_branch_sees_the_edges():
    torch.manual_seed(0)
    model = build_robotseg("tiny")
    layer = model.memory_attention.layers[0]
    tgt, pos, memory, memory_pos, edges = _memory_inputs(model)
    with torch.no_grad():
        _, with_edges = layer(tgt, memory, memory_pos, pos, edges)
        _, without_edges = layer(tgt, memory, memory_pos, pos, torch.zeros_like(edges))
    assert not torch.allclose(with_edges, without_edges)


def test_sobel_edge_map_marks_a_step_edge_on_the_token_grid():
    image = torch.zeros(1, 3, 64, 64)
    image[..., 32:] = 1.0  # vertical edge between columns 31 and 32
    edges = edge_map(image, grid=8, method="sobel")
    assert edges.shape == (1, 1, 8, 8)
    # The edge falls between token columns 3 and 4; tokens away from it see nothing.
    assert edges[0, 0, :, 3:5].min() > 0.05
    assert edges[0, 0, :, :2].max() < 1e-4 and edges[0, 0, :, 6:].max() < 1e-4


def test_two_level_clustering_finds_separated_regions():
    g = torch.Generator().manual_seed(0)
    directions = F.normalize(torch.randn(2, 16, generator=g), dim=1)
    points = torch.cat(
        [directions[0] + 0.01 * torch.randn(50, 16, generator=g), directions[1] + 0.01 * torch.randn(30, 16, generator=g)]
    )
    x = F.normalize(points, dim=1)
    seeds = farthest_point_seeds(x, 2)
    centroids, assignment = cosine_kmeans_pass(x, seeds)
    assert sorted(torch.bincount(assignment).tolist()) == [30, 50]
    assert (centroids @ directions.t()).max(dim=1).values.min() > 0.99
    tokens = two_level_tokens(points, num_macro=2, num_micro=4)
    assert tokens.shape == (2, 64)
    micro = tokens.view(2, 4, 16)
    assert torch.allclose(micro.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    # Each token's micro centroids all lie in one region.
    assert (micro @ directions.t()).max(dim=-1).values.min() > 0.99


def test_prompt_generator_tokens_and_empty_memory():
    torch.manual_seed(0)
    model = build_robotseg("tiny")
    rpg = model.prompt_generator
    cfg = model.config.prompt_generator
    grid = model.config.token_grid
    features = torch.randn(2, model.config.mem_dim, grid, grid)
    probs = torch.zeros(2, 1, grid, grid)
    probs[0, :, 2:6, 2:6] = 1.0  # frame 0 has foreground, frame 1 none
    tokens, valid = rpg.object_tokens(features, probs)
    assert tokens.shape == (2, cfg.num_macro, cfg.num_micro * model.config.mem_dim)
    assert valid[0].all() and not valid[1].any()
    robot = rpg("gripper", 2, tokens, valid)
    assert robot.shape == (2, cfg.class_bank_size + cfg.num_macro, model.config.d_model)
    assert torch.equal(robot[0, : cfg.class_bank_size], rpg.class_tokens[1])
    # Without foreground (or without memory) the learned empty embedding stands in.
    assert torch.equal(robot[1, cfg.class_bank_size :], rpg.empty_memory_token.weight.expand(cfg.num_macro, -1))
    assert torch.equal(rpg("arm", 2)[:, -1], rpg.empty_memory_token.weight.expand(2, -1))


def test_step_shapes_with_and_without_memory():
    torch.manual_seed(0)
    model = build_robotseg("tiny")
    cfg = model.config
    images = torch.rand(2, 3, cfg.image_size, cfg.image_size)
    bank = MemoryBank(cfg.num_maskmem, cfg.max_obj_ptrs_in_encoder, cfg.max_cond_frames_in_attn, num_frames=2)
    with torch.no_grad():
        features = model.encode_images(images)
        first = model.step(features.frame(0), "robot")
        bank.add(0, model.encode_memory(features.frame(0), first, from_points=False), is_cond=True)
        second = model.step(features.frame(1), "robot", bank.select(1))
    s, low = cfg.image_size, 4 * cfg.token_grid
    assert first.high_res_logits.shape == (1, 1, s, s) and first.low_res_logits.shape == (1, 1, low, low)
    assert first.structure_logits == []  # a conditioning frame skips memory attention (SAM 2.1)
    assert len(second.structure_logits) == cfg.memory_layers
    assert all(m.shape == (1, 1, s, s) for m in second.structure_logits)
    assert second.obj_ptr.shape == (1, cfg.d_model)


def test_memory_bank_selects_sam2s_frames_and_stays_bounded():
    bank = MemoryBank(num_maskmem=7, max_obj_ptrs=16, max_cond_frames=-1, num_frames=100)

    def entry(t):
        return type("E", (), {"obj_ptr": torch.tensor([float(t)])})()

    bank.add(0, entry(0), is_cond=True)
    for t in range(1, 50):
        bank.add(t, entry(t), is_cond=False)
        assert len(bank.recent) <= 6 and len(bank.pointers) <= 15
    selection = bank.select(50)
    # conditioning frame at t_pos 0, then frames 44..49 at t_pos 1..6 (oldest first)
    assert [(t_pos, int(e.obj_ptr)) for t_pos, e in selection.spatial] == [(0, 0)] + [(k, 43 + k) for k in range(1, 7)]
    assert [(d, int(p)) for d, p in selection.pointers] == [(50, 0)] + [(d, 50 - d) for d in range(1, 16)]
    assert selection.max_pointer_distance == 15


def test_compiling_the_image_encoder_does_not_recompile_on_the_second_frame():
    # sam2's position encodings cache a table on first use; filled inside the compiled graph
    # it fails a guard and the encoder compiles again (once per size, minutes on a GPU).
    from torch._dynamo.utils import counters

    models = []
    for _ in range(2):  # the same weights twice: one eager, one compiled before its first call
        torch.manual_seed(0)
        models.append(build_robotseg("tiny").eval())
    reference, model = models
    size = model.config.image_size
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        eager = reference.encode_images(images)
        torch._dynamo.reset()
        counters.clear()
        model.enable_compile(backend="eager")  # tracing and guards, without code generation
        outputs = [model.encode_images(images) for _ in range(3)]
    assert counters["stats"]["unique_graphs"] == 1
    for features in outputs:
        torch.testing.assert_close(features.vision, eager.vision)
