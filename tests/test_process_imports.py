"""Processes that run the pipeline survive TensorFlow and torch's compiler in one process."""

from __future__ import annotations

import subprocess
import sys

from tests.tiny_inpaint_pipeline import save_tiny_sd_inpaint


def run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def test_diffusion_model_loads_in_a_process_that_read_tfds_first(tmp_path):
    """What a Beam worker does: import our pipelines, read TFDS (TensorFlow), load diffusers."""
    folder = save_tiny_sd_inpaint(tmp_path / "sd")
    done = run_python(
        "import pipelines.rlds_io\n"
        "import tensorflow\n"
        "import torch._dynamo\n"
        "from backgrounds.diffusion import DiffusionInpaintBackground, DiffusionOptions\n"
        f"model = DiffusionInpaintBackground(DiffusionOptions(model={str(folder)!r}, steps=1)).load_model()\n"
        "print(type(model).__name__)\n"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("StableDiffusionInpaintPipeline")


def test_beams_inference_module_loads_without_torch_and_keeps_working():
    """pipelines/beam_imports.py: RunInference's module loads without its ModelManager (and
    torch); what it sets aside while doing so (``resource``) is back, and a model handler runs."""
    done = run_python(
        "import sys\n"
        "import pipelines.stages\n"
        "import apache_beam.ml.inference.base as base\n"
        "import resource\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert base.ModelManager is None and base.resource is resource\n"
        "print(base._get_current_process_memory_in_bytes() > 0)\n"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("True")
