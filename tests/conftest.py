"""Shared fixtures: the real Bridge RLDS dataset, a generated sample dataset, the CLI."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

# Before any test module imports TensorFlow: pipelines imports triton first, since triton
# imported after TensorFlow segfaults (see pipelines/__init__.py).
import pipelines  # noqa: F401,E402

# albumentations asks PyPI for a newer version on import; tests never touch the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = pathlib.Path(__file__).resolve().parents[1]
BRIDGE = REPO.parent / "shared" / "data" / "bridge_dataset" / "1.0.0"

# Tests run Beam in one process: the same FnApiRunner the default multi-process mode
# uses, without the per-run cost of starting worker processes. One test covers the
# multi-process mode explicitly.
IN_PROCESS = ["--", "--runner=DirectRunner", "--direct_running_mode=in_memory"]


def pytest_collection_modifyitems(config, items):
    """The slow learning tests first: pytest-xdist hands tests out in this order, so each
    long one starts at once on its own core while the other cores work through the rest."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def one_torch_thread():
    """Tiny networks gain nothing from threads; on two shared cores extra ones spin-wait."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bridge_dir() -> pathlib.Path:
    if not (BRIDGE / "dataset_info.json").exists():
        pytest.fail(f"the shared Bridge dataset is missing at {BRIDGE}")
    return BRIDGE


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> pathlib.Path:
    """A small rendered dataset with exact robot label maps (2 cameras, 3 robots)."""
    from pipelines.sample_data import write_sample_dataset

    out = tmp_path_factory.mktemp("sample") / "oxe_augment_sample" / "1.0.0"
    return write_sample_dataset(
        out, episodes=3, steps=6, size=64, robots=["panda", "kuka", "xarm"], cameras=2, wrist=False, seed=0
    )


def run_cli(*argv: str) -> int:
    """Run ``oxe-augment`` in this process; returns the exit status."""
    from pipelines.cli import main

    return main([str(a) for a in argv])


def read_report(output_dir) -> dict:
    with open(os.path.join(output_dir, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def read_failures(output_dir) -> list[dict]:
    with open(os.path.join(output_dir, "failures.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
