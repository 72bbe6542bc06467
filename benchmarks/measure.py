"""Run a command and measure its wall time and peak memory (the whole process tree)."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OXE_AUGMENT = os.path.join(os.path.dirname(sys.executable), "oxe-augment")


@dataclasses.dataclass
class Measurement:
    command: list[str]
    returncode: int
    wall_seconds: float
    peak_rss_mb: float  # peak of the summed RSS of the process and all its children
    launcher_peak_rss_mb: float = 0.0  # peak RSS of the process itself (the launcher), without its children
    output: str = ""  # stdout and stderr together
    # user + system CPU time of the process and every descendant it waited for (Beam's
    # workers included): unlike wall time, hardly changed by other work on a shared machine.
    cpu_seconds: float = 0.0


def measure(command: list[str], poll_seconds: float = 0.2) -> Measurement:
    """Run ``command`` to completion, sampling the tree's memory every ``poll_seconds``."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = launcher_peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, launcher_peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
                launcher_peak = max(launcher_peak, root.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(poll_seconds)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode not in (0,):
        print(output[-4000:], file=sys.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = time.perf_counter() - start
    return Measurement(command, process.returncode, wall, peak / 2**20, launcher_peak / 2**20, output, cpu)


def run_recipe(recipe: str, overrides: list[str], beam_args: list[str] | None = None) -> tuple[Measurement, dict]:
    """``oxe-augment run`` a recipe; returns the measurement and its report.json."""
    command = [OXE_AUGMENT, "run", recipe]
    for override in overrides:
        command += ["--set", override]
    if beam_args:
        command += ["--", *beam_args]
    result = measure(command)
    output_dir = next(o.split("=", 1)[1] for o in overrides if o.startswith("output.dir="))
    with open(os.path.join(output_dir, "report.json"), encoding="utf-8") as f:
        return result, json.load(f)


def summary(runs: list[Measurement]) -> dict:
    """Medians and every value of wall time, peak memory (all processes) and launcher peak."""
    walls = [round(r.wall_seconds, 2) for r in runs]
    peaks = [round(r.peak_rss_mb) for r in runs]
    launchers = [round(r.launcher_peak_rss_mb) for r in runs]
    cpus = [round(r.cpu_seconds, 2) for r in runs]
    return {
        "wall_seconds": statistics.median(walls),
        "cpu_seconds": statistics.median(cpus),
        "all_cpu_seconds": cpus,
        "peak_rss_mb": statistics.median(peaks),
        "launcher_peak_rss_mb": statistics.median(launchers),
        "all_wall_seconds": walls,
        "all_peak_rss_mb": peaks,
        "all_launcher_peak_rss_mb": launchers,
    }


def ratios(label: str, measured: dict, reference: dict) -> dict:
    """``measured / reference`` of two :func:`summary` results (wall, CPU, peak, launcher peak), printed on one line."""
    fields = (
        ("wall", "wall_seconds"),
        ("cpu", "cpu_seconds"),
        ("peak_rss", "peak_rss_mb"),
        ("launcher_peak_rss", "launcher_peak_rss_mb"),
    )
    result = {key: round(measured[field] / reference[field], 3) for key, field in fields if reference.get(field)}
    print(
        f"{label} wall {result['wall']:.2f}x ({measured['wall_seconds']} s / {reference['wall_seconds']} s), "
        f"CPU {result.get('cpu', 0):.2f}x ({measured.get('cpu_seconds')} s / {reference.get('cpu_seconds')} s), "
        f"peak memory {result['peak_rss']:.2f}x ({measured['peak_rss_mb']} MB / {reference['peak_rss_mb']} MB)",
        flush=True,
    )
    return result


def write_results(name: str, results: dict) -> str:
    """Write ``benchmarks/results/<name>.json`` with the machine it ran on."""
    path = os.path.join(REPO, "benchmarks", "results", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    results = {
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        **results,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    return path
