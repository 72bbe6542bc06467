"""Stopping a run: SIGTERM of the launcher leaves a short message and the previous output intact.

(Killing an SDK worker mid-run is in ``test_portable_runner.py``: it needs the worker pool.)
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import tensorflow_datasets as tfds

from tests.conftest import IN_PROCESS, REPO, run_cli

OXE_AUGMENT = str(pathlib.Path(sys.executable).with_name("oxe-augment"))
DEMO = str(REPO / "configs" / "demo.yaml")


def tree_hash(folder: pathlib.Path) -> str:
    """One hash over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_interruptible_turns_sigterm_into_a_short_message_and_ends_children(tmp_path):
    """pipelines.signals on its own: a child process sleeping in the block is SIGTERMed."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
        import subprocess, sys, time
        from pipelines.signals import interruptible

        with interruptible() as stop:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            print(child.pid, flush=True)
            time.sleep(60)
        if stop:
            print(f"error: {stop.message}", file=sys.stderr)
            sys.exit(stop.exit_status)
        """
        )
    )
    process = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child_pid = int(process.stdout.readline())
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip() == "error: interrupted by SIGTERM: the run did not finish"
    # The child was ended (and reaped by psutil's wait), not orphaned.
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{child_pid}") or "Z" in open(f"/proc/{child_pid}/stat").read().split()[2]


def test_sigterm_of_the_launcher_keeps_the_previous_output(sample_dir, tmp_path):
    out = tmp_path / "out"
    recipe_args = ["run", DEMO, "--set", f"input.dir={sample_dir}", "--set", f"output.dir={out}"]
    assert run_cli(*recipe_args, *IN_PROCESS) == 0
    dataset = out / "oxe_augment_sample" / "1.0.0"
    before = tree_hash(out)
    listing = set(tmp_path.rglob("*"))

    # The same recipe again (overwrite: true), stopped as soon as it has started writing.
    process = subprocess.Popen(
        [OXE_AUGMENT, *recipe_args, *IN_PROCESS],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"),
    )
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        if set(tmp_path.rglob("*")) - listing:  # a scratch or work folder appeared: Beam is running
            break
        time.sleep(0.05)
    assert process.poll() is None, "the second run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode != 0
    assert "SIGTERM" in stderr, stderr[-2000:]
    assert len(stderr.strip().splitlines()) <= 3, f"not a short message:\n{stderr[-3000:]}"
    assert tree_hash(out) == before, "the previous output changed"
    builder = tfds.builder_from_directory(str(dataset))
    assert builder.info.splits["train"].num_examples == 6
