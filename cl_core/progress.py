"""Progress within a task, for single runs: a bar on a terminal, a line every N steps in a log.

A task of the vdv presets is thousands of steps and minutes on a CPU; without this the command
line is silent all that time. The trainer calls ``progress.task(...)`` once per task and
``update()`` once per optimizer step; nothing here syncs with the device unless a log line is
written (then the running loss is read once). Sweeps pass no progress: Ray's reporter and the
per-trial lines speak for them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

MODES = ("auto", "bar", "log", "off")
"""auto: a bar when stderr is a terminal, else log lines; off: nothing within a task."""
LOG_EVERY = 500
"""Default number of steps between two log lines."""


class TaskProgress:
    """One task's progress: ``update()`` after each optimizer step."""

    def update(self, loss: Callable[[], float] | None = None) -> None:
        """One more step; ``loss`` returns the running mean loss, called only when shown."""


class _Bar(TaskProgress):
    def __init__(self, bar) -> None:
        self.bar = bar

    def update(self, loss: Callable[[], float] | None = None) -> None:
        self.bar.update(1)


class _Lines(TaskProgress):
    """A line every ``every`` steps and at the end: step, share, rate, running loss."""

    def __init__(self, label: str, total: int, every: int, stream: TextIO) -> None:
        self.label, self.total, self.every, self.stream = label, total, every, stream
        self.steps = 0
        self.start = time.perf_counter()

    def update(self, loss: Callable[[], float] | None = None) -> None:
        self.steps += 1
        if self.steps % self.every and self.steps != self.total:
            return
        seconds = time.perf_counter() - self.start
        text = (
            f"{self.label}: step {self.steps}/{self.total} ({100 * self.steps / self.total:.0f}%),"
            f" {seconds:.1f} s, {self.steps / max(seconds, 1e-9):.0f} steps/s"
        )
        if loss is not None:
            text += f", loss {loss():.4f}"
        print(text, file=self.stream, flush=True)


class Progress:
    """Makes the progress display of each task of a run (see the module docstring)."""

    def __init__(self, mode: str = "auto", every: int = LOG_EVERY, stream: TextIO | None = None):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}; use one of {MODES}")
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.mode, self.every = mode, max(1, every)

    @contextmanager
    def task(self, task: int, n_tasks: int, total: int) -> Iterator[TaskProgress]:
        """The progress of task ``task`` (0-based) of ``n_tasks``, ``total`` steps long."""
        label = f"task {task + 1}/{n_tasks}"
        if self.mode == "off":
            yield TaskProgress()
        elif self.mode == "log":
            yield _Lines(label, total, self.every, self.stream)
        else:
            from tqdm import tqdm

            with tqdm(
                total=total, desc=label, unit="step", file=self.stream, leave=False, ncols=90
            ) as bar:
                yield _Bar(bar)
