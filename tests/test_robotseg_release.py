"""RobotSeg against the release: the module tree of ``robotseg.pt`` and the release code's own output.

``../shared/robotseg_release/`` holds ``keys.json`` (the 585 state-dict names and shapes of
the released model) and ``reference_logits.npz``: what the release's code computed (CPU,
float32, kornia 0.9.0, hole filling inactive because its CUDA extension is absent) with
weights filled by ``make_reference.py``'s rule, on a 3-frame 1024 px clip prompted
automatically (``add_new_robot(frame 0, robot="robot")`` after ``torch.manual_seed(0)``).
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.robotseg import CheckpointError, build_robotseg_video_predictor
from tests.conftest import REPO

RELEASE = REPO.parent / "shared" / "robotseg_release"


def release_keys() -> dict[str, list[int]]:
    return json.loads((RELEASE / "keys.json").read_text())["keys"]


def reference_weights() -> dict[str, torch.Tensor]:
    """``make_reference.py``'s fill: per key ``randn * 0.02`` seeded by crc32(name); 1-D ``.weight`` (norms) = 1."""
    state = {}
    for name, shape in release_keys().items():
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))
        noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32) * 0.02
        state[name] = torch.ones(tuple(shape)) if name.endswith(".weight") and len(shape) == 1 else noise
    return state


def test_full_model_has_the_release_keys_shapes_and_parameter_count():
    model = build_robotseg_video_predictor("configs/robotseg-infer.yaml", None, device="cpu")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == release_keys()
    assert sum(p.numel() for p in model.parameters()) == 41_300_298


def test_a_checkpoint_missing_one_release_key_is_refused_naming_it(tmp_path):
    state = reference_weights()
    del state["sam_mask_decoder.robot_token_embedding.weight"]
    torch.save({"model": state}, tmp_path / "robotseg.pt")
    with pytest.raises(CheckpointError, match="sam_mask_decoder.robot_token_embedding.weight"):
        build_robotseg_video_predictor("configs/robotseg-infer.yaml", tmp_path / "robotseg.pt", device="cpu")


@pytest.mark.slow  # ~110 s on one CPU core: the 1024 px model over 3 frames
def test_release_reference_output_is_reproduced(tmp_path):
    reference = np.load(RELEASE / "reference_logits.npz")
    torch.save({"model": reference_weights()}, tmp_path / "robotseg.pt")
    frames = reference["input_frames"]
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, frame in enumerate(frames):  # lossless, named as the release's loader wants (PIL reads by content)
        Image.fromarray(frame).save(clip / f"{i}.jpg", format="PNG")

    # The release's builder defaults, with hole filling off as it was for the reference (no CUDA extension).
    predictor = build_robotseg_video_predictor("configs/robotseg-infer.yaml", tmp_path / "robotseg.pt", "cpu", fill_holes=False)
    with torch.inference_mode():
        state = predictor.init_state(video_path=str(clip), async_loading_frames=False)
        encoded = predictor.image_encoder(state["images"][0].float().unsqueeze(0))["backbone_fpn"]
        torch.manual_seed(0)  # the prompt generator's farthest-point sampling draws from the global RNG
        _, obj_ids, first = predictor.add_new_robot(inference_state=state, frame_idx=0, obj_id=0, robot="robot")
        video = [(f, logits.numpy()) for f, _, logits in predictor.propagate_in_video(inference_state=state, robot="robot")]

    # Image encoder: the stored level 2 is float16, so 1 ulp of float16 at |x| <= 2.04 (2**-9) is the
    # tolerance; levels 0-2 also match the float64 checksums (mean, std, first 16 values) to 1e-6.
    assert np.abs(encoded[2].numpy() - reference["enc_fpn2_full"].astype(np.float32)).max() <= 2**-9
    for level, features in enumerate(encoded):
        values = features.double().numpy().ravel()
        checksum = reference[f"enc_fpn{level}_checksum"]
        np.testing.assert_allclose([values.mean(), values.std(), *values[:16]], checksum, rtol=0, atol=1e-6)

    # Low-res logits, object scores and pointers are stored in float32: the same computation on the
    # same torch build is expected to agree to float32 rounding (1e-6 against logits of order 1e-2).
    assert obj_ids == [0] and [f for f, _ in video] == [0, 1, 2]
    outputs = state["output_dict_per_obj"][0]
    for f in range(3):
        out = outputs["cond_frame_outputs"].get(f) or outputs["non_cond_frame_outputs"][f]
        np.testing.assert_allclose(out["pred_masks"].numpy(), reference["lowres_logits"][f], rtol=0, atol=1e-6)
        np.testing.assert_allclose(out["object_score_logits"].numpy(), reference["object_score_logits"][f], rtol=0, atol=1e-6)
        np.testing.assert_allclose(out["obj_ptr"].numpy(), reference["obj_ptr"][f], rtol=0, atol=1e-6)

    # Video-resolution logits are stored in float16 (|x| < 0.025, so 1 ulp <= 2**-16 ~ 1.5e-5); masks (> 0)
    # then differ only where a logit is within that rounding of 0: IoU >= 0.999 on every frame.
    np.testing.assert_array_equal(first.numpy().astype(np.float16), reference["add_robot_logits"])
    for f, logits in video:
        expected = reference["video_res_logits"][f].astype(np.float32)
        assert np.abs(logits - expected).max() <= 2**-16
        ours, theirs = logits > 0, expected > 0
        assert (ours & theirs).sum() / (ours | theirs).sum() >= 0.999
