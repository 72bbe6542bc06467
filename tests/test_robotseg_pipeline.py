"""RobotSeg as a mask source in the Beam pipeline (RunInference), tiny config on CPU."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.episode import decode_image
from segmentation.robotseg import build_robotseg_video_predictor
from segmentation.robotseg.checkpoint import save_checkpoint
from tests.conftest import IN_PROCESS, read_report, run_cli
from tests.rlds_helpers import provenance, raw_examples


def segment(sample_dir, out, checkpoint, *extra):
    return run_cli(
        "run",
        "configs/segment_robotseg.yaml",
        "--set",
        f"input.dir={sample_dir}",
        "--set",
        f"output.dir={out}",
        "--set",
        "segmentation.config=tiny",
        "--set",
        f"segmentation.checkpoint={checkpoint}",
        "--set",
        "segmentation.device=cpu",
        "--set",
        "input.max_episodes=2",
        *extra,
        *IN_PROCESS,
    )


def test_robotseg_recipe_writes_mask_features(sample_dir, tmp_path):
    checkpoint = tmp_path / "tiny_robotseg.pt"
    save_checkpoint(build_robotseg_video_predictor("tiny", device="cpu"), checkpoint)
    out = tmp_path / "out"

    assert segment(sample_dir, out, checkpoint, "--set", "segmentation.strict_checkpoint=true") == 0

    report = read_report(out)
    assert (report["episodes_in"], report["episodes_written"], report["episodes_failed"]) == (2, 2, 0)
    assert report["seconds_per_stage"]["segment"] > 0
    source = raw_examples(sample_dir, "train")
    for example in raw_examples(out / "oxe_augment_sample" / "1.0.0", "train"):
        original = source[int(provenance(example)["source_key"].split("/")[1])]
        for camera in ("image_0", "image_1"):
            # Frames pass through untouched; the masks are the model's, at frame size.
            assert [s["observation"][camera] for s in example["steps"]] == [s["observation"][camera] for s in original["steps"]]
            masks = np.stack([decode_image(s["observation"][f"{camera}_robot_mask"], "mask") for s in example["steps"]])
            assert masks.shape == (6, 64, 64)
            assert set(np.unique(masks)) <= {0, 1, 2, 3}


def test_missing_checkpoint_is_an_error_at_start_naming_the_path(sample_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "robotseg.pt"
    assert segment(sample_dir, tmp_path / "out", missing) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unreadable_checkpoint_is_an_error_at_start(sample_dir, tmp_path, capsys):
    broken = tmp_path / "robotseg.pt"
    broken.write_bytes(b"this is not a torch checkpoint")
    assert segment(sample_dir, tmp_path / "out", broken) == 2
    assert str(broken) in capsys.readouterr().err


def test_checkpoint_missing_a_key_exits_2_naming_it(sample_dir, tmp_path, capsys):
    state = build_robotseg_video_predictor("tiny", device="cpu").state_dict()
    del state["sam_mask_decoder.robot_token_embedding.weight"]
    torch.save({"model": state}, tmp_path / "partial.pt")
    assert segment(sample_dir, tmp_path / "out", tmp_path / "partial.pt") == 2
    assert "sam_mask_decoder.robot_token_embedding.weight" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
