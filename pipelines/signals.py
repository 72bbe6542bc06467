"""Stopping a run cleanly on SIGTERM or Ctrl-C.

A batch scheduler (SLURM, Kubernetes, a preempted VM) stops a job with SIGTERM; a person
stops it with Ctrl-C. Python's default for SIGTERM kills the process without unwinding,
so no ``finally`` runs, Beam's worker processes are orphaned and the user sees nothing.
:func:`interruptible` turns both signals into a normal exit: the block is left by an
exception (so every ``finally`` and context manager on the way out runs, e.g. the
scratch output folder is removed and the previous output stays where it is), this
process's child processes (Beam's local workers) are ended, and the caller gets a short
message and an exit status.

How the CLI uses it::

    from pipelines.signals import interruptible

    with interruptible() as stop:
        report = pipeline()
    if stop:
        print(f"error: {stop.message}", file=sys.stderr)
        return stop.exit_status        # 128 + signal number: 143 for SIGTERM, 130 for Ctrl-C

A second signal while the first is being handled kills the process the default way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
from typing import Iterator

log = logging.getLogger("oxe_augment")

_HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a handled signal arrives.

    A ``KeyboardInterrupt`` so that code which already lets Ctrl-C through (Beam's
    runners, TFDS's writer, ``except Exception`` blocks) lets SIGTERM through too.
    """

    def __init__(self, signum: int | str):
        # Beam re-raises an exception from a DoFn as ``type(exn)(message + " [while running
        # 'step']")``; the message starts with the signal's name, so the signal survives.
        if isinstance(signum, str):
            name = signum.split(" ", 1)[0]
            signum = signal.Signals[name] if name in signal.Signals.__members__ else signal.SIGTERM
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


@dataclasses.dataclass
class Stop:
    """What :func:`interruptible` yields; true once the block was stopped by a signal."""

    signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum if self.signum is not None else 0

    @property
    def message(self) -> str:
        return f"interrupted by {self.signal_name}: the run did not finish"


@contextlib.contextmanager
def interruptible(end_children: bool = True) -> Iterator[Stop]:
    """Run the block so that SIGTERM and SIGINT end it cleanly (see the module docstring).

    Outside the main thread (where Python cannot install signal handlers) the block runs
    unchanged. ``end_children`` terminates this process's child processes after the
    block was stopped: the DirectRunner's worker processes would otherwise outlive it.
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        # The first signal unwinds the block; a second one must still be able to kill a
        # run that hangs while unwinding.
        for handled in _HANDLED:
            signal.signal(handled, signal.SIG_DFL)
        # Noted before raising: whatever the exception becomes on its way out (a library
        # may wrap it in its own error), the block was stopped by this signal.
        stop.signum = signum
        raise Interrupted(signum)

    previous = {handled: signal.signal(handled, handler) for handled in _HANDLED}
    try:
        yield stop
    except Interrupted as interrupt:
        stop.signum = interrupt.signum
    except KeyboardInterrupt:  # Ctrl-C raised by Python's own handler, before ours was in place
        stop.signum = signal.SIGINT
    except BaseException:
        if not stop:
            raise
        log.info("the interrupt reached the block as another exception", exc_info=True)
    finally:
        for handled, handler_before in previous.items():
            signal.signal(handled, handler_before)
    if stop and end_children:
        end_child_processes()


def end_child_processes(grace_seconds: float = 5.0) -> int:
    """Terminate this process's descendants (then kill those still alive); returns how many."""
    import psutil

    try:
        children = psutil.Process(os.getpid()).children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_seconds)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    if children:
        log.info("ended %d child process(es) after the interrupt", len(children))
    return len(children)
