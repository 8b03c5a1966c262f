"""Task-free streams: the task sequence presented as one stream of batches, without boundaries.

The three-scenario code base's task-free setting (van de Ven, Tuytelaars & Tolias 2022, its
``main_task_free.py`` and ``data/labelstream.py``), on the same task sequences as the task-based
protocol. ``cfg.stream`` picks how each batch's samples are assigned to tasks, over
``n_tasks x iterations`` steps (``iterations`` per task):

- ``academic``: task t for steps [t·I, (t+1)·I), whole batches, sharp boundaries;
- ``fuzzy-boundaries``: the same, but around each boundary b = t·I the next task's share rises
  linearly over ``transition`` steps centred on b: at step i of the window [b − w//2, b − w//2
  + w) each sample is from the new task with probability (i − start + ½)/w, from the old one
  otherwise (per sample, as the reference draws labels per sample);
- ``random``: every sample from a task drawn uniformly (an i.i.d. stream).
Differences from the reference's fuzzy stream: it starts half-way through task 0 and wraps
task 0's first half round to the end, so that every task has two transitions; here the first
task starts and the last one ends pure, so the curve reads task by task. Its ``fuzziness`` is
half our ``transition`` (its default 500 is our 1000).

The method is never told a boundary: methods that consolidate after a task (EWC, SI, LwF,
replay, DGR, BI-R) consolidate every ``update_every`` steps instead (the reference's
``--update-every``): ``after_task`` then ``before_task``, with "the task's data" being the
samples seen since the last consolidation (EWC's Fisher is estimated on them, LwF's head is
warmed up on them), and ``task`` the latest task the stream has reached (the classes replay may
generate, class-IL's seen units).
Every ``eval_every`` steps (and at each nominal task end, step k·I) all tasks are evaluated on
validation and test: the accuracy-over-time curve. Reports are still yielded at the nominal task
ends, so a stream run has the same accuracy matrix, metrics and early stopping as any run.
Task-IL needs the task at test, so streams run domain- and class-IL.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from cl_core.config import RunConfig
from cl_core.context import Batch, TrainContext
from cl_core.data import Dataset, build_tasks, load_dataset
from cl_core.methods import get_method
from cl_core.models import ModelFactory
from cl_core.optim import make_optimizer
from cl_core.params import resolve
from cl_core.trainer import DIVERGENCE_CHECK_EVERY, TaskReport, _evaluate, _step, resolve_device

STREAMS = ("none", "academic", "fuzzy-boundaries", "random")
"""``none`` is the task-based protocol (the trainer tells methods where tasks end)."""


@dataclass(frozen=True)
class StreamSchedule:
    """Which task each sample of step ``i`` comes from: a distribution over tasks per step."""

    kind: str
    n_tasks: int
    iters_per_task: int
    transition: int = 0

    @property
    def total(self) -> int:
        return self.n_tasks * self.iters_per_task

    def window(self, boundary: int) -> tuple[int, int]:
        """[start, end) of the transition into task ``boundary`` (1 ≤ boundary < n_tasks)."""
        start = boundary * self.iters_per_task - self.transition // 2
        return start, start + self.transition

    def probs(self, i: int) -> torch.Tensor:
        """The task mix of step ``i``: probabilities over the tasks."""
        p = torch.zeros(self.n_tasks)
        if self.kind == "random":
            return p.fill_(1.0 / self.n_tasks)
        if self.kind == "fuzzy-boundaries":
            for boundary in range(1, self.n_tasks):
                start, end = self.window(boundary)
                if start <= i < end:
                    new = (i - start + 0.5) / self.transition
                    p[boundary], p[boundary - 1] = new, 1 - new
                    return p
        p[min(i // self.iters_per_task, self.n_tasks - 1)] = 1.0
        return p

    def seen(self, i: int) -> int:
        """Tasks the stream has reached by step ``i`` (those with a non-zero share so far)."""
        if self.kind == "random":
            return self.n_tasks
        reached = min(i // self.iters_per_task, self.n_tasks - 1) + 1
        fuzzy = self.kind == "fuzzy-boundaries"
        if fuzzy and reached < self.n_tasks and i >= self.window(reached)[0]:
            reached += 1
        return reached


class StreamContext(TrainContext):
    """The run's context in a stream: while a method consolidates, "the training data" of a
    task is the window of samples seen since the last consolidation."""

    task_free = True

    def __init__(self, cfg: RunConfig, seq, device: torch.device, schedule: StreamSchedule):
        super().__init__(cfg, seq, device)
        self.schedule = schedule
        self.window: tuple[torch.Tensor, torch.Tensor] | None = None

    def train_rows(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor | int]:
        if self.window is not None:
            return self.window
        return super().train_rows(tasks)


class StreamSampler:
    """Draws each step's batch: tasks per sample from the schedule, then rows from each task's
    training rows in a reshuffled cycle (a new permutation each time a task's rows run out)."""

    def __init__(self, ctx: TrainContext, schedule: StreamSchedule, batch_size: int) -> None:
        self.ctx, self.schedule, self.batch_size = ctx, schedule, batch_size
        seed = (ctx.cfg.train_seed * 1_000_003 + zlib.crc32(b"stream")) % 2**63
        self.task_gen = torch.Generator().manual_seed(seed)  # task draws (CPU)
        n = schedule.n_tasks
        self.orders: list[torch.Tensor | None] = [None] * n
        self.used = [0] * n

    def take(self, task: int, n: int) -> torch.Tensor:
        """The next ``n`` training rows of ``task`` (dataset row indices, on the CPU)."""
        rows = self.ctx.seq.tasks[task].train_idx.cpu()
        out = []
        while n:
            if self.orders[task] is None or self.used[task] == len(rows):
                self.orders[task] = rows[torch.randperm(len(rows), generator=self.ctx.gen)]
                self.used[task] = 0
            k = min(n, len(rows) - self.used[task])
            out.append(self.orders[task][self.used[task] : self.used[task] + k])
            self.used[task] += k
            n -= k
        return torch.cat(out)

    def batch(self, i: int) -> tuple[Batch, torch.Tensor, torch.Tensor]:
        """Step ``i``'s batch, its dataset rows and their tasks."""
        device, size = self.ctx.device, self.batch_size
        if self.schedule.kind == "academic":
            task = min(i // self.schedule.iters_per_task, self.schedule.n_tasks - 1)
            rows = self.take(task, size)
            tasks = torch.full((size,), task, dtype=torch.long)
            return self.ctx.make_batch(rows.to(device), task), rows, tasks
        probs = self.schedule.probs(i)
        tasks = torch.multinomial(probs, size, replacement=True, generator=self.task_gen)
        rows = torch.empty(size, dtype=torch.long)
        for t in tasks.unique().tolist():
            where = tasks == t
            rows[where] = self.take(t, int(where.sum()))
        return self.ctx.make_batch(rows.to(device), tasks.to(device)), rows, tasks


@dataclass
class CurvePoint:
    """Accuracy on one task after ``iteration`` steps of the stream."""

    iteration: int
    tasks_seen: int
    task: int
    split: str
    accuracy: float


@dataclass
class StreamReport(TaskReport):
    """A TaskReport with the curve points evaluated since the previous report."""

    curve: list[CurvePoint] = field(default_factory=list)


@dataclass
class StreamState:
    """Everything a stream run carries between steps (for the loop below)."""

    curve: list[CurvePoint] = field(default_factory=list)
    window: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    consolidations: int = 0


def schedule_of(cfg: RunConfig, n_tasks: int) -> StreamSchedule:
    return StreamSchedule(cfg.stream, n_tasks, cfg.iterations, cfg.transition)


def train_stream(cfg: RunConfig, dataset: Dataset | None = None) -> Iterator[StreamReport]:
    """Run ``cfg`` as a task-free stream; yield the untrained model's evaluation, then one report
    per nominal task end (step k·I), each carrying the curve points evaluated since the last."""
    cfg = cfg.validated()
    method_cls = get_method(cfg.method)
    params = resolve(method_cls.hyperparams, cfg.method_params, f"method {cfg.method!r}")
    device = resolve_device(cfg.device)
    seq = build_tasks(cfg, dataset if dataset is not None else load_dataset(cfg)).to(device)
    schedule = schedule_of(cfg, seq.n_tasks)
    ctx = StreamContext(cfg, seq, device, schedule)
    method = method_cls(params, ctx)
    torch.manual_seed(cfg.train_seed)
    model = method.build_model(ModelFactory(cfg, ctx.input_shape, ctx.scenario.out_units, device))
    sampler = StreamSampler(ctx, schedule, cfg.batch_size)
    state = StreamState()

    def evaluate(done: int) -> TaskReport:
        seen = schedule.seen(max(done - 1, 0))
        report = _evaluate(ctx, model, method, seen, None, time.perf_counter())
        for split, accs in (("val", report.val_acc), ("test", report.test_acc)):
            state.curve += [CurvePoint(done, seen, j, split, a) for j, a in enumerate(accs)]
        return report

    def report_for(learned: int, evaluation: TaskReport, loss, seconds: float) -> StreamReport:
        points, state.curve = state.curve, []
        return StreamReport(
            learned, evaluation.val_acc, evaluation.test_acc, loss, seconds, curve=points
        )

    start = time.perf_counter()
    yield report_for(0, evaluate(0), None, time.perf_counter() - start)
    optimizer = make_optimizer(cfg, model.parameters())
    ctx.seen_tasks = schedule.seen(0)
    method.before_task(model, ctx.seen_tasks - 1)
    model.train()
    total, steps, start = torch.zeros((), device=device), 0, time.perf_counter()
    for i in range(schedule.total):
        ctx.seen_tasks = schedule.seen(i)
        latest = ctx.seen_tasks - 1
        batch, rows, tasks = sampler.batch(i)
        total += _step(model, method, optimizer, batch, latest)
        steps += 1
        state.window.append((rows, tasks))
        done = i + 1
        if done % cfg.update_every == 0:
            consolidate(ctx, model, method, state, latest)
        nominal_end = done % schedule.iters_per_task == 0
        if steps % DIVERGENCE_CHECK_EVERY == 0 or nominal_end:
            loss = total.item() / steps
            if not math.isfinite(loss):
                yield StreamReport(
                    math.ceil(done / schedule.iters_per_task),
                    [],
                    [],
                    loss,
                    time.perf_counter() - start,
                    "diverged",
                    f"training loss became {loss} at step {done} of the stream; lower the "
                    "learning rate or the method's strength",
                )
                return
        evaluation = None
        if nominal_end or (cfg.eval_every and done % cfg.eval_every == 0):
            evaluation = evaluate(done)
        if nominal_end:
            learned = done // schedule.iters_per_task
            yield report_for(learned, evaluation, total.item() / steps, time.perf_counter() - start)
            total, steps, start = torch.zeros((), device=device), 0, time.perf_counter()


def consolidate(ctx: StreamContext, model, method, state: StreamState, latest: int) -> None:
    """What a method does at a task end, on the samples seen since the last consolidation."""
    rows = torch.cat([r for r, _ in state.window]).to(ctx.device)
    tasks = torch.cat([t for _, t in state.window]).to(ctx.device)
    ctx.window = (rows, tasks)
    try:  # both hooks see the window as "the task's data" (LwF's head warm-up trains on it)
        method.after_task(model, latest)
        method.before_task(model, latest)
    finally:
        ctx.window = None
    state.window = []
    state.consolidations += 1
    model.train()
