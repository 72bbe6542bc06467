"""Recipes, datasets, images and checkpoints from a stranger (issue 21, items 1, 2 and 8-12).

A recipe is data: no key names a callable or a class, and reading one costs bounded
memory. A checkpoint or resume state never runs a pickle. Every written image decodes,
and an image that cannot (empty, truncated, damaged) costs its episode only, with the
camera and step named. Each test runs the real command line, the real DirectRunner and
real files (copies of the shared Bridge dataset, or synthetic OXE-shaped datasets).
"""

from __future__ import annotations

import ast
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
import tensorflow as tf

from tests import oxe_schemas
from tests.conftest import IN_PROCESS, REPO, read_failures, read_report, run_cli
from tests.test_data_safety import VAL, load_every_episode, records, replace_image, write_records

TRAIN = "bridge_dataset-train.tfrecord-00000-of-00001"


@pytest.fixture
def source(bridge_dir, tmp_path) -> pathlib.Path:
    """A private, writable copy of Bridge."""
    path = tmp_path / "data" / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_dir, path)
    for file in path.iterdir():
        file.chmod(0o644)
    return path


def write_recipe(tmp_path: pathlib.Path, text: str, name: str = "recipe.yaml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def one_line_error(err: str) -> str:
    """The error the command printed: exactly one line, no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------------
# 1. No recipe key names a callable or a class


PLANTED = "{target}"
ATTACKS = [
    # The case: Hydra instantiates pathlib.Path(...).write_text("owned").
    "+model.image_encoder.trunk.junk={_target_: pathlib.Path.write_text, "
    "self: {_target_: pathlib.Path, _args_: [" + PLANTED + "]}, data: owned}",
    "++model.image_encoder.trunk.junk={_target_: builtins.open, file: " + PLANTED + ", mode: w}",
    "++model.image_encoder._target_=builtins.print",
    "model.image_encoder.trunk={_target_: builtins.open, file: " + PLANTED + ", mode: w}",
    "++model.image_size=${oc.env:HOME}",
    "~model.image_encoder",
]


def sam2_recipe(tmp_path, out, bridge_dir, override: str):
    prompts = tmp_path / "prompts.json"
    prompts.write_text("{}")
    return write_recipe(
        tmp_path,
        f"""
        input: {{dir: {bridge_dir}, max_episodes: 1}}
        output: {{dir: {out}, previews: 0}}
        segmentation:
          source: sam2
          prompts: {prompts}
          allow_random_init: true
          device: cpu
          missing_prompts: empty
          sam2_overrides:
            - {json.dumps(override)}
        background: {{source: procedural}}
        """,
    )


@pytest.mark.parametrize("attack", ATTACKS)
def test_sam2_overrides_that_name_code_are_refused_at_load_and_nothing_runs(attack, bridge_dir, tmp_path, capsys):
    target = tmp_path / "pwned.txt"
    out = tmp_path / "out"
    recipe = sam2_recipe(tmp_path, out, bridge_dir, attack.replace(PLANTED, str(target)))
    for extra in (["--check"], list(IN_PROCESS)):
        assert run_cli("run", recipe, *extra) == 2
        message = one_line_error(capsys.readouterr().err)
        assert "segmentation.sam2_overrides[0]" in message
    assert not target.exists()
    assert not out.exists()


def test_sam2_model_builder_refuses_code_even_when_called_directly(tmp_path):
    """Workers build the model from pickled options: the builder checks again."""
    from segmentation.sam2_source import build_sam2_video_model
    from segmentation.sources import SourceConfigError

    target = tmp_path / "pwned.txt"
    for attack in ATTACKS:
        with pytest.raises(SourceConfigError, match=r"segmentation.sam2_overrides\[0\]"):
            build_sam2_video_model("configs/sam2.1/sam2.1_hiera_t.yaml", None, "cpu", [attack.replace(PLANTED, str(target))])
    with pytest.raises(SourceConfigError, match="segmentation.sam2_config: .* is not a config file of the sam2 package"):
        build_sam2_video_model("../../../../etc/x.yaml", None, "cpu", [])
    assert not target.exists()


@pytest.mark.parametrize(
    "override, problem",
    [
        ("++model.image_encoder.trunk=3", "a section of"),
        ("++model.no_such_section.x=1", "model.no_such_section is not a section"),
        ("++model.image_size=[1, {a: 1}]", "must be a number"),
        ("++model.image_size=abc", "must be a number"),
    ],
)
def test_sam2_overrides_set_only_numbers_of_existing_sections(override, problem, bridge_dir, tmp_path, capsys):
    recipe = sam2_recipe(tmp_path, tmp_path / "out", bridge_dir, override)
    assert run_cli("run", recipe, "--check") == 2
    message = one_line_error(capsys.readouterr().err)
    assert "segmentation.sam2_overrides[0]" in message and problem in message


@pytest.mark.parametrize("name", ["os.system", "__class__", "BasicTransform", "Lambda", "core", "to_dict"])
def test_albumentations_names_resolve_only_to_transform_classes(name):
    from augment.photometric import transform_from_spec

    with pytest.raises(ValueError, match="unknown albumentations transform"):
        transform_from_spec({name: {}}, "composite.background_transforms[0]")
    assert type(transform_from_spec({"RandomBrightnessContrast": {"p": 1.0}}, "x")).__name__ == "RandomBrightnessContrast"


# ---------------------------------------------------------------------------------------
# 2. Every torch.load is weights_only=True; a planted resume state does not run


def torch_loads_without_weights_only(path: pathlib.Path) -> list[int]:
    """Lines of ``torch.load(...)`` calls in ``path`` without a literal ``weights_only=True``."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr == "load"):
            continue
        if not (isinstance(func.value, ast.Name) and func.value.id == "torch"):
            continue
        weights_only = [k for k in node.keywords if k.arg == "weights_only"]
        if not (weights_only and isinstance(weights_only[0].value, ast.Constant) and weights_only[0].value.value is True):
            bad.append(node.lineno)
    return bad


def test_every_torch_load_in_the_source_uses_weights_only():
    folders = ["augment", "segmentation", "backgrounds", "pipelines", "benchmarks", "tests"]
    files = [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 50
    offenders = {str(path.relative_to(REPO)): lines for path in files if (lines := torch_loads_without_weights_only(path))}
    assert offenders == {}


def test_the_source_walker_catches_unsafe_calls(tmp_path):
    code = tmp_path / "x.py"
    code.write_text(
        "import torch\n"
        "a = torch.load('a')\n"
        "b = torch.load('b', weights_only=False)\n"
        "c = torch.load('c', map_location='cpu', weights_only=True)\n"
    )
    assert torch_loads_without_weights_only(code) == [2, 3]


class _Planted:
    """A pickle that writes a file when it is loaded."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.target), "owned"))


def test_a_pickle_planted_as_the_resume_state_does_not_run(tmp_path, one_torch_thread):
    import torch

    from segmentation.robotseg.let import CHECKPOINT_LAST, FinetuneOptions, finetune
    from tests.test_finetune import synthetic_clips

    target = tmp_path / "pwned.txt"
    out = tmp_path / "train"
    out.mkdir()
    torch.save({"model": _Planted(str(target)), "step": 0}, out / CHECKPOINT_LAST)
    options = FinetuneOptions(out_dir=str(out), steps=1, batch_size=1, clip_length=2, save_every=1, log_every=1)
    with pytest.raises(ValueError, match=f"{CHECKPOINT_LAST}.*not a resume state"):
        finetune(options, synthetic_clips(1, frames=2))
    assert not target.exists()


# ---------------------------------------------------------------------------------------
# 8. Every written image decodes


def truncated(jpeg: bytes) -> bytes:
    return jpeg[: len(jpeg) // 2]


def damaged(jpeg: bytes) -> bytes:
    """Header intact, entropy-coded body replaced by noise, end-of-image marker kept."""
    return jpeg[:300] + np.random.default_rng(0).bytes(len(jpeg) - 302) + b"\xff\xd9"


def test_a_jpeg_with_a_valid_header_and_a_broken_body_fails_its_episode_only(source, tmp_path):
    shard = source / VAL
    data = records(shard)
    originals = {}
    for episode, (camera, step, damage) in {2: ("image_1", 3, truncated), 5: ("image_0", 7, damaged)}.items():
        frame = tf.train.Example.FromString(data[episode]).features.feature[f"steps/observation/{camera}"].bytes_list.value[step]
        originals[episode] = frame
        data[episode] = replace_image(data[episode], camera, step, damage(frame))
    write_records(shard, data)

    out = tmp_path / "out"
    status = run_cli(
        "run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}",
        "--set", "input.splits=[val]", "--set", "input.max_episodes=6", *IN_PROCESS,
    )  # fmt: skip
    assert status == 1
    failures = read_failures(out)
    assert [(f["key"], f["stage"]) for f in failures] == [("val/000002", "check"), ("val/000005", "check")]
    assert failures[0]["reason"].startswith("camera image_1, step 3: JPEG image does not decode")
    assert failures[1]["reason"].startswith("camera image_0, step 7: JPEG image does not decode")
    # What was written loads, every frame decoded, as training would read it.
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"val": 4}


# ---------------------------------------------------------------------------------------
# 9. Empty images


@pytest.fixture
def empty_images_dataset(tmp_path) -> pathlib.Path:
    """The Berkeley UR5 feature tree (undeclared encodings, a float depth Image), every image empty bytes."""
    dataset = oxe_schemas.write_dataset(oxe_schemas.BY_NAME["berkeley_autolab_ur5"], tmp_path / "ur5")
    for shard in dataset.glob("*.tfrecord*"):
        examples = [tf.train.Example.FromString(r) for r in records(shard)]
        for example in examples:
            for key, feature in example.features.feature.items():
                if key.startswith("steps/observation/") and "image" in key:
                    for i in range(len(feature.bytes_list.value)):
                        feature.bytes_list.value[i] = b""
        write_records(shard, [e.SerializeToString() for e in examples])
    return dataset


def test_empty_images_are_inspected_and_every_episode_is_accounted(empty_images_dataset, tmp_path, capsys):
    assert run_cli("inspect", empty_images_dataset) == 0
    printed = capsys.readouterr().out
    assert "camera image:" in printed and "camera hand_image:" in printed

    augment = write_recipe(
        tmp_path,
        f"""
        input: {{dir: {empty_images_dataset}}}
        output: {{dir: {tmp_path / "augmented"}, previews: 0}}
        segmentation: {{source: none, allow_no_masks: true}}
        background: {{source: procedural}}
        """,
    )
    copy = ["configs/copy.yaml", "--set", f"input.dir={empty_images_dataset}", "--set", f"output.dir={tmp_path / 'copied'}"]
    for args, out in ((copy, tmp_path / "copied"), ([augment], tmp_path / "augmented")):
        assert run_cli("run", *args, *IN_PROCESS) == 1
        report = read_report(out)
        assert (report["episodes_in"], report["episodes_written"], report["episodes_failed"]) == (2, 0, 2)
        failures = read_failures(out)
        assert [f["key"] for f in failures] == ["train/000000", "train/000001"]
        assert all(f["reason"].endswith(", step 0: empty image (0 bytes)") for f in failures), failures
        assert "empty image" in (out / "report.html").read_text()


# ---------------------------------------------------------------------------------------
# 10. Resource caps


def laughs(levels: int) -> str:
    """A recipe whose ``name`` nests ``levels`` anchors, each alias list nine times the one before:
    ``9 ** levels`` strings once expanded (a repr of it in a message would be gigabytes at 9)."""
    lines = [
        "input: {dir: /data/in}",
        "output: {dir: /data/out}",
        "name:",
        '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for level in range(1, levels):
        anchor, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"  - &{anchor} [{','.join(['*' + previous] * 9)}]")
    return "\n".join(lines) + "\n"


BILLION_LAUGHS = laughs(9)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    assert len(BILLION_LAUGHS) < 1500  # 9 ** 9 strings once expanded
    recipe = write_recipe(tmp_path, BILLION_LAUGHS)
    assert run_cli("run", recipe, "--check") == 2
    message = one_line_error(capsys.readouterr().err)
    assert "expands to more than 100000 values" in message and str(recipe) in message


def test_a_long_value_is_cut_in_the_message(tmp_path, bridge_dir, capsys):
    """A smaller bomb (9 ** 6 values once expanded) and a long --set value: the message stays short."""
    recipe = write_recipe(tmp_path, laughs(6))
    assert run_cli("run", recipe, "--check") == 2
    assert len(one_line_error(capsys.readouterr().err)) < 500
    common = ["--set", f"input.dir={bridge_dir}", "--set", f"output.dir={tmp_path / 'o'}", "--check"]
    assert run_cli("run", "configs/copy.yaml", "--set", f"seed={'9' * 5000}x", *common) == 2
    message = one_line_error(capsys.readouterr().err)
    assert "seed: expected int" in message and "(5003 characters)" in message and len(message) < 500


def test_a_recipe_file_over_the_size_cap_is_refused(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "description: " + "x" * (1 << 20) + "\n")
    assert run_cli("run", recipe, "--check") == 2
    assert "larger than 1048576 bytes" in one_line_error(capsys.readouterr().err)


def png_bomb(width: int, height: int) -> bytes:
    """A grey PNG of ``width`` x ``height`` zeros: a few hundred KB that decode to width * height bytes and more."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte, then the row
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_an_image_over_the_pixel_cap_is_skipped_from_its_header(tmp_path, caplog):
    import logging

    import cv2

    from backgrounds.images import ImageLibraryBackground, ImageLibraryOptions

    library = tmp_path / "library"
    library.mkdir()
    (library / "bomb.png").write_bytes(png_bomb(12000, 9000))  # 108 million pixels
    cv2.imwrite(str(library / "good.png"), np.full((40, 60, 3), 200, np.uint8))
    source = ImageLibraryBackground(ImageLibraryOptions(path=str(library)))
    with caplog.at_level(logging.WARNING, logger="backgrounds.images"):
        source.check()
        model = source.load_model()
    assert model.reasons == {
        str(library / "bomb.png"): "its header says 108000000 pixels, more than max_pixels 64000000; not decoded"
    }
    assert any("bomb.png" in r.getMessage() and "max_pixels" in r.getMessage() for r in caplog.records)
    # A higher cap (a recipe key) lets it through.
    model = ImageLibraryBackground(ImageLibraryOptions(path=str(library), max_pixels=200_000_000)).load_model()
    assert model.reasons == {} and model.image(str(library / "bomb.png")).shape == (9000, 12000, 3)


def test_a_library_where_nothing_decodes_is_exit_2_naming_a_file(source, tmp_path, capsys):
    library = tmp_path / "library"
    library.mkdir()
    (library / "bomb.png").write_bytes(png_bomb(12000, 9000))
    (library / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    recipe = write_recipe(
        tmp_path,
        f"""
        input: {{dir: {source}, max_episodes: 1}}
        output: {{dir: {tmp_path / "out"}}}
        segmentation: {{source: none, allow_no_masks: true}}
        background: {{source: images, path: {library}}}
        """,
    )
    assert run_cli("run", recipe, *IN_PROCESS) == 2
    message = one_line_error(capsys.readouterr().err)
    assert "background.path: none of the 2 file(s)" in message and "bomb.png: its header says 108000000 pixels" in message
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------
# 11. Exit statuses and messages


SLOW_DOFN_JOB = """
import pathlib, sys, time
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipelines.signals import interruptible

marker = pathlib.Path(sys.argv[1])

def slow(x):
    marker.write_text("in the DoFn")
    time.sleep(120)
    return x

with interruptible() as stop:
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as pipeline:
        _ = pipeline | beam.Create([1]) | beam.Map(slow)
if stop:
    print(f"error: {stop.message}", file=sys.stderr)
    sys.exit(stop.exit_status)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_that_arrives_inside_a_dofn_exits_128_plus_its_number(signum, tmp_path):
    """The in-memory runner runs DoFns in the main thread, where the signal lands; Beam
    re-raises what a DoFn raised as its own exception: the exit status must survive that."""
    script = tmp_path / "job.py"
    script.write_text(SLOW_DOFN_JOB)
    marker = tmp_path / "marker"
    process = subprocess.Popen(
        [sys.executable, str(script), str(marker)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), process.communicate()[1][-3000:]
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"error: interrupted by {signal.Signals(signum).name}: the run did not finish"


def test_a_recipe_that_is_not_utf8_is_exit_2_in_one_line(tmp_path, capsys):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("name: café\n".encode("latin-1"))
    assert run_cli("run", recipe, "--check") == 2
    assert one_line_error(capsys.readouterr().err) == f"error: {recipe}: not UTF-8 text (byte 0xe9 at offset 9)"


def test_duplicate_yaml_keys_are_refused_naming_key_and_line(tmp_path, bridge_dir, capsys):
    recipe = write_recipe(tmp_path, f"input: {{dir: {bridge_dir}}}\noutput: {{dir: {tmp_path}/o}}\nseed: 1\nseed: 2\n")
    assert run_cli("run", recipe, "--check") == 2
    assert "duplicate key 'seed' on line 4 (first on line 3)" in one_line_error(capsys.readouterr().err)
    assert run_cli("run", "configs/copy.yaml", "--set", "output={dir: a, dir: b}", "--check") == 2
    assert "--set output: the value" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("key", ["input.dir", "output.dir"])
def test_gs_paths_without_the_gcp_extra_are_exit_2_in_one_line(key, bridge_dir, tmp_path, capsys):
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem("gs://bucket/data")
    except ValueError:
        pass  # the gcp extra is not installed: the case under test
    else:
        pytest.skip("the gcp extra is installed: gs:// paths are readable")
    values = {"input.dir": str(bridge_dir), "output.dir": str(tmp_path / "o"), key: "gs://bucket/data/1.0.0"}
    assert run_cli("run", "configs/copy.yaml", *[a for k, v in values.items() for a in ("--set", f"{k}={v}")], "--check") == 2
    message = one_line_error(capsys.readouterr().err)
    assert f"{key}: no file system for gs:// paths is installed (install the gcp extra" in message
    assert run_cli("inspect", "gs://bucket/data/1.0.0") == 2
    assert "gcp extra" in one_line_error(capsys.readouterr().err)


def test_a_missing_features_json_is_named(source, tmp_path, capsys):
    (source / "features.json").unlink()
    assert run_cli("inspect", source) == 2
    assert f"{source}: features.json is missing" in one_line_error(capsys.readouterr().err)
    assert run_cli("run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={tmp_path / 'o'}") == 2
    assert "features.json is missing" in one_line_error(capsys.readouterr().err)


def test_a_missing_shard_file_is_named_in_its_episodes_failures(source, tmp_path):
    # Two shards per split, as dataset_info.json says; the second train shard is gone.
    info = json.loads((source / "dataset_info.json").read_text())
    for split in info["splits"]:
        split["shardLengths"] = ["13", "12"]
    (source / "dataset_info.json").write_text(json.dumps(info))
    for name in (TRAIN, VAL):
        data = records(source / name)
        stem = name.replace("-00000-of-00001", "")
        write_records(source / f"{stem}-00000-of-00002", data[:13])
        write_records(source / f"{stem}-00001-of-00002", data[13:])
        (source / name).unlink()
    missing = source / "bridge_dataset-train.tfrecord-00001-of-00002"
    missing.unlink()
    out = tmp_path / "out"
    assert run_cli("run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}", *IN_PROCESS) == 1
    failures = read_failures(out)
    assert [f["key"] for f in failures] == [f"train/{i:06d}" for i in range(13, 25)]
    assert {f["reason"] for f in failures} == {f"shard file {missing} is missing (named in dataset_info.json)"}
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 13, "val": 25}


# ---------------------------------------------------------------------------------------
# 12. keep_objects without object masks is said, not done silently


def test_keep_objects_without_object_masks_is_warned_before_the_run_and_in_the_report(tmp_path, capsys):
    dataset = oxe_schemas.write_dataset(oxe_schemas.BY_NAME["berkeley_autolab_ur5"], tmp_path / "masked", with_masks=True)
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path,
        f"""
        input: {{dir: {dataset}}}
        output: {{dir: {out}, previews: 0}}
        segmentation: {{source: dataset, keep_objects: true}}   # robot masks only in this dataset
        background: {{source: procedural}}
        """,
    )
    assert run_cli("run", recipe, "--check") == 0
    checked = capsys.readouterr().err
    assert "warning: segmentation.keep_objects: true" in checked and "camera(s) hand_image, image" in checked
    assert "sam3" in checked and "_object_mask" in checked

    assert run_cli("run", recipe, *IN_PROCESS) == 0
    assert "warning: segmentation.keep_objects" in capsys.readouterr().err
    (warning,) = read_report(out)["warnings"]
    assert "no task-object masks for camera(s) hand_image, image" in warning
    html = (out / "report.html").read_text()
    assert 'id="warnings"' in html and "no task-object masks for camera(s) hand_image, image" in html

    # keep_objects: false, or a background that keeps the scene: nothing to warn about.
    for override in ("segmentation.keep_objects=false", "background={source: original}"):
        assert run_cli("run", recipe, "--set", override, "--set", "output.overwrite=true", "--check") == 0
        assert "warning" not in capsys.readouterr().err


def test_a_diffusion_model_folder_may_name_only_diffusers_and_transformers_classes(tmp_path):
    """diffusers imports the library each component of model_index.json names: a stranger's folder names no other."""
    from backgrounds.base import BackgroundConfigError
    from backgrounds.diffusion import DiffusionInpaintBackground, DiffusionOptions
    from tests.tiny_inpaint_pipeline import save_tiny_sd_inpaint

    folder = save_tiny_sd_inpaint(tmp_path / "sd")
    source = DiffusionInpaintBackground(DiffusionOptions(model=str(folder)))
    source.check()
    index = json.loads((folder / "model_index.json").read_text())
    for planted in (["os", "system"], ["my_module", "Anything"], ["diffusers", "__class__"]):
        (folder / "model_index.json").write_text(json.dumps({**index, "safety_checker": planted}))
        with pytest.raises(BackgroundConfigError, match=f"{folder}: model_index.json component 'safety_checker'"):
            source.check()
    # diffusers' own pipeline modules are fine (Stable Diffusion's released index names its safety checker so).
    (folder / "model_index.json").write_text(
        json.dumps({**index, "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]})
    )
    source.check()
