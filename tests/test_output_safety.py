"""The output folder and merge under attack or misuse (issue 21, items 3-7).

A leftover commit marker names only what a run owns; without ``overwrite`` nothing in
``output.dir`` is touched; a run that wrote nothing never replaces anything; one run at a
time per ``output.dir``; ``merge`` copies and verifies every shard, merges only parts of
one recipe, and swaps its reports and previews in together.

Real command line, real DirectRunner, real copies of the shared Bridge dataset.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import IN_PROCESS, REPO, read_failures, read_report, run_cli
from tests.test_data_safety import load_every_episode, tree_hash

SHARD = "bridge_dataset-train.tfrecord-00000-of-00001"


@pytest.fixture
def source(bridge_dir, tmp_path) -> pathlib.Path:
    """A private copy of Bridge, free to damage."""
    path = tmp_path / "data" / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_dir, path)
    return path


def copy(source, out, *sets: str) -> int:
    """``oxe-augment run configs/copy.yaml`` (which has ``output.overwrite: true``)."""
    args = ["run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}"]
    for s in sets:
        args += ["--set", s]
    return run_cli(*args, *IN_PROCESS)


def cli_command(*argv: str) -> list[str]:
    command = [str(REPO / ".venv" / "bin" / "oxe-augment"), *argv]
    if not os.path.exists(command[0]):
        command[0:1] = [sys.executable, "-m", "pipelines.cli"]
    return command


def start_copy(source, out, *sets: str) -> subprocess.Popen:
    """A copy run in its own process (and session), returned once it writes into its scratch folder."""
    argv = ["run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}"]
    for s in sets:
        argv += ["--set", s]
    process = subprocess.Popen(
        cli_command(*argv, *IN_PROCESS), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(any(p.rglob("*")) for p in out.glob(".oxe-augment-run-*")):
            return process
        time.sleep(0.05)
    process.kill()
    pytest.fail("the run never started writing")


# ---------------------------------------------------------------------------------------
# 3. Recovery acts only on names a run owns, inside output.dir


@pytest.mark.parametrize("item", ["../victim", "<absolute victim>", "notes", "<scratch is a link>"])
def test_a_leftover_commit_marker_naming_anything_else_is_refused(source, tmp_path, item, capsys):
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "mine.txt").write_text("the user's notes")
    (out / "report.json").write_text("the user's report")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "mine.txt").write_text("outside output.dir")
    scratch = out / ".oxe-augment-run-0123456789ab"
    if item == "<scratch is a link>":
        # A stranger's folder: a marker that would move the user's report out of output.dir.
        (victim / "report.json").write_text("{}")
        (victim / "_COMMIT").write_text(json.dumps({"items": ["report.json"], "published": ["report.json"]}))
        scratch.symlink_to(victim)
        bad = str(scratch)
    else:
        # A marker as a run writes it, with one item more.
        bad = str(victim) if item == "<absolute victim>" else item
        scratch.mkdir()
        marker = {"run_id": "0123456789ab", "items": ["report.json", bad], "published": []}
        (scratch / "_COMMIT").write_text(json.dumps(marker))
    out_before, victim_before = tree_hash(out), tree_hash(victim)

    for check in ([], ["--check"]):
        status = run_cli(
            "run", "configs/copy.yaml", "--set", f"input.dir={source}", "--set", f"output.dir={out}",
            "--set", "input.max_episodes=1", *check, *IN_PROCESS,
        )  # fmt: skip
        assert tree_hash(victim) == victim_before and tree_hash(out) == out_before
        err = capsys.readouterr().err
        assert status == 2, err
        assert str(scratch) in err and bad in err and "Traceback" not in err


def test_the_swap_refuses_to_work_through_a_linked_dataset_folder(source, tmp_path, capsys):
    """output.dir/<name> pointing elsewhere: replacing <name>/<version> would move (then delete) what is outside."""
    elsewhere = tmp_path / "elsewhere"
    assert copy(source, elsewhere, "input.max_episodes=1") == 0
    before = tree_hash(elsewhere)
    out = tmp_path / "out"
    out.mkdir()
    (out / "bridge_dataset").symlink_to(elsewhere / "bridge_dataset")
    assert copy(source, out, "input.max_episodes=2") == 2
    err = capsys.readouterr().err
    assert f"{out}/bridge_dataset is a link" in err
    assert tree_hash(elsewhere) == before


# ---------------------------------------------------------------------------------------
# 4. Without overwrite, nothing that exists is touched


def test_without_overwrite_nothing_in_the_output_folder_is_touched(source, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "previews").mkdir(parents=True)
    (out / "previews" / "mine.png").write_bytes(b"the user's picture")
    for name in ("report.json", "report.html", "failures.jsonl"):
        (out / name).write_text(f"the user's {name}")
    before = tree_hash(out)
    assert copy(source, out, "input.max_episodes=1", "output.overwrite=false") == 2
    err = capsys.readouterr().err
    assert f"output.dir {out}: already exists: report.json, report.html, failures.jsonl, previews" in err
    assert "output.overwrite: true" in err
    assert tree_hash(out) == before and not list(out.glob(".oxe-augment*"))


# ---------------------------------------------------------------------------------------
# 5. A run that wrote nothing never replaces anything


def test_a_run_in_which_every_episode_fails_keeps_the_previous_dataset(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert copy(source, out, "input.max_episodes=2") == 0
    before = tree_hash(out)
    # Every episode fails now: the declared action shape disagrees with the records.
    features = json.loads((source / "features.json").read_text())
    steps = features["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    steps["action"]["tensor"]["shape"]["dimensions"] = ["6"]
    (source / "features.json").write_text(json.dumps(features))
    capsys.readouterr()

    assert copy(source, out, "input.max_episodes=2") == 1  # overwrite: true
    printed = capsys.readouterr().out
    (kept,) = out.glob("unpublished-*")
    assert "nothing was written" in printed and f"report: {kept}/report.json" in printed
    report = read_report(kept)
    assert (report["episodes_in"], report["episodes_written"], report["output_dataset"]) == (4, 0, "")
    assert len(read_failures(kept)) == 4 and (kept / "report.html").exists()
    shutil.rmtree(kept)
    assert tree_hash(out) == before
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 2, "val": 2}


# ---------------------------------------------------------------------------------------
# 6. One run at a time per output.dir


def test_a_second_run_into_a_busy_output_folder_exits_2_naming_the_first(source, tmp_path, capsys):
    out = tmp_path / "out"
    first = start_copy(source, out, "input.max_episodes=6")
    os.killpg(first.pid, signal.SIGSTOP)  # hold it mid-run, whatever the machine's speed
    try:
        scratch = sorted(out.glob(".oxe-augment-run-*"))
        assert copy(source, out, "input.max_episodes=1") == 2
        err = capsys.readouterr().err
        assert f"output.dir {out} is in use by another run (pid {first.pid} on {socket.gethostname()}" in err
        assert sorted(out.glob(".oxe-augment-run-*")) == scratch  # the first run's scratch is still there
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 6, "val": 6}
    assert not (out / ".oxe-augment.lock").exists()


def test_the_lock_of_a_killed_run_is_taken_over(source, tmp_path, capfd):
    out = tmp_path / "out"
    killed = start_copy(source, out, "input.max_episodes=6")
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert json.loads((out / ".oxe-augment.lock").read_text())["pid"] == killed.pid
    assert copy(source, out, "input.max_episodes=1") == 0
    assert f"taking over the lock {out}/.oxe-augment.lock: its run (pid {killed.pid}" in capfd.readouterr().err
    assert not (out / ".oxe-augment.lock").exists() and not list(out.glob(".oxe-augment-run-*"))
    assert load_every_episode(out / "bridge_dataset" / "1.0.0") == {"train": 1, "val": 1}


# ---------------------------------------------------------------------------------------
# 7. merge


@pytest.fixture(scope="module")
def three_parts(bridge_dir, tmp_path_factory) -> pathlib.Path:
    """Bridge (2 episodes per split) in 3 parts: part 0 holds all 4 episodes, parts 1 and 2 none."""
    out = tmp_path_factory.mktemp("three") / "out"
    for part in range(3):
        assert copy(bridge_dir, out, "input.max_episodes=2", f"input.part={part}/3") == 0
    return out


@pytest.fixture
def parts(three_parts, tmp_path) -> pathlib.Path:
    """A private copy of the three parts' output folder."""
    out = tmp_path / "out"
    shutil.copytree(three_parts, out)
    return out


def test_parts_without_episodes_are_finished_and_merge_writes_report_html(parts, capsys):
    assert not (parts / "parts" / "1-of-3" / "bridge_dataset").exists()  # nothing written: no dataset
    assert run_cli("merge", parts) == 0
    assert load_every_episode(parts / "bridge_dataset" / "1.0.0") == {"train": 2, "val": 2}
    report = read_report(parts)
    assert [p["part"] for p in report["parts"]] == ["0-of-3", "1-of-3", "2-of-3"]
    assert (report["episodes_in"], report["episodes_written"]) == (4, 4)
    assert "0-of-3" in (parts / "report.html").read_text() or "episodes" in (parts / "report.html").read_text()


def test_parts_of_different_recipes_are_not_merged_and_a_changed_part_is_not_skipped(parts, bridge_dir, capsys):
    report = parts / "parts" / "2-of-3" / "report.json"
    first_hash = json.loads(report.read_text())["recipe_sha256"]
    # The same part with another seed: not "already finished".
    assert copy(bridge_dir, parts, "input.max_episodes=2", "input.part=2/3", "seed=7", "output.overwrite=false") == 2
    assert "holds this part finished with a different recipe" in capsys.readouterr().err
    assert copy(bridge_dir, parts, "input.max_episodes=2", "input.part=2/3", "seed=7") == 0
    assert "skipped" not in capsys.readouterr().out
    assert json.loads(report.read_text())["recipe_sha256"] != first_hash
    # Rerun with the first recipe: finished, skipped.
    assert copy(bridge_dir, parts, "input.max_episodes=2", "input.part=1/3") == 0
    assert "already finished" in capsys.readouterr().out

    assert run_cli("merge", parts) == 2
    err = capsys.readouterr().err
    assert "different recipes (0-of-3, 1-of-3: recipe_sha256" in err and "2-of-3: recipe_sha256" in err
    assert not (parts / "bridge_dataset").exists() and not (parts / "report.json").exists()
