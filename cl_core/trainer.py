"""The trainer: learns a task sequence with a method, yields one report per task learned.

One loop serves every run: M ≥ 1 members of one configuration group trained as one computation
(``Run``; a single run is a population of one, ``train``), on a task-based sequence or a
task-free stream (``cl_core.stream``). It owns the loop, optimizer, batching and evaluation; the
method adds to it through its hooks.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cl_core import metrics
from cl_core.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from cl_core.config import RunConfig
from cl_core.context import Batch, TrainContext
from cl_core.data import Dataset, build_tasks, load_dataset
from cl_core.errors import ClsweepError
from cl_core.host_memory import keep_freed_memory
from cl_core.methods import Method, get_method
from cl_core.models import ModelFactory, StackedModel
from cl_core.optim import StackedOptimizer, make_optimizer
from cl_core.params import resolve
from cl_core.progress import Progress, TaskProgress
from cl_core.stream import CurvePoint, StreamSampler, StreamWindow, schedule_of
from cl_core.validation import validated

DIVERGENCE_CHECK_EVERY = 50  # steps between NaN/inf checks (each check syncs with the device)
MIN_STEPS_PER_TASK = 50
"""Fewer optimizer steps than this per task rarely learn it (e.g. 8x8 digits split in five
tasks, batch 128, 5 epochs: about 10 steps); the trainer warns."""


class FewStepsWarning(UserWarning):
    """A task gets too few optimizer steps to be learned; the message says how to get more."""


@dataclass
class TaskReport:
    """The state after ``tasks_learned`` tasks (0 = the untrained model). A stream's report also
    carries the curve points evaluated since the previous report."""

    tasks_learned: int
    val_acc: list[float]
    test_acc: list[float]
    train_loss: float | None
    seconds: float
    status: str = "ok"  # "ok" | "diverged"
    message: str | None = None
    curve: list[CurvePoint] = field(default_factory=list)

    @classmethod
    def diverged(cls, task: int, loss: float, seconds: float, where: str = "") -> TaskReport:
        """The report of a member whose loss became inf/NaN on ``task``."""
        message = (
            f"training loss became {loss} on task {task}{where}; lower the learning rate or "
            "the method's strength"
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
        cls, cfg: RunConfig, reports: list[TaskReport], device: str | None = None
    ) -> RunResult:
        """``device``: where it ran, when ``cfg.device`` is "auto" (default: ``cfg.device``)."""
        ok = [r for r in reports if r.status == "ok"]
        last = reports[-1]
        complete = last.status == "ok" and last.tasks_learned == cfg.learned_tasks
        return cls(
            config=cfg,
            acc_val=np.array([r.val_acc for r in ok], dtype=float),
            acc_test=np.array([r.test_acc for r in ok], dtype=float),
            train_loss=[r.train_loss for r in reports],
            seconds=[r.seconds for r in reports],
            status="completed" if complete else last.status,
            message=last.message,
            device=device or cfg.device,
        )

    def metrics(self, split: str) -> dict[str, float]:
        """Metrics (docs/references.md, Metrics) of the val or test matrix; NaN where undefined
        (e.g. an unfinished run)."""
        acc = self.acc_val if split == "val" else self.acc_test
        return metrics.summary(acc[1:], acc[0]) if len(acc) > 1 else metrics.empty_summary()


def use_tf32(device: torch.device, on: bool) -> None:
    """TensorFloat-32 for CUDA matmuls and convolutions, as the run's ``tf32`` asks (torch's
    switches are per process: every run sets them, so a run after another gets its own).
    Off also turns off cuDNN's TF32 convolutions, which torch enables by default."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def resolve_device(name: str) -> torch.device:
    """ "auto" picks CUDA when available; asking for CUDA without one is a usage error. On a GPU,
    cuDNN picks deterministic convolution algorithms: same config and seed, same numbers."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ClsweepError("device 'cuda' requested but no CUDA GPU is visible; use --device cpu")
    if name == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.device(name)


def train(
    cfg: RunConfig,
    dataset: Dataset | None = None,
    progress: Progress | None = None,
    checkpoint: Path | None = None,
    keep_checkpoint: bool = False,
) -> Iterator[TaskReport]:
    """Run ``cfg``; yield the evaluation of the untrained model, then one report per task.

    A single run is a population of one (``Run``). ``dataset`` lets a caller share one loaded
    dataset across runs (the sweep passes it from Ray's object store); otherwise it is loaded
    (and cached per process). ``progress`` shows the steps within each task (the command line
    passes one; by default nothing is shown). A task with fewer than ``MIN_STEPS_PER_TASK``
    optimizer steps raises a :class:`FewStepsWarning`. With ``checkpoint`` (a file path) the
    whole state is written there after every task and a run that finds it continues from it
    (``cl_core.checkpoint``); the file is removed when the run ends unless ``keep_checkpoint``.
    """
    run = Run([validated(cfg)], dataset, progress, checkpoint=checkpoint)
    for reports in run:
        yield reports[0]
    if checkpoint is not None and not keep_checkpoint:
        remove_checkpoint(checkpoint)


Round = dict[int, TaskReport]  # member position in the run's configs -> its report


class Run:
    """M members of one configuration group (equal sharing keys, see cl_core.population)
    trained as one computation. Iterating yields one round per task: the reports of the members
    still training (round 0: the untrained models). ``stop(i)`` between rounds drops member i
    before the next task (its compute is freed). A member whose loss diverges reports so once and
    is never reported again, but keeps its slot in the computation to the end: the others'
    numbers are then bitwise those of the same population in which it does not diverge (a
    narrower computation could change the last bits of theirs, where a BLAS library picks its
    kernel by the number of matrices in a batch).

    With ``checkpoint`` (a file path) the run writes its whole state there after every round and
    continues from the file if it exists (``cl_core.checkpoint``). ``protocol`` names what drives
    the run besides its configs (per-task selection and its settings; None: plain training): the
    checkpoint keeps it, and only a run under the same protocol continues from it."""

    def __init__(
        self,
        cfgs: Sequence[RunConfig],
        dataset: Dataset | None = None,
        progress: Progress | None = None,
        checkpoint: Path | None = None,
        protocol: dict | None = None,
    ) -> None:
        self.cfgs = list(cfgs)
        self.checkpoint = checkpoint
        self.protocol = protocol  # who drives the run (per-task selection): its checkpoint says
        self.history: list[Round] = []  # every round so far (a resumed run yields them again)
        cfg = self.cfgs[0]
        method_cls = get_method(cfg.method)
        owner = f"method {cfg.method!r}"
        params = [resolve(method_cls.hyperparams, c.method_params, owner) for c in self.cfgs]
        self.device = resolve_device(cfg.device)
        use_tf32(self.device, cfg.tf32)
        if self.device.type == "cpu":
            keep_freed_memory()  # a step's (M, P) temporaries reuse the last step's pages
        seq = build_tasks(cfg, dataset if dataset is not None else load_dataset(cfg))
        self.ctx = TrainContext(self.cfgs, seq.to(self.device), self.device)
        self.ctx.task_free = cfg.stream != "none"
        self.method: Method = method_cls(params, self.ctx)
        out_units = self.ctx.scenario.out_units
        factory = ModelFactory(self.cfgs, self.ctx.input_shape, out_units, self.device)
        self.model: StackedModel = self.method.build_model(factory)
        self.optimizer: StackedOptimizer | None = None
        self._optimized: tuple[int, int] | None = None  # what the optimizer was built for
        self.progress = progress
        self.ids = list(range(len(self.cfgs)))  # member position -> index in ``cfgs``
        self._stopped: set[int] = set()
        self.diverged: set[int] = set()  # members that diverged: in their slots, not reported
        self.sampler: StreamSampler | None = None
        self.window = StreamWindow()
        self._points: dict[int, list[CurvePoint]] = {}  # curve points not yet reported
        if self.ctx.task_free:
            self.schedule = schedule_of(cfg, seq.n_tasks)
            self.sampler = StreamSampler(self.ctx, self.schedule, cfg.batch_size)
        else:
            steps = [
                self.ctx.training_steps(self.method.training_tasks(t)) for t in range(seq.n_tasks)
            ]
            warn_if_few_steps(cfg, steps)
        if checkpoint is not None and Path(checkpoint).exists():
            saved = load_checkpoint(Path(checkpoint), self.cfgs, self.device, protocol)
            self._resume(saved)

    def _resume(self, saved: Run) -> None:
        """Continue from a checkpoint: its state replaces this run's, the data stays."""
        seq, progress, checkpoint = self.ctx.seq, self.progress, self.checkpoint
        self.__dict__.update(saved.__dict__)
        self.ctx.seq = seq
        self.progress, self.checkpoint = progress, checkpoint
        theta, _ = self.model.optimized()
        self._optimized = (theta.data_ptr(), theta.shape[1])

    @property
    def n_tasks(self) -> int:
        return self.ctx.seq.n_tasks

    def stop(self, member: int) -> None:
        """Stop member ``member`` (an index into the configs): it trains no further task."""
        self._stopped.add(member)

    # ---- the loop -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Round]:
        yield from self.history  # a resumed run: the rounds before its checkpoint
        if not self.history:
            start = time.perf_counter()
            yield self._record(self._evaluate(0, None, start, iteration=0))
        for task in range(len(self.history) - 1, self.n_tasks):
            self._drop([i for i in self.ids if i in self._stopped])
            if not self._training():
                return
            start = time.perf_counter()
            self.begin_task(task)
            losses, diverged = self._learn(task, start)
            if not self._training():
                yield self._record(diverged)
                return
            self.end_task(task)
            done = (task + 1) * self.schedule.iters_per_task if self.ctx.task_free else None
            yield self._record({**diverged, **self._evaluate(task + 1, losses, start, done)})

    def _record(self, reports: Round) -> Round:
        """Keep a round (the checkpoint holds every round so far) and write the checkpoint."""
        self.history.append(reports)
        if self.checkpoint is not None:
            save_checkpoint(self, Path(self.checkpoint))
        return reports

    def begin_task(self, task: int) -> None:
        """Before a task's steps: the optimizer (new, or kept across tasks) and the method's
        ``before_task`` (a stream calls it once, at its start, then at each consolidation)."""
        cfg = self.ctx.cfg
        theta, _ = self.model.optimized()
        key = (theta.data_ptr(), theta.shape[1])
        if (
            self.optimizer is None
            or self._optimized != key
            or (cfg.reset_optimizer and not self.ctx.task_free)
        ):
            self.optimizer = make_optimizer(self.ctx.cfgs, theta)
            self._optimized = key
        if self.ctx.task_free:
            if task == 0:
                self.ctx.seen_tasks = self.schedule.seen(0)
                self.method.before_task(self.model, self.ctx.seen_tasks - 1)
            return
        self.ctx.seen_tasks = task + 1
        self.method.before_task(self.model, task)

    def end_task(self, task: int) -> None:
        """After a task's steps: the method consolidates (a stream does so on its own clock)."""
        if not self.ctx.task_free:
            self.method.after_task(self.model, task)

    def _batches(self, task: int) -> Iterator[tuple[Batch, int]]:
        """The task's steps: (batch, the task the step learns)."""
        if not self.ctx.task_free:
            for batch in self.ctx.training_batches(self.method.training_tasks(task)):
                yield batch, task
            return
        per_task = self.schedule.iters_per_task
        for i in range(task * per_task, (task + 1) * per_task):
            self.ctx.seen_tasks = self.schedule.seen(i)
            batch, rows, tasks = self.sampler.batch(i)
            self.window.add(rows, tasks)
            yield batch, self.ctx.seen_tasks - 1

    def _training(self) -> list[int]:
        """The members still training (not stopped, not diverged)."""
        return [i for i in self.ids if i not in self.diverged]

    def _learn(self, task: int, start: float) -> tuple[list[float], Round]:
        """Train every member on ``task``; return every slot's mean loss and the reports of the
        members that diverged during it."""
        self.model.train()
        total = torch.zeros(len(self.ids), device=self.device)
        steps = 0
        diverged: Round = {}
        n_steps = (
            self.schedule.iters_per_task
            if self.ctx.task_free
            else self.ctx.training_steps(self.method.training_tasks(task))
        )
        shown = self.progress.task(task, self.n_tasks, n_steps) if self.progress else None
        with shown or contextlib.nullcontext(TaskProgress()) as bar:
            for batch, learning in self._batches(task):
                total += self.step(batch, learning)
                steps += 1
                bar.update(lambda t=total, n=steps: t[0].item() / n)
                if self.ctx.task_free:
                    self._stream_events(task * self.schedule.iters_per_task + steps)
                if steps % DIVERGENCE_CHECK_EVERY == 0:
                    self._check_divergence(total, steps, task, start, diverged)
                    if not self._training():
                        break
        self._check_divergence(total, steps, task, start, diverged)
        return [t / max(steps, 1) for t in total.tolist()], diverged

    def step(self, batch: Batch, task: int) -> torch.Tensor:
        """One optimizer step of every member, with the method's hooks around it; returns each
        member's loss (M,)."""
        model, method = self.model, self.method
        model.zero_grad_()
        loss = method.loss(model, batch, task)
        loss.sum().backward()
        method.before_step(model, task)
        self.optimizer.step(*model.optimized())
        method.after_step(model, batch, task)
        return loss.detach()

    # ---- task-free streams --------------------------------------------------------------------
    def _stream_events(self, done: int) -> None:
        """After step ``done`` of a stream: consolidate every ``update_every`` steps, and
        evaluate every ``eval_every`` steps (the curve; nominal task ends are evaluated by the
        loop)."""
        cfg = self.ctx.cfg
        if done % cfg.update_every == 0:
            self._consolidate(self.ctx.seen_tasks - 1)
        nominal_end = done % self.schedule.iters_per_task == 0
        if cfg.eval_every and done % cfg.eval_every == 0 and not nominal_end:
            self._curve(done)

    def _consolidate(self, latest: int) -> None:
        """What a method does at a task end, on the samples seen since the last consolidation:
        both hooks see the window as "the task's data" (LwF's head warm-up trains on it)."""
        self.ctx.window = self.window.take()
        try:
            self.method.after_task(self.model, latest)
            self.method.before_task(self.model, latest)
        finally:
            self.ctx.window = None
        self.model.train()

    # ---- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def _accuracies(self, learned: int) -> torch.Tensor:
        """(M, 2T): each member's accuracy on every task's val, then test rows."""
        model, method, ctx = self.model, self.method, self.ctx
        model.eval()
        ctx.seen_tasks = max(learned, 1)

        def predict(x: torch.Tensor, task: int) -> torch.Tensor:
            return method.predict(model, x, task)

        n = ctx.seq.n_tasks
        table = [ctx.accuracy(predict, j, split) for split in ("val", "test") for j in range(n)]
        model.train()
        return torch.stack(table, 1)

    def _curve(self, done: int) -> None:
        """Evaluate a stream after ``done`` steps, between nominal task ends (the curve)."""
        saved = self.ctx.seen_tasks
        seen = self.schedule.seen(max(done - 1, 0))
        self._add_curve(done, seen, self._accuracies(seen).tolist())
        self.ctx.seen_tasks = saved

    def _add_curve(self, done: int, seen: int, table: list[list[float]]) -> None:
        """Curve points of an evaluation after ``done`` steps; they go into the next reports."""
        n = self.n_tasks
        for pos, member in enumerate(self.ids):
            if member in self.diverged:
                continue
            self._points.setdefault(member, []).extend(
                CurvePoint(done, seen, j, split, table[pos][col])
                for j in range(n)
                for split, col in (("val", j), ("test", n + j))
            )

    def _evaluate(
        self, learned: int, losses: list[float] | None, start: float, iteration: int | None
    ) -> Round:
        """Every member's accuracy on every task's val and test rows, in one batched pass; a
        stream's evaluation is also a point of its curve (after ``iteration`` steps)."""
        if self.ctx.task_free:
            seen = self.schedule.seen(max(iteration - 1, 0))
            table = self._accuracies(seen).tolist()
            self._add_curve(iteration, seen, table)
        else:
            table = self._accuracies(learned).tolist()
        seconds = time.perf_counter() - start
        n = self.n_tasks
        out: Round = {}
        for pos, member in enumerate(self.ids):
            if member in self.diverged:
                continue
            loss = None if losses is None else losses[pos]
            curve = self._points.pop(member, [])
            out[member] = TaskReport(learned, table[pos][:n], table[pos][n:], loss, seconds)
            out[member].curve = curve
        return out

    # ---- members ------------------------------------------------------------------------------
    def _check_divergence(self, total, steps, task, start, diverged: Round) -> None:
        """Report the members whose running loss became inf/NaN; they keep their slots."""
        finite = torch.isfinite(total)
        if bool(finite.all()):
            return
        for member, ok, value in zip(self.ids, finite.tolist(), total.tolist(), strict=True):
            if ok or member in self.diverged:
                continue
            self.diverged.add(member)
            loss = value / max(steps, 1)
            where = ""
            if self.ctx.task_free:
                where = f" (step {task * self.schedule.iters_per_task + steps} of the stream)"
            diverged[member] = TaskReport.diverged(task, loss, time.perf_counter() - start, where)

    def _drop(self, members: list[int]) -> None:
        if members:
            self._narrow([pos for pos, i in enumerate(self.ids) if i not in members])

    def _narrow(self, keep: list[int]) -> None:
        """Keep the members at positions ``keep``: parameters, optimizer, method and data state."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.ids = [self.ids[pos] for pos in keep]
        if not keep:
            return
        self.model.select(index)
        self.ctx.select(keep)
        self.method.select(index)
        if self.optimizer is not None:
            self.optimizer.select(index)
            theta, _ = self.model.optimized()
            self._optimized = (theta.data_ptr(), theta.shape[1])
        if self.sampler is not None:
            self.sampler.select(index)
        self.window.select(index)


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
        stacklevel=4,
    )
