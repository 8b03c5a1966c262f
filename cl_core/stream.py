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

This module says which samples each step draws (``StreamSchedule``, ``StreamSampler``: each
member of a population draws its own); the training loop is the trainer's, the same for
task-based runs and streams (``cl_core.trainer``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cl_core.config import STREAMS  # noqa: F401 - the stream kinds are a run setting
from cl_core.context import Batch, TrainContext
from cl_core.random import MemberRandom


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


class StreamSampler:
    """Draws each step's batch for every member: tasks per sample from the schedule, then rows
    from each task's training rows in a reshuffled cycle (a new permutation each time a
    member's rows of a task run out; the k-th permutation of a task is keyed by the member's
    seed, the task and k, so it is the same in a population and alone)."""

    def __init__(self, ctx: TrainContext, schedule: StreamSchedule, batch_size: int) -> None:
        self.ctx, self.schedule, self.batch_size = ctx, schedule, batch_size
        self.task_random = ctx.random("stream")  # the task of every sample (mixed steps)
        self.seeds = [c.train_seed for c in ctx.cfgs]
        n = schedule.n_tasks
        self.orders: list[list[torch.Tensor | None]] = [[None] * n for _ in self.seeds]
        self.used = [[0] * n for _ in self.seeds]
        self.cycles = [[0] * n for _ in self.seeds]

    def select(self, keep: torch.Tensor) -> None:
        positions = keep.tolist()
        self.seeds = [self.seeds[i] for i in positions]
        self.orders = [self.orders[i] for i in positions]
        self.used = [self.used[i] for i in positions]
        self.cycles = [self.cycles[i] for i in positions]

    def take(self, member: int, task: int, n: int) -> torch.Tensor:
        """The next ``n`` training rows of ``task`` for ``member`` (dataset row indices)."""
        rows = self.ctx.seq.tasks[task].train_idx
        out = []
        while n:
            if self.orders[member][task] is None or self.used[member][task] == len(rows):
                purpose = f"stream-rows-{task}-{self.cycles[member][task]}"
                stream = MemberRandom([self.seeds[member]], purpose, rows.device)
                self.orders[member][task] = rows[stream.permutation(len(rows))[0]]
                self.used[member][task] = 0
                self.cycles[member][task] += 1
            used = self.used[member][task]
            k = min(n, len(rows) - used)
            out.append(self.orders[member][task][used : used + k])
            self.used[member][task] += k
            n -= k
        return torch.cat(out)

    def batch(self, i: int) -> tuple[Batch, torch.Tensor, torch.Tensor]:
        """Step ``i``'s batch, its dataset rows (M, B) and their tasks (M, B)."""
        ctx, size, members = self.ctx, self.batch_size, range(len(self.seeds))
        if self.schedule.kind == "academic":
            task = min(i // self.schedule.iters_per_task, self.schedule.n_tasks - 1)
            rows = torch.stack([self.take(m, task, size) for m in members])
            tasks = torch.full_like(rows, task)
            return ctx.make_batch(rows, task), rows, tasks
        probs = self.schedule.probs(i).to(ctx.device).expand(len(self.seeds), size, -1)
        tasks = self.task_random.categorical(probs)
        rows = torch.empty_like(tasks)
        for m in members:
            for t in tasks[m].unique().tolist():
                where = tasks[m] == t
                rows[m, where] = self.take(m, t, int(where.sum()))
        return ctx.make_batch(rows, tasks), rows, tasks


@dataclass
class CurvePoint:
    """Accuracy on one task after ``iteration`` steps of the stream."""

    iteration: int
    tasks_seen: int
    task: int
    split: str
    accuracy: float


def schedule_of(cfg, n_tasks: int) -> StreamSchedule:
    return StreamSchedule(cfg.stream, n_tasks, cfg.iterations, cfg.transition)


@dataclass
class StreamWindow:
    """The samples seen since the last consolidation (each member's rows and tasks)."""

    rows: list[torch.Tensor] = field(default_factory=list)
    tasks: list[torch.Tensor] = field(default_factory=list)

    def add(self, rows: torch.Tensor, tasks: torch.Tensor) -> None:
        self.rows.append(rows)
        self.tasks.append(tasks)

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The window as (rows (M, n), tasks (M, n)), emptied."""
        out = torch.cat(self.rows, 1), torch.cat(self.tasks, 1)
        self.rows, self.tasks = [], []
        return out

    def select(self, keep: torch.Tensor) -> None:
        self.rows = [r.index_select(0, keep.to(r.device)) for r in self.rows]
        self.tasks = [t.index_select(0, keep.to(t.device)) for t in self.tasks]
