"""What a person sees while a run works: the tool's own lines and one progress line.

Three pieces:

* :func:`quiet_native_output` sends everything written to the process's file descriptors
  1 and 2 (TensorFlow's and absl's C++ start-up lines, the lines Beam's worker processes
  print, TFDS's bars) to a log file, and yields a :class:`Console` that still writes to
  the real terminal. ``-v`` skips it.
* :class:`ProgressMonitor`, a thread in the launcher, sums the totals the workers publish
  (``pipelines.records.WriteRecords`` writes one small JSON file per worker) and shows
  them: episodes done of the total, frames/s over a sliding window, failures, ETA.
* :class:`Console` draws that as one live line on a terminal, or as a plain line every
  ``every_seconds`` elsewhere (CI, a log file).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import os
import sys
import threading
import time
from typing import IO, Iterator

from pipelines import filesystems


class Console:
    """The tool's own output: plain lines, and a progress line that redraws on a terminal."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = 0  # characters of the live line on screen

    def line(self, text: str) -> None:
        """Print one line (clearing a live progress line first)."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, text: str, final: bool = False) -> None:
        """Show the progress line: redrawn in place on a terminal, else one line each call."""
        if not self.live:
            self.line(text)
            return
        self._clear()
        self.stream.write(text)
        self._drawn = len(text)
        if final:
            self.stream.write("\n")
            self._drawn = 0
        self.stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0


@contextlib.contextmanager
def quiet_native_output(log_path: str) -> Iterator[Console]:
    """Redirect file descriptors 1 and 2 (this process and its children) to ``log_path``.

    Yields a :class:`Console` on the real standard error. Python-level ``sys.stdout`` and
    ``sys.stderr`` follow the descriptors, so they go to the log too while the block runs.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = io.TextIOWrapper(os.fdopen(os.dup(saved_err), "wb", buffering=0), write_through=True)
    console = Console(terminal)
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            console._clear()
            terminal.close()


@dataclasses.dataclass
class Totals:
    episodes: int = 0
    failed: int = 0
    frames: int = 0


def read_totals(progress_dir: str) -> Totals:
    """The sum of every worker's published totals (files may be mid-write: skipped)."""
    totals = Totals()
    for path in filesystems.list_paths(filesystems.join(progress_dir, "*.json")):
        try:
            values = json.loads(filesystems.read_bytes(path))
        except (ValueError, OSError):
            continue
        totals.episodes += values["episodes"]
        totals.failed += values["failed"]
        totals.frames += values["frames"]
    return totals


class ProgressMonitor:
    """Shows the run's progress from the workers' published totals, in a thread.

    ``expected`` is the number of input episodes; the rate is frames per second over the
    last ``window_seconds``, the ETA the remaining episodes at the recent episode rate.
    """

    def __init__(self, progress_dir: str, expected: int, console: Console, every_seconds: float, window_seconds: float = 30.0):
        self._dir = progress_dir
        self._expected = expected
        self._console = console
        self._every = 0.5 if console.live else every_seconds
        self._window = window_seconds
        self._history: collections.deque[tuple[float, Totals]] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oxe-augment-progress", daemon=True)
        self._start = time.monotonic()
        self._shown = ""

    def __enter__(self) -> "ProgressMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.show()
        if self._shown:
            self.show(final=True)

    def show(self, final: bool = False) -> str:
        """Read the totals and draw the line; returns it."""
        now = time.monotonic()
        totals = read_totals(self._dir)
        self._history.append((now, totals))
        while len(self._history) > 2 and now - self._history[0][0] > self._window:
            self._history.popleft()
        text = self.describe(totals, now, final)
        if text != self._shown or final:
            self._console.progress(text, final=final)
            self._shown = text
        return text

    def describe(self, totals: Totals, now: float, final: bool) -> str:
        elapsed = now - self._start
        then, before = self._history[0]
        span = now - then
        if final or span < 1.0:
            rate, episode_rate = totals.frames / max(elapsed, 1e-9), totals.episodes / max(elapsed, 1e-9)
        else:
            rate = (totals.frames - before.frames) / span
            episode_rate = (totals.episodes - before.episodes) / span
        remaining = max(0, self._expected - totals.episodes)
        if totals.episodes >= self._expected:
            eta = "writing shards" if not final else f"done in {elapsed:.0f} s"
        elif episode_rate > 0:
            eta = f"ETA {_duration(remaining / episode_rate)}"
        else:
            eta = "ETA --"
        width = 20
        filled = int(width * min(1.0, totals.episodes / max(1, self._expected)))
        bar = f"[{'#' * filled}{'.' * (width - filled)}] " if self._console.live else ""
        return (
            f"{bar}{totals.episodes}/{self._expected} episodes, {totals.failed} failed, "
            f"{totals.frames} frames, {rate:.1f} frames/s, {eta}"
        )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
