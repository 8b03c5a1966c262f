"""The trainer: learns a task sequence with a method, yields one report per task learned.

It owns the loop, optimizer, batching and evaluation; the method adds to it through its hooks.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cl_core import metrics
from cl_core.config import RunConfig
from cl_core.context import Batch, TrainContext
from cl_core.data import Dataset, build_tasks, load_dataset
from cl_core.errors import ClsweepError
from cl_core.methods import Method, get_method
from cl_core.models import ModelFactory
from cl_core.optim import make_optimizer
from cl_core.params import resolve
from cl_core.progress import Progress, TaskProgress

DIVERGENCE_CHECK_EVERY = 50  # steps between NaN/inf checks (each check syncs with the device)
MIN_STEPS_PER_TASK = 50
"""Fewer optimizer steps than this per task rarely learn it (e.g. 8x8 digits split in five
tasks, batch 128, 5 epochs: about 10 steps); the trainer warns."""


class FewStepsWarning(UserWarning):
    """A task gets too few optimizer steps to be learned; the message says how to get more."""


@dataclass
class TaskReport:
    """The state after ``tasks_learned`` tasks (0 = the untrained model)."""

    tasks_learned: int
    val_acc: list[float]
    test_acc: list[float]
    train_loss: float | None
    seconds: float
    status: str = "ok"  # "ok" | "diverged"
    message: str | None = None

    @classmethod
    def diverged(cls, task: int, loss: float, seconds: float) -> TaskReport:
        """The report of a run (or population member) whose loss became inf/NaN on ``task``."""
        message = (
            f"training loss became {loss} on task {task}; lower the learning rate or the "
            "method's strength"
        )
        return cls(task + 1, [], [], loss, seconds, "diverged", message)


@dataclass
class RunResult:
    """Accuracy matrices (row i = after i tasks, row 0 = untrained) and the run's outcome."""

    config: RunConfig
    acc_val: np.ndarray
    acc_test: np.ndarray
    train_loss: list[float | None]
    seconds: list[float]
    status: str
    message: str | None = None
    device: str = "cpu"

    @classmethod
    def from_reports(
        cls, cfg: RunConfig, reports: list[TaskReport], device: str = "cpu"
    ) -> RunResult:
        ok = [r for r in reports if r.status == "ok"]
        last = reports[-1]
        complete = last.status == "ok" and last.tasks_learned == cfg.n_tasks
        return cls(
            config=cfg,
            acc_val=np.array([r.val_acc for r in ok], dtype=float),
            acc_test=np.array([r.test_acc for r in ok], dtype=float),
            train_loss=[r.train_loss for r in reports],
            seconds=[r.seconds for r in reports],
            status="completed" if complete else last.status,
            message=last.message,
            device=device,
        )

    def metrics(self, split: str) -> dict[str, float]:
        """R5 metrics of the val or test matrix; NaN where undefined (e.g. an unfinished run)."""
        acc = self.acc_val if split == "val" else self.acc_test
        return metrics.summary(acc[1:], acc[0]) if len(acc) > 1 else metrics.empty_summary()


def resolve_device(name: str) -> torch.device:
    """ "auto" picks CUDA when available; asking for CUDA without one is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ClsweepError("device 'cuda' requested but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def train(
    cfg: RunConfig, dataset: Dataset | None = None, progress: Progress | None = None
) -> Iterator[TaskReport]:
    """Run ``cfg``; yield the evaluation of the untrained model, then one report per task.

    ``dataset`` lets a caller share one loaded dataset across runs (the sweep passes it from
    Ray's object store); otherwise it is loaded (and cached per process). ``progress`` shows the
    steps within each task (the command line passes one; by default nothing is shown). A task
    with fewer than ``MIN_STEPS_PER_TASK`` optimizer steps raises a :class:`FewStepsWarning`.
    """
    cfg = cfg.validated()
    if cfg.stream != "none":  # task-free: one stream of batches, no boundaries (cl_core/stream.py)
        from cl_core.stream import train_stream

        yield from train_stream(cfg, dataset)
        return
    method_cls = get_method(cfg.method)
    params = resolve(method_cls.hyperparams, cfg.method_params, f"method {cfg.method!r}")
    device = resolve_device(cfg.device)
    seq = build_tasks(cfg, dataset if dataset is not None else load_dataset(cfg)).to(device)
    ctx = TrainContext(cfg, seq, device)

    method = method_cls(params, ctx)
    steps = [ctx.training_steps(method.training_tasks(t)) for t in range(seq.n_tasks)]
    warn_if_few_steps(cfg, steps)
    torch.manual_seed(cfg.train_seed)
    model = method.build_model(ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, device))

    start = time.perf_counter()
    yield _evaluate(ctx, model, method, 0, None, start)
    optimizer = None
    for task in range(seq.n_tasks):
        start = time.perf_counter()
        ctx.seen_tasks = task + 1
        if optimizer is None or cfg.reset_optimizer:
            optimizer = make_optimizer(cfg, model.parameters())
        method.before_task(model, task)
        shown = progress.task(task, seq.n_tasks, steps[task]) if progress else None
        with shown or contextlib.nullcontext(TaskProgress()) as bar:
            loss = _learn_task(ctx, model, method, optimizer, task, bar)
        if not math.isfinite(loss):
            yield TaskReport.diverged(task, loss, time.perf_counter() - start)
            return
        method.after_task(model, task)
        yield _evaluate(ctx, model, method, task + 1, loss, start)


def warn_if_few_steps(cfg: RunConfig, steps: list[int]) -> None:
    """Warn once per run when a task gets fewer than ``MIN_STEPS_PER_TASK`` optimizer steps."""
    fewest = min(steps)
    if fewest >= MIN_STEPS_PER_TASK:
        return
    task = steps.index(fewest)
    length = (
        f"{cfg.iterations} iterations"
        if cfg.iterations is not None
        else f"{cfg.epochs} epoch(s) at batch size {cfg.batch_size}"
    )
    warnings.warn(
        f"task {task + 1} gets only {fewest} optimizer steps ({length}); fewer than "
        f"{MIN_STEPS_PER_TASK} rarely learn a task: lower the batch size, train more epochs, or "
        "set iterations",
        FewStepsWarning,
        stacklevel=3,
    )


def _learn_task(
    ctx: TrainContext,
    model: nn.Module,
    method: Method,
    optimizer,
    task: int,
    bar: TaskProgress | None = None,
) -> float:
    """Train on ``task``; return the mean training loss (inf/NaN once it diverges)."""
    bar = bar or TaskProgress()
    model.train()
    total = torch.zeros((), device=ctx.device)
    steps = 0
    for batch in ctx.training_batches(method.training_tasks(task)):
        total += _step(model, method, optimizer, batch, task)
        steps += 1
        bar.update(lambda t=total, n=steps: t.item() / n)  # read (a device sync) only if shown
        if steps % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(total):
            break
    return total.item() / max(steps, 1)


def _step(model: nn.Module, method: Method, optimizer, batch: Batch, task: int) -> torch.Tensor:
    """One optimizer step, with the method's hooks around it."""
    optimizer.zero_grad(set_to_none=True)
    loss = method.loss(model, batch, task)
    loss.backward()
    method.before_step(model, task)
    optimizer.step()
    method.after_step(model, batch, task)
    return loss.detach()


def _evaluate(
    ctx: TrainContext, model: nn.Module, method: Method, learned: int, loss, start: float
) -> TaskReport:
    """Accuracy on every task's val and test rows, with the method's predictions."""
    model.eval()
    ctx.seen_tasks = max(learned, 1)
    n = ctx.seq.n_tasks

    def predict(x: torch.Tensor, task: int) -> torch.Tensor:
        return method.predict(model, x, task)

    val = [ctx.accuracy(predict, j, "val") for j in range(n)]
    test = [ctx.accuracy(predict, j, "test") for j in range(n)]
    model.train()
    return TaskReport(learned, val, test, loss, time.perf_counter() - start)
