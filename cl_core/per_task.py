"""Per-task hyperparameter selection: the continual hyperparameter framework of De Lange et al.
2021 (TPAMI, "A continual learning survey: Defying forgetting in classification tasks",
Algorithm 1), which chooses hyperparameters as a continual learner could: at each task, on that
task's own validation data, before the next task arrives.

For each task t, from the state the run reached after task t-1:
1. Maximal plasticity search: fine-tune on task t with each learning rate of a coarse grid (the
   method's stability knob at 0, so its loss is the plain cross-entropy); A* is the best
   validation accuracy on task t, and η* its learning rate.
2. Stability decay: train task t with the method at η* and its stability knob H; if the
   validation accuracy on task t is at least (1 - p)·A*, keep it; else H ← α·H and train task t
   again from the same state, at most ``max_attempts`` times (the last attempt is kept).
The knob starts at the method's configured value H_max on the first task; each later task starts
one step above the value the previous task kept (H/α), as the reference implementation's
stability decay does before its first attempt. A method with several knobs (DER++'s α and β)
decays them together (the reference decays them one at a time, then together). Every attempt
starts from the same state and the same random streams, so the attempts differ only in H.

A run under this protocol is one configuration (M = 1) and costs up to len(lr_grid) +
max_attempts times the training of a plain run. With a checkpoint file it writes its state after
every task, the choices made so far with it, and a run that finds the file continues after the
last finished task with the numbers and choices of an uninterrupted run (the same device).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cl_core.checkpoint import remove_checkpoint, restore, snapshot
from cl_core.config import RunConfig
from cl_core.data import Dataset
from cl_core.errors import ClsweepError
from cl_core.methods import METHODS, get_method
from cl_core.progress import Progress
from cl_core.trainer import Round, Run, TaskReport
from cl_core.validation import validated

DEFAULT_LR_GRID = (1e-2, 5e-3, 1e-3, 5e-4, 1e-4)


@dataclass(frozen=True)
class PerTaskSettings:
    """The protocol's own settings: accuracy drop p, decay α, learning-rate grid, attempts."""

    drop: float = 0.2
    decay: float = 0.5
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    max_attempts: int = 10

    def protocol(self) -> dict:
        """What a checkpoint keeps of the protocol (``cl_core.trainer.Run``)."""
        return {"per-task selection": dataclasses.asdict(self)}

    def check(self) -> None:
        if not 0 <= self.drop <= 1:
            raise ClsweepError(f"per-task drop p must be in [0, 1], got {self.drop}")
        if not 0 < self.decay < 1:
            raise ClsweepError(f"per-task decay α must be in (0, 1), got {self.decay}")
        if not self.lr_grid or any(not lr > 0 for lr in self.lr_grid):
            raise ClsweepError(f"per-task lr_grid must list learning rates > 0: {self.lr_grid}")
        if self.max_attempts < 1:
            raise ClsweepError(f"per-task max_attempts must be >= 1, got {self.max_attempts}")


@dataclass
class TaskChoice:
    """What the protocol chose for one task, and every attempt that led there."""

    task: int
    lr: float  # η*
    finetune_acc: float  # A*: the best validation accuracy of the learning-rate grid
    threshold: float  # (1 - p)·A*
    values: dict[str, float]  # the stability knob(s) kept
    finetune: list[tuple[float, float]] = field(default_factory=list)  # (lr, val accuracy)
    attempts: list[tuple[dict[str, float], float]] = field(default_factory=list)


def stability_knobs(method: str) -> tuple[str, ...]:
    """The stability hyperparameters ``method`` declares; a usage error if it has none."""
    knobs = get_method(method).stability
    if not knobs:
        with_knob = sorted(
            f"{name} ({', '.join(cls.stability)})" for name, cls in METHODS.items() if cls.stability
        )
        raise ClsweepError(
            f"method {method!r} declares no stability hyperparameter, so per-task selection "
            f"has nothing to decay; methods that do: {'; '.join(with_knob)}"
        )
    return knobs


def per_task_run(
    cfg: RunConfig,
    dataset: Dataset | None = None,
    settings: PerTaskSettings = PerTaskSettings(),
    progress: Progress | None = None,
    checkpoint: Path | None = None,
) -> Iterator[tuple[Round, TaskChoice | None]]:
    """Train ``cfg`` under per-task selection; yields one round per task (round 0: the
    untrained model, with no choice) and the choice made for that task. With ``checkpoint``
    (a file path) a run continues from the file if it exists: the rounds before it are yielded
    again, with their choices."""
    settings.check()
    cfg = validated(cfg)
    knobs = stability_knobs(cfg.method)
    if cfg.stream != "none":
        raise ClsweepError("per-task selection needs task boundaries; use stream none")
    run = Run([cfg], dataset, progress, checkpoint=checkpoint, protocol=settings.protocol())
    values = {k: float(run.method.params[0][k]) for k in knobs}
    for reports in run.history:  # a resumed run: its rounds so far, each with its choice
        choice = reports[0].choice
        values = dict(choice.values) if choice is not None else values
        yield reports, choice
    if not run.history:
        untrained = run._evaluate(0, None, time.perf_counter(), iteration=0)
        untrained[0].choice = None
        yield run._record(untrained), None
    elif run.history[-1][0].status != "ok":
        return
    for task in range(len(run.history) - 1, run.n_tasks):
        before = snapshot(run)
        choice = _plasticity_search(run, task, before, knobs, settings)
        if task > 0:
            values = {k: v / settings.decay for k, v in values.items()}
        for attempt in range(settings.max_attempts):
            if attempt:
                restore(run, before)
            report = _learn_task(run, task, choice.lr, values)
            accuracy = _task_accuracy(report, task)
            choice.attempts.append((dict(values), accuracy))
            if accuracy >= choice.threshold or attempt == settings.max_attempts - 1:
                break
            values = {k: v * settings.decay for k, v in values.items()}
        choice.values = dict(values)
        report.choice = choice  # in the round, so that the checkpoint keeps it
        yield run._record({0: report}), choice
        if report.status != "ok":
            return


def per_task_train(
    cfg: RunConfig,
    dataset: Dataset | None = None,
    settings: PerTaskSettings = PerTaskSettings(),
    progress: Progress | None = None,
    checkpoint: Path | None = None,
    keep_checkpoint: bool = False,
) -> Iterator[TaskReport]:
    """:func:`per_task_run` as ``cl_core.trainer.train`` yields: one report per round, each
    report after a task carrying its :class:`TaskChoice` as ``choice`` (round 0: None). The
    checkpoint file is removed when the run ends unless ``keep_checkpoint``."""
    for reports, _ in per_task_run(cfg, dataset, settings, progress, checkpoint):
        yield reports[0]
    if checkpoint is not None and not keep_checkpoint:
        remove_checkpoint(checkpoint)


def describe_choice(choice: TaskChoice) -> str:
    """One line: what the protocol chose for a task, and how."""
    values = ", ".join(f"{k} {v:.4g}" for k, v in choice.values.items())
    tries = len(choice.attempts)
    return (
        f"task {choice.task}: lr {choice.lr:g} (fine-tuning reached {100 * choice.finetune_acc:.2f}"
        f"% on its validation data), {values} after {tries} attempt{'s' if tries > 1 else ''} "
        f"(threshold {100 * choice.threshold:.2f}%)"
    )


def _plasticity_search(
    run: Run, task: int, before: bytes, knobs: tuple[str, ...], settings: PerTaskSettings
) -> TaskChoice:
    """Phase 1: fine-tune ``task`` at each learning rate of the grid; keep the best."""
    off = dict.fromkeys(knobs, 0.0)
    best_lr, best = settings.lr_grid[0], -1.0
    tried = []
    for lr in settings.lr_grid:
        report = _learn_task(run, task, lr, off)
        accuracy = _task_accuracy(report, task)
        tried.append((lr, accuracy))
        if accuracy > best:  # the first of equals: the grid's order decides ties
            best_lr, best = lr, accuracy
        restore(run, before)
    threshold = (1 - settings.drop) * best
    return TaskChoice(task, best_lr, best, threshold, {}, finetune=tried)


def _learn_task(run: Run, task: int, lr: float, values: dict[str, float]) -> TaskReport:
    """One attempt at ``task``: learning rate ``lr``, the stability knobs at ``values``."""
    start = time.perf_counter()
    for name, value in values.items():
        run.method.set_hyperparam(name, [value])
    run.begin_task(task)
    run.optimizer.set_lr([lr])
    losses, diverged = run._learn(task, start)
    if diverged:
        return diverged[0]
    run.end_task(task)
    return run._evaluate(task + 1, losses, start, None)[0]


def _task_accuracy(report: TaskReport, task: int) -> float:
    """The validation accuracy on ``task`` (-1 for a diverged attempt: never chosen)."""
    if report.status != "ok":
        return -1.0
    value = float(report.val_acc[task])
    return value if value == value else -1.0  # NaN (no validation data) counts as no accuracy
