"""Train many configurations together: per-task rounds of ``TaskReport``s, one per member.

``train_population(configs)`` groups the configs (``compat.group_configs``): each group of
compatible configs trains as one stacked computation (a ``cl_core.trainer.Run``, the loop every
run uses); a config whose method has no population form runs alone (with a one-line notice
saying why). All advance task by task in lockstep, so that a caller (the sweep) can read every
member's report after each task and ``stop`` members before the next one; a stopped or diverged
member leaves its group at once and frees its compute. The correctness contract
(docs/population.md): member i's reports are those of ``cl_core.trainer.train(configs[i])``, up
to float32 rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from cl_core.checkpoint import remove_checkpoint
from cl_core.config import RunConfig
from cl_core.data import Dataset
from cl_core.population.compat import group_configs
from cl_core.trainer import Round, Run, RunResult, TaskReport, resolve_device
from cl_core.validation import validated

log = logging.getLogger("cl_core.population")


class Population:
    """``configs`` trained together. Iterating yields one round per task: the reports of the
    members still training (round 0: the untrained models). ``stop(i)`` between rounds drops
    member i before the next task. ``status[i]``: running, completed, stopped or diverged."""

    def __init__(
        self,
        configs: Sequence[RunConfig],
        dataset: Dataset | None = None,
        checkpoint_dir: Path | None = None,
        keep_checkpoints: bool = False,
    ) -> None:
        self.configs = [validated(cfg) for cfg in configs]
        self.dataset = dataset
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.keep_checkpoints = keep_checkpoints
        self.groups = group_configs(self.configs)
        self.status = dict.fromkeys(range(len(self.configs)), "running")
        self._runs: list[tuple[list[int], Run]] = []
        reasons: dict[str, list[int]] = {}
        for members, reason in self.groups:
            if reason is not None:
                reasons.setdefault(reason, []).extend(members)
        for reason, members in reasons.items():
            log.warning(
                "population: %d config(s) %s run one by one: %s", len(members), members, reason
            )

    def stop(self, member: int) -> None:
        """Stop ``member`` (early stopping): it trains no further task."""
        if self.status.get(member) != "running":
            return
        self.status[member] = "stopped"
        for members, run in self._runs:
            if member in members:
                run.stop(members.index(member))

    def running(self) -> list[int]:
        return [i for i, s in self.status.items() if s == "running"]

    def __iter__(self) -> Iterator[Round]:
        streams = []
        for k, (members, _) in enumerate(self.groups):
            checkpoint = None if self.checkpoint_dir is None else self.checkpoint(k)
            run = Run([self.configs[i] for i in members], self.dataset, checkpoint=checkpoint)
            self._runs.append((members, run))
            streams.append((members, iter(run)))
        while streams:
            batch: Round = {}
            for entry in list(streams):
                members, stream = entry
                try:
                    reports = next(stream)
                except StopIteration:
                    streams.remove(entry)
                    continue
                batch.update({members[pos]: report for pos, report in reports.items()})
            for i, report in batch.items():
                if report.status != "ok":
                    self.status[i] = report.status
                elif report.tasks_learned == self.configs[i].learned_tasks:
                    self.status[i] = "completed"
            if batch:
                yield batch
        if self.checkpoint_dir is not None and not self.keep_checkpoints:
            for k in range(len(self.groups)):
                remove_checkpoint(self.checkpoint(k))

    def checkpoint(self, group: int) -> Path:
        """The checkpoint file of group ``group`` (``cl_core.checkpoint``)."""
        return self.checkpoint_dir / f"group-{group}.pt"


def train_population(
    configs: Sequence[RunConfig],
    dataset: Dataset | None = None,
    checkpoint_dir: Path | None = None,
    keep_checkpoints: bool = False,
) -> Population:
    """Train ``configs`` together (see ``Population``); ``dataset`` is shared by all of them;
    with ``checkpoint_dir`` each group writes its state there after every task and continues
    from it when run again."""
    return Population(configs, dataset, checkpoint_dir, keep_checkpoints)


def run_population(
    configs: Sequence[RunConfig],
    dataset: Dataset | None = None,
    checkpoint_dir: Path | None = None,
) -> list[RunResult]:
    """Train ``configs`` together to the end; one ``RunResult`` per config, in order."""
    population = train_population(configs, dataset, checkpoint_dir)
    reports: dict[int, list[TaskReport]] = {i: [] for i in range(len(configs))}
    for batch in population:
        for i, report in batch.items():
            reports[i].append(report)
    device = str(resolve_device(population.configs[0].device))
    return [
        RunResult.from_reports(cfg, reports[i], device) for i, cfg in enumerate(population.configs)
    ]
