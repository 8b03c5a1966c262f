"""Train many configurations together: per-task rounds of ``TaskReport``s, one per member.

``train_population(configs)`` groups the configs (``compat.group_configs``): each group of
compatible configs with a population form trains as one stacked computation, every other config
runs the single-run trainer (with a one-line notice saying why). All advance task by task in
lockstep, so that a caller (the sweep) can read every member's report after each task and
``stop`` members before the next one; a stopped or diverged member leaves its group at once and
frees its compute. The correctness contract (DESIGN.md): member i's reports are those of
``cl_core.trainer.train(configs[i])``, up to float32 rounding.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence

import torch

from cl_core.config import RunConfig
from cl_core.data import Dataset, build_tasks, load_dataset
from cl_core.models import ModelFactory
from cl_core.population.compat import group_configs, method_params
from cl_core.population.context import PopulationContext, StackedBatch, member_cross_entropy
from cl_core.population.methods import POPULATION_METHODS
from cl_core.population.network import StackedMLP
from cl_core.population.optim import StackedOptimizer, make_stacked_optimizer
from cl_core.trainer import DIVERGENCE_CHECK_EVERY, RunResult, TaskReport, resolve_device, train

log = logging.getLogger("cl_core.population")

Round = dict[int, TaskReport]  # member index (position in the configs) -> its report


class Population:
    """``configs`` trained together. Iterating yields one round per task: the reports of the
    members still training (round 0: the untrained models). ``stop(i)`` between rounds drops
    member i before the next task. ``status[i]``: running, completed, stopped or diverged."""

    def __init__(self, configs: Sequence[RunConfig], dataset: Dataset | None = None) -> None:
        self.configs = [cfg.validated() for cfg in configs]
        self.dataset = dataset
        self.groups = group_configs(self.configs)
        self.status = dict.fromkeys(range(len(self.configs)), "running")
        self._stopped: set[int] = set()
        reasons: dict[str, list[int]] = {}
        for members, reason in self.groups:
            if reason is not None:
                reasons.setdefault(reason, []).extend(members)
        for reason, members in reasons.items():
            log.warning(
                "population: %d config(s) %s run per trial: %s", len(members), members, reason
            )

    def stop(self, member: int) -> None:
        """Stop ``member`` (early stopping): it trains no further task."""
        if self.status.get(member) == "running":
            self.status[member] = "stopped"
            self._stopped.add(member)

    def running(self) -> list[int]:
        return [i for i, s in self.status.items() if s == "running"]

    def __iter__(self) -> Iterator[Round]:
        streams = [
            self._per_trial(members[0]) if reason else self._stacked(members)
            for members, reason in self.groups
        ]
        while streams:
            batch: Round = {}
            for stream in list(streams):
                try:
                    batch.update(next(stream))
                except StopIteration:
                    streams.remove(stream)
            for i, report in batch.items():
                if report.status != "ok":
                    self.status[i] = report.status
                elif report.tasks_learned == self.configs[i].n_tasks:
                    self.status[i] = "completed"
            if batch:
                yield batch

    def _per_trial(self, member: int) -> Iterator[Round]:
        run = train(self.configs[member], self.dataset)
        for report in run:
            yield {member: report}
            if member in self._stopped:
                run.close()
                return

    def _stacked(self, members: list[int]) -> Iterator[Round]:
        yield from _StackedGroup(members, self.configs, self.dataset).run(self._stopped)


def train_population(configs: Sequence[RunConfig], dataset: Dataset | None = None) -> Population:
    """Train ``configs`` together (see ``Population``); ``dataset`` is shared by all of them."""
    return Population(configs, dataset)


def run_population(configs: Sequence[RunConfig], dataset: Dataset | None = None) -> list[RunResult]:
    """Train ``configs`` together to the end; one ``RunResult`` per config, in order."""
    population = train_population(configs, dataset)
    reports: dict[int, list[TaskReport]] = {i: [] for i in range(len(configs))}
    for batch in population:
        for i, report in batch.items():
            reports[i].append(report)
    device = str(resolve_device(population.configs[0].device))
    return [
        RunResult.from_reports(cfg, reports[i], device) for i, cfg in enumerate(population.configs)
    ]


class _StackedGroup:
    """One population: compatible configs with a population form, as one computation."""

    def __init__(self, members: list[int], configs: list[RunConfig], dataset: Dataset | None):
        cfgs = [configs[i] for i in members]
        cfg = cfgs[0]
        self.ids = list(members)
        self.device = resolve_device(cfg.device)
        data = dataset if dataset is not None else load_dataset(cfg)
        seq = build_tasks(cfg, data).to(self.device)
        self.pctx = PopulationContext(cfgs, seq, self.device)
        models = []
        for member_cfg, ctx in zip(cfgs, self.pctx.members, strict=True):
            torch.manual_seed(member_cfg.train_seed)  # as train(): the init of this member
            factory = ModelFactory(member_cfg, ctx.input_shape, ctx.scenario.out_units, self.device)
            models.append(factory())
        self.net = StackedMLP(models)
        form = POPULATION_METHODS[cfg.method]
        self.method = form([method_params(c) for c in cfgs], self.pctx, self.net)
        self.optimizer: StackedOptimizer | None = None

    def run(self, stopped: set[int]) -> Iterator[Round]:
        cfg = self.pctx.cfg
        start = time.perf_counter()
        yield self._evaluate(0, None, start)
        for task in range(cfg.n_tasks):
            self._drop([i for i in self.ids if i in stopped])
            if not self.ids:
                return
            start = time.perf_counter()
            self.pctx.seen_tasks = task + 1
            if self.optimizer is None or cfg.reset_optimizer:
                self.optimizer = make_stacked_optimizer(self.pctx.cfgs, self.net.theta)
            self.method.before_task(task)
            losses, diverged = self._learn_task(task, start)
            if not self.ids:
                yield diverged
                return
            self.method.after_task(task)
            yield {**diverged, **self._evaluate(task + 1, losses, start)}

    def _learn_task(self, task: int, start: float) -> tuple[list[float], Round]:
        """Train every member on ``task``; return the survivors' mean losses and the reports of
        the members that diverged (dropped at once)."""
        total = torch.zeros(len(self.ids), device=self.device)
        steps = 0
        diverged: Round = {}
        for batch in self.pctx.training_batches(self.method.training_tasks(task)):
            total += self._step(batch, task)
            steps += 1
            if steps % DIVERGENCE_CHECK_EVERY == 0:
                total = self._drop_diverged(total, steps, task, start, diverged)
                if not self.ids:
                    break
        total = self._drop_diverged(total, steps, task, start, diverged)
        return [t / max(steps, 1) for t in total.tolist()], diverged

    def _step(self, batch: StackedBatch, task: int) -> torch.Tensor:
        """One optimizer step of every member; returns each member's loss (M,)."""
        net, method = self.net, self.method
        net.grad.zero_()
        logits = net.forward(batch.x)
        loss = member_cross_entropy(self.pctx.active_logits(logits, batch.task), batch.target)
        extra = method.extra_loss(batch, logits, task)
        if extra is not None:
            loss = loss + extra
        loss.sum().backward()
        method.before_step(task)
        penalty = method.penalty(task)
        self.optimizer.step(net.theta, net.grad)
        method.after_step(batch, task)
        loss = loss.detach()
        return loss if penalty is None else loss + penalty

    def _drop_diverged(self, total, steps, task, start, diverged: Round) -> torch.Tensor:
        finite = torch.isfinite(total)
        if bool(finite.all()):
            return total
        keep = []
        for pos, (member, ok, value) in enumerate(
            zip(self.ids, finite.tolist(), total.tolist(), strict=True)
        ):
            if ok:
                keep.append(pos)
                continue
            loss = value / max(steps, 1)
            diverged[member] = TaskReport.diverged(task, loss, time.perf_counter() - start)
        self._narrow(keep)
        return total[torch.tensor(keep, dtype=torch.long, device=total.device)]

    def _drop(self, members: list[int]) -> None:
        if members:
            self._narrow([pos for pos, i in enumerate(self.ids) if i not in members])

    def _narrow(self, keep: list[int]) -> None:
        """Keep the members at positions ``keep``: their parameters, optimizer and method state."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.ids = [self.ids[pos] for pos in keep]
        if not keep:
            return
        self.net.select(index)
        self.pctx.select(keep)
        self.method.select(index)
        if self.optimizer is not None:
            self.optimizer.select(index)

    @torch.no_grad()
    def _evaluate(self, learned: int, losses: list[float] | None, start: float) -> Round:
        """Accuracy of every member on every task's val and test rows, in one batched pass."""
        pctx, n = self.pctx, self.pctx.seq.n_tasks
        pctx.seen_tasks = max(learned, 1)
        layers = self.net.layers(self.net.theta)
        counts, sizes = [], []
        for split in ("val", "test"):
            for task in range(n):
                correct = torch.zeros(len(self.ids), device=self.device)
                size = 0
                for x, target in pctx.eval_batches(task, split):
                    logits = pctx.active_logits(self.net.forward(x, layers), task)
                    correct += (logits.argmax(2) == target).sum(1)
                    size += len(target)
                counts.append(correct)
                sizes.append(size)
        table = torch.stack(counts, 1).tolist()  # (M, 2n)
        seconds = time.perf_counter() - start
        out: Round = {}
        for pos, member in enumerate(self.ids):
            acc = [c / s if s else math.nan for c, s in zip(table[pos], sizes, strict=True)]
            loss = None if losses is None else losses[pos]
            out[member] = TaskReport(learned, acc[:n], acc[n:], loss, seconds)
        return out
