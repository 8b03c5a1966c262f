"""The sweep's state in the driver: every study unit (a method in a scenario cell) at once.

All units run concurrently inside one Tune run, limited only by the trials that fit at once.
Each unit keeps its own Optuna studies (:mod:`sweep.studies`), its own early-stopping rungs
(:mod:`sweep.asha`), its own budget and time limit, and starts its final phase the moment its
own search has ended, while other units may still be searching. A free slot goes to the unit
with the fewest trials running, then to the one that has had the least slot time so far (fair
share: a cell of short trials is not held back behind a cell of long ones, and finishes early), so
every cell progresses and none waits for another to finish.

Nothing here imports Ray: the Tune glue (:mod:`sweep.tune_glue`) calls
:meth:`SweepState.next_launch` when a slot is free (each trial's RunConfig is built then, once,
and kept for its Parquet row: :class:`sweep.trial_config.TrialRun`), :meth:`SweepState.decide`
on every report (continue or stop), :meth:`SweepState.on_report` with every report and
:meth:`SweepState.on_end` when a trial ends. Resuming is building the state from the folder
(:mod:`sweep.resume`): trials recorded in Parquet are done; an Optuna trial left running by an
interrupted driver is run again in its own Optuna trial; one whose row reached Parquet before the
driver died is told Optuna from that row.

Populations (``resources.population`` N > 1): a Ray trial (a :class:`Launch`) trains up to N runs
of one unit at once (:mod:`sweep.batching` says which). Every run stays its own Optuna trial and
Parquet row: :meth:`SweepState.on_population_report` takes a population's report of all its
members after each task, decides each member on its unit's rungs, reports it to Optuna and
records the members that ended (stopped, diverged, completed); the Tune glue tells the population
which members to drop. Capacity counts Ray trials, not plans.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_core.config import RunConfig
from contract import tables
from contract.schema import COMPLETED, FAILED_STATUSES, TASKS_FILE, lost_to_node
from sweep import batching
from sweep.asha import Asha
from sweep.curves import curve_rows
from sweep.failures import give_up_message, restart_line
from sweep.lost import requeue_lost
from sweep.results import ResultsStore, trial_rows
from sweep.resume import ATTR_SEARCH_ENDED, ATTR_SEARCH_SECONDS, UnitStart, unit_start
from sweep.space import Cell, SweepSpec
from sweep.studies import UnitStudies
from sweep.study_storage import close_storage, open_storage, study_file
from sweep.trial_config import TrialPlan, TrialRun, config_id, final_id, launch_run, search_id

FINISHED = "FINISHED"
SAVE_CLOCK_EVERY_S = 30.0


@dataclass
class Unit:
    """One method in one cell: its studies, rungs, queues and counts."""

    index: int
    method: str
    cell: Cell
    base: RunConfig  # validated; searched values are applied per trial (launch_run)
    final_base: RunConfig  # the final phase's (the selection protocol's cell and task window)
    studies: UnitStudies
    asha: Asha | None
    asked: int = 0
    reruns: deque[TrialPlan] = field(default_factory=deque)
    finals: deque[TrialPlan] | None = None  # None until the search has ended
    final_planned: int = 0
    running: dict[str, TrialRun] = field(default_factory=dict)  # trial id -> run, as launched
    curves: dict[str, dict[int, float]] = field(default_factory=dict)
    launched: int = 0
    slots: int = 0  # Ray trials of this unit running (a population is one)
    busy_s: float = 0.0  # run time of ended Ray trials (as the workers measured it)
    run_starts: dict[str, float] = field(default_factory=dict)  # launch id -> start (driver clock)
    search_ended: bool = False
    end_reason: str = ""
    clock_start: float | None = None
    elapsed_before: float = 0.0
    clock_saved: float = 0.0

    @property
    def slug(self) -> str:
        return f"{self.method}-{self.cell.slug}"

    @property
    def label(self) -> str:
        return f"{self.method} {self.cell.key}"

    @property
    def done(self) -> bool:
        return self.search_ended and not self.finals and not self.running

    def run(self, plan: TrialPlan) -> TrialRun:
        """The run of ``plan`` on its phase's base (:func:`sweep.trial_config.launch_run`)."""
        return launch_run(self.final_base if plan.phase == "final" else self.base, plan)

    def slot_time(self, now: float) -> float:
        """Run time used so far: ended trials, plus running ones up to ``now`` (from their first
        report on; time spent waiting for a worker to start is not the unit's use)."""
        return self.busy_s + sum(now - t for t in self.run_starts.values())

    def elapsed(self) -> float:
        running = 0.0 if self.clock_start is None else time.monotonic() - self.clock_start
        return self.elapsed_before + running


@dataclass
class Launch:
    """One Ray trial: one run on its own (``population`` None, id = its trial id) or a
    population of runs trained together (id = ``population`` = Tune's trial id)."""

    id: str
    unit: int
    runs: dict[str, TrialRun]  # trial id -> run, those not recorded yet
    population: str | None = None


class SweepState:
    """All units of a sweep, their queues, and the Parquet store (see the module docstring)."""

    def __init__(
        self,
        spec: SweepSpec,
        folder: Path,
        store: ResultsStore,
        capacity: int,
        say: Callable[[str], None] | None = None,
        backend: str = "auto",
    ) -> None:
        self.spec = spec
        self.folder = Path(folder)
        self.store = store
        self.capacity = capacity
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.study_file = study_file(self.folder, backend)
        self.storage = open_storage(self.study_file)
        self.units: list[Unit] = []
        self.population = spec.population
        self.launches: dict[str, Launch] = {}
        self.restarts: dict[str, int] = {}  # launch id -> restarts after a lost worker or node
        self._notices: set[tuple[int, str]] = set()
        for index, (method, cell) in enumerate(spec.units):
            early = spec.early_stopping
            searched_tasks = spec.selection.search_tasks(cell)
            asha = (
                Asha(early["grace_tasks"], early["reduction_factor"], searched_tasks, spec.modes[0])
                if early
                else None
            )
            unit = Unit(
                index=index,
                method=method,
                cell=cell,
                base=RunConfig.from_dict(spec.base_config(method, cell)),
                final_base=RunConfig.from_dict(spec.base_config(method, cell, "final")),
                studies=UnitStudies(spec, self.storage, index),
                asha=asha,
            )
            self.units.append(unit)
        requeue_lost(spec, store, [u.studies for u in self.units], self.say)  # sweep.lost
        rows = {r["trial_id"]: r for r in store.rows_read}
        tasks = functools.cache(lambda: tables.read_table(self.folder, TASKS_FILE).to_pylist())
        for index, unit in enumerate(self.units):
            final_ids = unit.studies.final_ids()
            search = unit.studies.search
            self._resume(unit, unit_start(spec, index, unit.slug, search, final_ids, rows, tasks))
        store.rows_read = []  # needed only to resume; a long sweep's rows need not stay in memory
        self.started = time.monotonic()
        self.ended_this_run = 0

    # -- resuming --------------------------------------------------------------------------------

    def _resume(self, unit: Unit, start: UnitStart) -> None:
        """Apply what the folder holds for ``unit`` (:mod:`sweep.resume`)."""
        unit.asked = start.asked
        if unit.asha is not None:
            for trial_id, values in start.ended:
                unit.asha.seed(trial_id, values)
        for plan, row in start.untold:
            unit.studies.tell(plan, row)
        for interrupted in start.interrupted:  # run again, in the same Optuna trial
            unit.studies.interrupted(interrupted.plan.number, interrupted.reported)
            unit.reruns.append(interrupted.plan)
        if start.missing:
            self.say(
                f"warning: {unit.label}: {start.missing} ended trial(s) of the study have no row "
                f"in {self.folder}/trials.parquet (parts removed?); they are not run again"
            )
        unit.elapsed_before = start.elapsed_s
        if start.search_ended is not None:
            self._end_search(unit, reason=start.search_ended)
        for plan, row, curve in start.late_finals:  # recorded, then the driver died
            unit.studies.add_final(plan, row, curve)

    # -- launching -------------------------------------------------------------------------------

    @property
    def live(self) -> int:
        """Ray trials running (a population counts once)."""
        return len(self.launches)

    def finished(self) -> bool:
        return all(u.done for u in self.units)

    def close(self) -> None:
        """Release the study file (SQLite folds its write-ahead log back into ``study.db``)."""
        close_storage(self.storage)

    def next_launch(self, population_id: str | None = None) -> list[TrialRun] | str | None:
        """The runs of the next Ray trial, None if none can start now, FINISHED when all is done.

        With ``population_id`` (the Ray trial's id) and ``resources.population`` > 1, up to that
        many runs of one unit that can share a population; otherwise one run. Each run's
        RunConfig is built here, once (:func:`sweep.trial_config.launch_run`), and kept until
        the trial's row is written.
        """
        if self.finished():
            return FINISHED
        if self.live >= self.capacity:
            return None
        ready = [u for u in self.units if self._can_launch(u)]
        if not ready:
            return None
        # Fewest running first; interrupted trials before new ones; then the least slot time.
        now = time.monotonic()
        unit = min(ready, key=lambda u: (u.slots, not u.reruns, u.slot_time(now), u.index))
        if population_id is not None and self.population > 1:
            left = len(unit.finals) if unit.finals is not None else self._search_left(unit)
            size = batching.batch_size(self.population, left, self.capacity - self.live)
            runs = self._take_population(unit, size)
        else:
            runs = [unit.run(self._take(unit))]
        for run in runs:
            plan = run.plan
            unit.running[plan.trial_id] = run
            unit.launched += 1
            if plan.phase == "search":
                if unit.clock_start is None:
                    unit.clock_start = time.monotonic()
                unit.studies.start(plan)
            else:
                unit.curves[plan.trial_id] = {}
        population = population_id if len(runs) > 1 else None
        launch_id = population or runs[0].plan.trial_id
        self.launches[launch_id] = Launch(
            launch_id, unit.index, {r.plan.trial_id: r for r in runs}, population
        )
        unit.slots += 1
        return runs

    def _search_left(self, unit: Unit) -> int:
        return len(unit.reruns) + max(self.spec.trials - unit.asked, 0)

    def _take_population(self, unit: Unit, size: int) -> list[TrialRun]:
        """Up to ``size`` runs of ``unit`` that can train together (see :mod:`sweep.batching`):
        queued ones first, then new configurations asked from Optuna one after another (TPE's
        constant liar counts the ones asked before as running, so a batch stays diverse)."""
        first = unit.run(self._take(unit))
        reason = batching.solo_reason(first)
        if reason is not None:
            self._notice(unit, f"runs per trial: {reason}")
            return [first]
        key = batching.key(first)
        batch = [first]
        queue = unit.finals if first.plan.phase == "final" else unit.reruns
        for plan in list(queue or ()):
            if len(batch) >= size:
                break
            run = unit.run(plan)
            if batching.key(run) == key:
                queue.remove(plan)
                batch.append(run)
        while (
            first.plan.phase == "search"
            and len(batch) < size
            and unit.asked < self.spec.trials
            and not self.out_of_time(unit)
        ):
            run = unit.run(self._take(unit, ask=True))
            if batching.key(run) != key:
                why = batching.mismatch(first, run) or "a setting differs"
                text = f"some configurations train in separate populations: {why}"
                self._notice(unit, text, key=why.split(" (")[0])
                unit.reruns.append(run.plan)  # the first of a later population
                break
            batch.append(run)
        return batch

    def _notice(self, unit: Unit, text: str, key: str | None = None) -> None:
        """One console line per unit and reason (``key``: the reason, if not all of ``text``)."""
        if (unit.index, key or text) not in self._notices:
            self._notices.add((unit.index, key or text))
            self.say(f"{unit.label}: {text}")

    def _can_launch(self, unit: Unit) -> bool:
        if unit.finals is not None:
            return bool(unit.finals)
        if unit.search_ended or self.out_of_time(unit):
            self._maybe_end_search(unit)
            return bool(unit.finals)
        return bool(unit.reruns) or unit.asked < self.spec.trials

    def _take(self, unit: Unit, ask: bool = False) -> TrialPlan:
        """The unit's next plan: a final re-run, an interrupted (or waiting) one, or, with
        ``ask`` or when none is queued, a new configuration from Optuna."""
        if unit.finals and not ask:
            return unit.finals.popleft()
        if unit.reruns and not ask:
            return unit.reruns.popleft()
        number, values = unit.studies.ask()
        unit.asked += 1
        return TrialPlan(
            trial_id=search_id(unit.slug, number),
            unit=unit.index,
            phase="search",
            values=values,
            config_id=config_id(values),
            number=number,
        )

    # -- while trials run ------------------------------------------------------------------------

    def out_of_time(self, unit: Unit) -> bool:
        limit = self.spec.time_limit_s
        return limit is not None and not unit.search_ended and unit.elapsed() >= limit

    def decide(self, plan: TrialPlan, result: dict[str, Any]) -> bool:
        """True if the trial should stop now: its search hit the time limit, or ASHA says so."""
        if plan.phase != "search":
            return False
        unit = self.units[plan.unit]
        if self.out_of_time(unit):
            return True
        if unit.asha is None or result.get("status") in FAILED_STATUSES:
            return False
        return unit.asha.on_result(
            plan.trial_id, int(result.get("tasks_learned", 0)), result.get(self.spec.metrics[0])
        )

    def on_report(self, plan: TrialPlan, result: dict[str, Any]) -> None:
        """Every report, the one that stopped the trial included, reaches its Optuna trial."""
        self._mark_start(self.units[plan.unit], plan.trial_id, result)
        self._report(plan, result)

    @staticmethod
    def _mark_start(unit: Unit, launch_id: str, result: dict[str, Any]) -> None:
        if launch_id not in unit.run_starts:
            started = time.monotonic() - float(result.get("run_wall_s") or 0.0)
            unit.run_starts[launch_id] = started

    def _report(self, plan: TrialPlan, result: dict[str, Any]) -> None:
        unit = self.units[plan.unit]
        if result.get("status") in FAILED_STATUSES:
            return  # repeats the last learned step; the trial is told FAIL when it ends
        step = int(result.get("tasks_learned", 0))
        value = result.get(self.spec.metrics[0])
        if plan.phase == "search":
            unit.studies.report(plan, step, value)
        elif plan.trial_id in unit.curves and value is not None and math.isfinite(value):
            unit.curves[plan.trial_id][step] = float(value)

    def on_end(
        self, plan: TrialPlan, result: dict[str, Any], error: str | None = None
    ) -> dict[str, Any] | None:
        """Record an ended trial: Parquet first, then Optuna; then move its unit on."""
        restarts = self.restarts.pop(plan.trial_id, 0)
        self._free(plan.trial_id, result)
        run = self.units[plan.unit].running.get(plan.trial_id)
        return None if run is None else self._record(run, result, error, restarts)

    def on_restart(self, launch_id: str, error: Any, gone: bool | None = None) -> int:
        """Tune restarts a Ray trial from its checkpoint after its worker or node went away
        (``error``: what Tune saw; ``gone``: whether its node is gone, if known): count it for
        its rows and say so in one line. Returns the restarts so far."""
        count = self.restarts[launch_id] = self.restarts.get(launch_id, 0) + 1
        launch = self.launches.get(launch_id)
        who = f"trial {launch_id}"
        if launch is not None and launch.population is not None:
            who = f"population {launch_id} ({', '.join(launch.runs)})"
        self.say(restart_line(who, error, count, self.spec.max_failures, gone))
        return count

    def recorded_members(self, launch_id: str, members: list[str]) -> list[str]:
        """The ``members`` of a population already recorded (stopped, diverged, completed): a
        restarted population drops them again before its next task."""
        launch = self.launches.get(launch_id)
        return [] if launch is None else [m for m in members if m not in launch.runs]

    def failure_message(self, launch_id: str, error: Any, gone: bool | None = None) -> str:
        """The row message of a Ray trial whose retries are spent: the cause first."""
        restarts = self.restarts.get(launch_id, 0)
        return give_up_message(error, restarts, self.spec.max_failures, gone)

    def on_population_report(self, launch_id: str, members: dict[str, dict[str, Any]]) -> list[str]:
        """One report of a population: ``members`` maps trial ids to their metrics after the
        same task. Each member is decided on its unit's rungs (or the time limit), reported to
        Optuna, and recorded if it ended. Returns the members the population must stop now."""
        launch = self.launches[launch_id]
        unit = self.units[launch.unit]
        if members:
            wall = max(float(m.get("run_wall_s") or 0.0) for m in members.values())
            self._mark_start(unit, launch_id, {"run_wall_s": wall})
        stops: list[str] = []
        for trial_id, result in members.items():
            run = launch.runs.get(trial_id)
            if run is None:  # recorded already
                continue
            stop = self.decide(run.plan, result)
            self._report(run.plan, result)
            ended = result.get("status") in (COMPLETED, *FAILED_STATUSES)
            if stop or ended:
                del launch.runs[trial_id]
                self._record(run, result, restarts=self.restarts.get(launch_id, 0))
                if not ended:
                    stops.append(trial_id)
        return stops

    def on_population_end(
        self, launch_id: str, members: dict[str, dict[str, Any]], error: str | None = None
    ) -> None:
        """A population's Ray trial ended: record the members not recorded yet (from their last
        report in ``members``; ``error``: why the trial failed), free its slot."""
        launch = self.launches.get(launch_id)
        if launch is None:
            return
        for trial_id, run in list(launch.runs.items()):
            result = members.get(trial_id, {})
            why = error
            if why is None and not result:
                why = "the population ended before this configuration reported"
            self._record(run, result, why, self.restarts.get(launch_id, 0))
        launch.runs.clear()
        self.restarts.pop(launch_id, None)
        wall = max((float(m.get("run_wall_s") or 0.0) for m in members.values()), default=0.0)
        self._free(launch_id, {"run_wall_s": wall})
        self._maybe_end_search(self.units[launch.unit])

    def _free(self, launch_id: str, result: dict[str, Any]) -> None:
        """A Ray trial ended: its slot is free, its run time counts to its unit's share."""
        launch = self.launches.pop(launch_id, None)
        if launch is None:
            return
        unit = self.units[launch.unit]
        unit.slots -= 1
        unit.run_starts.pop(launch_id, None)
        unit.busy_s += float(result.get("run_wall_s") or 0.0)

    def _record(
        self, run: TrialRun, result: dict[str, Any], error: str | None = None, restarts: int = 0
    ) -> dict[str, Any] | None:
        """Parquet first (the row from the run as launched), then Optuna; then move the run's
        unit on."""
        plan = run.plan
        unit = self.units[plan.unit]
        unit.running.pop(plan.trial_id, None)
        row, tasks = trial_rows(self.spec, run, result, error, restarts)
        recorded = self.store.add(row, tasks, curve_rows(row, result))
        if recorded:
            self.ended_this_run += 1
            if plan.phase == "search":
                unit.studies.tell(plan, row)
            elif lost_to_node(row):  # --resume runs it again; the final study gets it then
                unit.curves.pop(plan.trial_id, None)
            else:
                unit.studies.add_final(plan, row, unit.curves.pop(plan.trial_id, {}))
        self._save_clock(unit)
        self._maybe_end_search(unit)
        return row if recorded else None

    def _save_clock(self, unit: Unit, force: bool = False) -> None:
        if unit.search_ended or unit.clock_start is None or self.spec.time_limit_s is None:
            return
        now = time.monotonic()
        if force or now - unit.clock_saved >= SAVE_CLOCK_EVERY_S:
            unit.studies.search.set_user_attr(ATTR_SEARCH_SECONDS, unit.elapsed())
            unit.clock_saved = now

    def _maybe_end_search(self, unit: Unit) -> None:
        if unit.search_ended or any(r.plan.phase == "search" for r in unit.running.values()):
            return
        if self.out_of_time(unit):
            self._save_clock(unit, force=True)
            unit.studies.search.set_user_attr(ATTR_SEARCH_ENDED, "time_limit")
            while unit.reruns:  # interrupted trials not run again: the time is up
                unit.studies.abandon(unit.reruns.popleft(), "time limit reached before re-run")
            self._end_search(unit, "time_limit")
        elif not unit.reruns and unit.asked >= self.spec.trials:
            if unit.studies.search.user_attrs.get(ATTR_SEARCH_ENDED) is None:
                unit.studies.search.set_user_attr(ATTR_SEARCH_ENDED, "budget")
            self._end_search(unit, "budget")

    def _end_search(self, unit: Unit, reason: str) -> None:
        """The unit's search is over: queue its final phase (the configs not yet re-run)."""
        unit.search_ended = True
        unit.clock_start = None
        points = self.store.top_configs(unit.method, unit.cell.key, self.spec.final_top_k)
        finals: deque[TrialPlan] = deque()
        seeds = range(self.spec.final_seed_base, self.spec.final_seed_base + self.spec.final_seeds)
        for rank, (cid, values) in enumerate(points, start=1):
            for seed in seeds:
                plan = TrialPlan(
                    trial_id=final_id(unit.slug, cid, seed),
                    unit=unit.index,
                    phase="final",
                    values=values,
                    config_id=cid,
                    final_rank=rank,
                    seed=seed,
                )
                if plan.trial_id not in self.store.ids:
                    finals.append(plan)
        unit.finals = finals
        unit.final_planned = len(points) * self.spec.final_seeds
        unit.end_reason = reason
