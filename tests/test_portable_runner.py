"""Beam's portable runner: the worker harness Flink, Spark and Dataflow run our code in.

The test starts Beam's job service and an external SDK worker pool on localhost (the pool
with its own working folder, so a worker cannot lean on the launcher's), runs the demo
recipe through ``oxe-augment run ... -- --runner=PortableRunner`` in a subprocess with
relative paths, and compares the result with the in-process DirectRunner's output of the
same recipe, byte for byte. A second test kills the SDK worker process mid-run.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import IN_PROCESS, REPO, read_failures, read_report, run_cli

OXE_AUGMENT = str(pathlib.Path(sys.executable).with_name("oxe-augment"))
DEMO = str(REPO / "configs" / "demo.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: pathlib.Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("localhost", port), timeout=1):
            return
        time.sleep(0.3)
    pytest.fail(f"nothing listens on port {port} after {timeout} s:\n{log.read_text()[-3000:]}")


def stop_group(process: subprocess.Popen) -> None:
    """End a process we started in its own session, and everything it started."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # workers left behind in the group
        os.killpg(process.pid, signal.SIGKILL)


def child_env() -> dict[str, str]:
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", TF_CPP_MIN_LOG_LEVEL="2")
    # The worker pool starts SDK workers as plain `python`: it must be this project's.
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)  # the workers get our packages from the install, not the tests' path
    return env


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    """A job service and an external worker pool; yields (job port, pool port, pool process)."""
    folder = tmp_path_factory.mktemp("portable_services")
    worker_cwd = folder / "worker_cwd"  # not the launcher's working folder
    worker_cwd.mkdir()
    job_port, pool_port = free_port(), free_port()
    processes = []
    try:
        for name, module, args, cwd in [
            ("job_service", "apache_beam.runners.portability.local_job_service_main", ["--port", str(job_port)], folder),
            ("worker_pool", "apache_beam.runners.worker.worker_pool_main", ["--service_port", str(pool_port)], worker_cwd),
        ]:
            log = folder / f"{name}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=cwd,
                env=child_env(),
                start_new_session=True,
                stdout=open(log, "wb"),
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            wait_for_port(int(args[1]), process, log)
        yield job_port, pool_port, processes[1]
    finally:
        for process in processes:
            stop_group(process)


def portable_args(job_port: int, pool_port: int) -> list[str]:
    return [
        "--runner=PortableRunner",
        f"--job_endpoint=localhost:{job_port}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{pool_port}",
        "--default_sdk_harness_log_level=WARNING",
    ]


def launch(launcher_cwd: pathlib.Path, sample_dir: pathlib.Path, out: str, beam_args: list[str]) -> subprocess.Popen:
    """``oxe-augment run configs/demo.yaml`` from ``launcher_cwd``, paths relative to it."""
    command = [
        OXE_AUGMENT,
        "run",
        DEMO,
        "--set",
        f"input.dir={os.path.relpath(sample_dir, launcher_cwd)}",
        "--set",
        f"output.dir={out}",
        "--",
        *beam_args,
    ]
    return subprocess.Popen(command, cwd=launcher_cwd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def dataset_files(dataset: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(dataset.iterdir()) if ".tfrecord" in p.name or p.name == "features.json"}


@pytest.fixture(scope="module")
def direct_output(sample_dir, tmp_path_factory):
    """The same recipe in this process. ``input.dir`` is part of the recipe's hash, which
    every episode's provenance carries: it is given as the same relative path as for the
    portable runs (every launcher folder sits at the same depth under pytest's basetemp)."""
    launcher_cwd = tmp_path_factory.mktemp("direct")
    with contextlib.chdir(launcher_cwd):
        status = run_cli("run", DEMO, "--set", f"input.dir={os.path.relpath(sample_dir)}", "--set", "output.dir=out", *IN_PROCESS)
    assert status == 0
    return launcher_cwd / "out"


@pytest.fixture(scope="module")
def portable_output(portable, sample_dir, tmp_path_factory):
    job_port, pool_port, _ = portable
    launcher_cwd = tmp_path_factory.mktemp("launcher")
    process = launch(launcher_cwd, sample_dir, "out", portable_args(job_port, pool_port))
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, f"portable run failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    return launcher_cwd / "out"


def test_portable_runner_writes_the_same_shards_as_the_direct_runner(direct_output, portable_output):
    name = "oxe_augment_sample/1.0.0"
    expected = dataset_files(direct_output / name)
    written = dataset_files(portable_output / name)
    assert any(".tfrecord" in f for f in expected)
    assert sorted(written) == sorted(expected)
    for file_name in expected:
        assert written[file_name] == expected[file_name], f"{file_name} differs between runners"


def test_portable_runner_accounts_and_previews(direct_output, portable_output, sample_dir):
    import tensorflow_datasets as tfds

    report = read_report(portable_output)
    assert (report["episodes_in"], report["episodes_written"], report["episodes_failed"]) == (3, 3, 0)
    assert report["output_episodes"] == 6  # 2 variants
    assert report["frames"] == 3 * 6 * 2
    assert report["splits"]["train"]["episodes_written"] == 3
    assert read_failures(portable_output) == []
    # The recipe's relative output.dir resolved against the launcher's folder, not the workers'.
    assert report["output_dataset"] == str(portable_output / "oxe_augment_sample" / "1.0.0")
    previews = sorted(p.name for p in (portable_output / "previews").iterdir())
    assert previews == sorted(p.name for p in (direct_output / "previews").iterdir())
    assert len(previews) == 3 * 2 * 2  # episodes x cameras x (png, gif)
    builder = tfds.builder_from_directory(str(portable_output / "oxe_augment_sample" / "1.0.0"))
    assert builder.info.splits["train"].num_examples == 6


def sdk_workers(pool: subprocess.Popen) -> list[psutil.Process]:
    """The pool's live SDK worker processes (finished ones linger as zombies until reaped)."""
    workers = []
    for process in psutil.Process(pool.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE and "SdkHarness" in " ".join(process.cmdline()):
                workers.append(process)
    return workers


def test_killing_an_sdk_worker_mid_run_fails_cleanly_or_completes_exactly(portable, direct_output, sample_dir, tmp_path):
    job_port, pool_port, pool = portable
    before = {p.pid for p in sdk_workers(pool)}
    out = tmp_path / "out"
    process = launch(tmp_path, sample_dir, "out", portable_args(job_port, pool_port))
    killed = None
    deadline = time.monotonic() + 240
    # Kill the job's worker once it has composed an episode (a preview is written).
    while process.poll() is None and killed is None and time.monotonic() < deadline:
        started = [p for p in sdk_workers(pool) if p.pid not in before]
        if started and any(p.suffix in (".png", ".gif") for p in out.rglob("*")):
            started[0].kill()
            killed = started[0].pid
        time.sleep(0.1)
    stdout, stderr = process.communicate(timeout=300)
    dataset = out / "oxe_augment_sample" / "1.0.0"
    print(f"worker killed: {killed}; launcher exit status {process.returncode}")
    if process.returncode == 0:
        # The runner retried the lost work: exact counts and the same bytes.
        report = read_report(out)
        assert (report["episodes_in"], report["episodes_written"], report["episodes_failed"]) == (3, 3, 0)
        assert dataset_files(dataset) == dataset_files(direct_output / "oxe_augment_sample" / "1.0.0")
        return
    assert killed is not None, f"the run failed before the worker was killed:\n{stderr[-3000:]}"
    assert process.returncode == 1
    assert "error: the job failed" in stderr
    # Nothing TFDS would load as a complete dataset.
    assert not (dataset / "dataset_info.json").exists()
    assert not (out / "report.json").exists()
